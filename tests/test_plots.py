"""plots/: every figure is drawn from the combined table's own numbers; files and CLI."""
import csv
import subprocess
import xml.etree.ElementTree as ET

import pytest

from plots import figures as F
from tests.conftest import VENV_BIN

SIZES = (1024, 2**20, 2**30)
CHIPS = {"A": (16, 32, 64), "B": (16, 64)}
RATES = {"A": (1024.0, 25.0), "B": (384.0, 6.25)}  # (scale-up, scale-out) GB/s per chip
ALGOS = ("ring", "tree", "hierarchical")


def time_ps(topo: str, algorithm: str, chips: int, size: int) -> int:
    """Made-up costs whose winners are easy to find by hand (B is twice as fast as A)."""
    t = {
        "ring": 1_000_000 * chips + 10 * size,
        "tree": 20_000_000 + 40 * size,
        "hierarchical": 30_000_000 + 2 * size,
    }[algorithm]
    return t if topo == "A" else t // 2


def make_rows() -> list[dict]:
    rows, job = [], 0
    for topo, chip_list in CHIPS.items():
        for chips in chip_list:
            for algorithm in ALGOS:
                for size in SIZES:
                    t = time_ps(topo, algorithm, chips, size)
                    algbw = size / (t * 1e-12) / 1e9
                    rows.append({
                        "job": job, "job_key": f"k{job}", "overrides": "", "collective": "all_reduce",
                        "algorithm": algorithm, "algorithm_used": algorithm, "topology": topo,
                        "nodes": chips // 16, "chips": chips, "fidelity": "analytic", "dtype": "float32",
                        "channels": 2, "bidirectional": True, "chunks": 4, "chunk_size": "", "in_flight": 4,
                        "top": "ring", "size_bytes": size, "count": size // 4, "time_ps": t, "time_us": t / 1e6,
                        "algbw_GBps": algbw, "busbw_GBps": algbw * 2 * (chips - 1) / chips, "wrong": "",
                        "events": 0, "wall_s": 0.001, "ranks": 1,
                        "scaleup_GBps_per_chip": RATES[topo][0], "scaleout_GBps_per_chip": RATES[topo][1],
                    })
                job += 1
    return rows


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """The made-up sweep written as a combined.csv, and its rows as load_rows reads them."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    rows = make_rows()
    with open(sweep_dir / "combined.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return sweep_dir, F.load_rows(sweep_dir)


def lines_by_label(ax) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def expected(rows, column, **where):
    return [r[column] for r in rows if all(r[k] == v for k, v in where.items())]


def test_load_rows_types_numbers(table):
    _, rows = table
    assert len(rows) == (3 + 2) * 3 * 3
    first = rows[0]
    assert first["size_bytes"] == 1024 and isinstance(first["size_bytes"], int)
    assert first["time_ps"] == 16_010_240  # ring on 16 chips at 1 KiB: 16,000,000 + 10 x 1,024
    assert isinstance(first["busbw_GBps"], float)


def test_busbw_vs_size_plots_the_table_per_algorithm_and_chip_count(table):
    _, rows = table
    fig = F.busbw_vs_size(rows, "A")
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["16 chips (1 nodes)", "32 chips (2 nodes)", "64 chips (4 nodes)"]
    for ax, chips in zip(axes, CHIPS["A"]):
        lines = lines_by_label(ax)
        assert list(lines) == list(ALGOS)
        for algorithm, (x, y) in lines.items():
            assert x == list(SIZES)
            assert y == expected(rows, "busbw_GBps", topology="A", chips=chips, algorithm=algorithm)
        assert ax.get_xlabel() == "message size (bytes)"
    assert axes[0].get_ylabel() == "bus bandwidth (GB/s)"
    assert fig._suptitle.get_text() == "A: bus bandwidth vs message size (all_reduce, analytic)"


def test_scaling_is_log_log_time_vs_chips_at_chosen_sizes(table):
    _, rows = table
    fig = F.scaling(rows, "A", sizes=[2**20, 10**9])  # 1e9 B snaps to the nearest size in the table, 1 GiB
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["1MiB per chip", "1GiB per chip"]
    for ax, size in zip(axes, (2**20, 2**30)):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert ax.get_ylabel() == "time (us)" and ax.get_xlabel() == "chips"
        for algorithm, (x, y) in lines_by_label(ax).items():
            assert x == list(CHIPS["A"])
            assert y == expected(rows, "time_us", topology="A", size_bytes=size, algorithm=algorithm)
    # By default: smallest, middle and largest size.
    assert [ax.get_title() for ax in F.scaling(rows, "B").get_axes()] == ["1KiB per chip", "1MiB per chip",
                                                                           "1GiB per chip"]


def test_best_algorithm_grid_by_hand(table):
    _, rows = table
    sizes, chips, grid = F.best_algorithm_grid(rows, "A")
    assert sizes == list(SIZES) and chips == list(CHIPS["A"])
    # 1 KiB: ring 16.0 / 32.0 / 64.0 us vs tree 20.04 us vs hierarchical 30.0 us.
    # 1 MiB: ring 26.5 / 42.5 / 74.5 us vs tree 61.9 us vs hierarchical 32.1 us.
    # 1 GiB: hierarchical 2.18 ms beats ring (>10.7 ms) and tree (42.9 ms) everywhere.
    assert grid == [
        ["ring", "tree", "tree"],
        ["ring", "hierarchical", "hierarchical"],
        ["hierarchical", "hierarchical", "hierarchical"],
    ]
    fig = F.best_algorithm_map(rows, "A")
    legend = fig.get_axes()[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["ring", "tree", "hierarchical"]


def test_best_algorithm_ties_go_to_the_first_in_auto_order():
    base = {"topology": "T", "chips": 8, "size_bytes": 64, "collective": "all_reduce", "fidelity": "analytic"}
    rows = [dict(base, algorithm="hierarchical", time_ps=5), dict(base, algorithm="tree", time_ps=5),
            dict(base, algorithm="ring", time_ps=6)]
    assert F.best_algorithm_grid(rows, "T")[2] == [["tree"]]
    assert F.best_per_point(rows)[("T", 8, 64)]["algorithm"] == "tree"


def test_efficiency_divides_busbw_by_the_per_chip_line_rates(table):
    _, rows = table
    fig = F.efficiency(rows, "B")  # default: the largest size
    out_ax, up_ax = fig.get_axes()
    assert out_ax.get_title() == "busbw / scale-out (EFA) line rate per chip (6.25 GB/s)"
    assert up_ax.get_title() == "busbw / scale-up (NeuronLink) line rate per chip (384 GB/s)"
    # 16 chips is one node: no EFA traffic, so no scale-out point.
    for ax, rate, chips in ((out_ax, 6.25, [64]), (up_ax, 384.0, [16, 64])):
        assert ax.get_ylabel() == "efficiency (% of line rate)"
        for algorithm, (x, y) in lines_by_label(ax).items():
            assert x == chips
            busbw = [expected(rows, "busbw_GBps", topology="B", size_bytes=2**30, algorithm=algorithm, chips=n)[0]
                     for n in chips]
            assert y == pytest.approx([100.0 * b / rate for b in busbw], rel=1e-12)


def test_generations_compare_the_best_of_each_topology(table):
    _, rows = table
    fig = F.generations(rows)
    left, right = fig.get_axes()
    # Chip counts both topologies have: 16 and 64; the panel uses the largest.
    assert left.get_title() == "bus bandwidth vs message size at 64 chips"
    assert right.get_title() == "time vs chips at 1GiB per chip"
    winners_64 = {1024: "tree", 2**20: "hierarchical", 2**30: "hierarchical"}  # as in the grid above
    for topo, (x, y) in lines_by_label(left).items():
        assert x == list(SIZES)
        assert y == [expected(rows, "busbw_GBps", topology=topo, chips=64, size_bytes=s, algorithm=a)[0]
                     for s, a in winners_64.items()]
    for topo, (x, y) in lines_by_label(right).items():
        assert x == list(CHIPS[topo])
        assert y == [expected(rows, "time_us", topology=topo, chips=n, size_bytes=2**30, algorithm="hierarchical")[0]
                     for n in CHIPS[topo]]
    assert list(lines_by_label(left)) == ["A", "B"]


def test_figures_are_written_as_png_and_svg(table, tmp_path):
    _, rows = table
    figures = F.make_figures(rows)
    assert sorted(figures) == sorted(
        [f"{kind}_{t}" for kind in ("busbw_vs_size", "scaling", "efficiency", "best_algorithm") for t in "AB"]
        + ["generations"])
    some = {stem: figures[stem] for stem in ("generations", "best_algorithm_B")}  # each save costs ~0.5 s
    written = F.save(some, tmp_path / "out")
    assert [p.name for p in written] == ["generations.png", "generations.svg", "best_algorithm_B.png",
                                         "best_algorithm_B.svg"]
    for path in written:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) < 150_000
        else:
            assert ET.fromstring(data).tag.endswith("svg")


def test_figures_are_byte_identical_when_made_again(table, tmp_path):
    # `make demo` re-plots the committed figures: without dates in the metadata and with SVG ids
    # hashed from the content (not a fresh uuid4 per file) the files do not change
    _, rows = table
    for run in ("first", "second"):
        F.save({"best_algorithm_B": F.make_figures(rows)["best_algorithm_B"]}, tmp_path / run, ("svg", "pdf", "png"))
    for name in ("best_algorithm_B.svg", "best_algorithm_B.pdf", "best_algorithm_B.png"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name
    assert b"<dc:date>" not in (tmp_path / "first" / "best_algorithm_B.svg").read_bytes()


def test_collsim_plot_command(table, tmp_path):
    sweep_dir, _ = table
    proc = subprocess.run([str(VENV_BIN / "collsim-plot"), str(sweep_dir), "--out", str(tmp_path / "fig"),
                           "--format", "png", "--sizes", "1MiB"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"# collsim-plot: 9 figures (png) from 45 rows -> {tmp_path / 'fig'}"
    assert (tmp_path / "fig" / "scaling_A.png").is_file() and not list((tmp_path / "fig").glob("*.svg"))


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "collsim-plot: error: {missing}/combined.csv not found"),
    (["{sweep}", "--sizes", "1MB/s"], "collsim-plot: error: --sizes: "),
    (["{sweep}", "--format", "gif"], "collsim-plot: error: --format: allowed png, svg, pdf; got 'gif'"),
])
def test_collsim_plot_bad_input_is_one_line(table, tmp_path, args, message):
    sweep_dir, _ = table
    subst = {"missing": str(tmp_path / "nope"), "sweep": str(sweep_dir)}
    proc = subprocess.run([str(VENV_BIN / "collsim-plot"), *[a.format(**subst) for a in args]],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(**subst))
