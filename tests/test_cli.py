"""The ``collsim`` command end to end, as a subprocess: table, results.csv, errors."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import VENV_BIN, run_collsim
from tests.test_mpi import mpiexec

REPO = Path(__file__).resolve().parents[1]
# Subprocesses import this checkout, also where the venv's editable install is another one's (a git worktree).
THIS_CHECKOUT = {"PYTHONPATH": str(REPO)}





def test_user_topology_ring_time_by_hand(collsim, user_dir):
    # 4 chips on a ring, one channel, S = 4 MiB all-reduce:
    #   2(n-1)(alpha + S/(nB)) + (n-1) (S/n)/R + launch
    #   = 6 x (1 us + 1048576 B / 100 GB/s) + 3 x 1048576 B / 1000 GB/s + 5 us
    #   = 6 x (1,000,000 + 10,485,760) + 3 x 1,048,576 + 5,000,000 ps = 77,060,288 ps
    proc = collsim(
        "--config-dir", str(user_dir), "topology=ring4", "algorithm=ring", "algorithm.channels=1",
        "sizes.min=4MiB", "sizes.max=4MiB",
    )
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(collsim.run_dir / "results.csv")
    assert df["time_ps"].tolist() == [77_060_288]
    assert df.loc[0, "busbw_GBps"] == pytest.approx(4 * 2**20 / 77.060288e-6 / 1e9 * 1.5)
    assert "77.06" in proc.stdout


def test_table_and_results_file(collsim):
    proc = collsim("topology=trn2", "cluster.nodes=2", "algorithm=auto", "sizes.min=1KiB", "sizes.max=1MiB", "sizes.factor=32")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "topology: trn2" in out and "nodes: 2" in out and "chips: 32" in out and "fidelity: analytic" in out
    for column in ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong"):
        assert column in out
    rows = [line.split() for line in out.splitlines() if line and not line.startswith("#")]
    assert [int(r[0]) for r in rows] == [1024, 32768, 1048576]
    assert all(r[2] == "float" and r[3] == "sum" and r[4] == "-1" and r[8] == "N/A" for r in rows)
    assert all(r[9] in ("ring", "tree", "hierarchical") for r in rows)
    df = pd.read_csv(collsim.run_dir / "results.csv")
    required = {"collective", "algorithm", "topology", "nodes", "chips", "fidelity", "dtype", "size_bytes", "count",
                "time_us", "algbw_GBps", "busbw_GBps", "wrong", "wall_s", "ranks"}
    assert required <= set(df.columns)
    assert df["size_bytes"].tolist() == [1024, 32768, 1048576]
    assert df["count"].tolist() == [256, 8192, 262144]
    assert (df["chips"] == 32).all() and (df["algorithm"] == "auto").all()
    # busbw = algbw x 2(n-1)/n, algbw = S / t
    assert df["algbw_GBps"].tolist() == pytest.approx((df["size_bytes"] / (df["time_us"] * 1e-6) / 1e9).tolist())
    assert df["busbw_GBps"].tolist() == pytest.approx((df["algbw_GBps"] * 2 * 31 / 32).tolist())


def test_auto_picks_the_fastest(collsim):
    proc = collsim("topology=trn2", "cluster.nodes=4", "sizes.min=64MiB", "sizes.max=64MiB")
    assert proc.returncode == 0, proc.stderr
    auto = pd.read_csv(collsim.run_dir / "results.csv").loc[0]
    times = {}
    for name in ("ring", "tree", "hierarchical"):
        proc = collsim("topology=trn2", "cluster.nodes=4", f"algorithm={name}", "sizes.min=64MiB", "sizes.max=64MiB")
        assert proc.returncode == 0, proc.stderr
        times[name] = pd.read_csv(collsim.run_dir / "results.csv").loc[0, "time_ps"]
    assert auto["time_ps"] == min(times.values())
    assert auto["algorithm_used"] == min(times, key=times.get)


def test_gib_report(collsim):
    proc = collsim("topology=trn2", "algorithm=ring", "sizes.min=1GiB", "sizes.max=1GiB", "report.gib=true")
    assert proc.returncode == 0, proc.stderr
    assert "(GiB/s)" in proc.stdout
    row = next(line.split() for line in proc.stdout.splitlines() if line and not line.startswith("#"))
    df = pd.read_csv(collsim.run_dir / "results.csv")
    assert float(row[6]) == pytest.approx(df.loc[0, "algbw_GBps"] * 1e9 / 2**30, abs=0.006)


@pytest.mark.parametrize("collective, factor", [("reduce_scatter", 15 / 16), ("all_gather", 15 / 16)])
def test_rs_ag_sizes_rounded_to_multiple_of_chips(collsim, collective, factor):
    # 1000 B = 250 floats on 16 chips -> 15 per chip -> 240 elements = 960 B (as nccl-tests)
    proc = collsim("topology=trn2", f"collective={collective}", "algorithm=ring", "sizes.min=1000B", "sizes.max=1000B")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(collsim.run_dir / "results.csv")
    assert df.loc[0, "size_bytes"] == 960 and df.loc[0, "count"] == 240
    assert df.loc[0, "busbw_GBps"] == pytest.approx(df.loc[0, "algbw_GBps"] * factor)


def test_python_dash_m(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "collsim", "sizes.min=1MiB", "sizes.max=1MiB", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "results.csv").is_file()


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("topology=trn9", "Could not find 'topology/trn9'"),
        ("algorithm=bogus", "Available options in 'algorithm'"),
        ("collective=all_to_everyone", "Could not find 'collective/all_to_everyone'"),
        ("fidelity=perfect", "Could not find 'fidelity/perfect'"),
        ("cluster.nodes=0", "cluster.nodes: must be an integer >= 1"),
        ("cluster.nodes=abc", "full_key: cluster.nodes"),
        ("sizes.min=2GiB", "sizes.min: 2GiB is larger than sizes.max=1GiB"),
        ("sizes.min=-1KiB", "sizes.min: must be >= 0 bytes"),
        ("sizes.max=4096", "sizes.max: bare number"),
        ("sizes.factor=1", "sizes.factor: must be an integer >= 2"),
        ("dtype=float64", "expected one of [float32, float16, int32]"),
        ("algorithm.channels=0", "algorithm.channels: must be >= 1"),
        ("algorithm.top=mesh", "algorithm.top: must be ring, tree or auto"),
        ("topology.levels.0.dims=[4,3]", "topology.levels[0].dims: product of dims [4, 3] is 12, but size is 16"),
        ("topology.levels.0.link.bandwidth=0GB/s", "topology.levels[0].link.bandwidth: bandwidth must be > 0"),
        ("topology.levels.0.fabric=mesh", "full_key: topology.levels[0].fabric"),
        ("topology.scale_out.nics_per_node=3", "topology.scale_out.nics_per_node"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(collsim, override, fragment):
    proc = collsim(override)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("collsim: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert not (collsim.run_dir / "results.csv").exists()


def test_package_build_ships_configs(tmp_path):
    # `pip install .` installs what build_py collects: conf/ must land inside the package.
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=repo, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    shipped = tmp_path / "collsim" / "conf"
    assert (shipped / "config.yaml").is_file()
    assert sorted(p.name for p in (shipped / "topology").glob("*.yaml")) == [
        "dgx-h100.yaml", "trn1.yaml", "trn1n.yaml", "trn2-ultraserver.yaml", "trn2.yaml", "trn3-ultraserver.yaml"]
    assert (shipped / "algorithm" / "ring.yaml").is_file()


def test_data_fidelity_that_cannot_fit_is_refused_before_any_output(collsim):
    # 64 trn2 servers x 1 TiB per chip can never be held: the largest size is checked
    # up front, so not even the sizes that would fit are printed or written
    proc = collsim("topology=trn2", "cluster.nodes=64", "fidelity=data", "sizes.min=1KiB", "sizes.max=1TiB")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("collsim: error: sizes.max: data fidelity needs"), proc.stderr
    assert proc.stdout.strip() == ""
    assert not (collsim.run_dir / "results.csv").exists()


def test_event_ring_beyond_the_schedule_limit_is_refused_before_any_output(collsim):
    # a reduce-scatter always runs a ring across nodes; the hierarchical event schedule
    # counts a ring's transfers in 16 bits (and 65,537 nodes would be ~10^11 events)
    proc = collsim("topology=trn2", "cluster.nodes=65537", "algorithm=hierarchical", "fidelity=event",
                   "collective=reduce_scatter", "sizes.min=1GiB", "sizes.max=1GiB")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "collsim: error: cluster.nodes: the hierarchical event schedule runs rings of at most 65,536 units"), proc.stderr
    assert proc.stdout.strip() == ""
    assert not (collsim.run_dir / "results.csv").exists()


# --- threads=T --------------------------------------------------------------------------------

THREADED_RUN = ("topology=trn2", "cluster.nodes=5", "algorithm=auto", "fidelity=data", "sizes.max=64KiB",
                "sizes.factor=8")


def test_threads_print_the_table_one_thread_prints(tmp_path):
    stdout, csv = {}, {}
    for threads in (1, 2):
        run_dir = tmp_path / f"threads{threads}"
        proc = run_collsim([*THREADED_RUN, f"threads={threads}", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                           env=THIS_CHECKOUT)
        assert proc.returncode == 0, proc.stderr
        stdout[threads], csv[threads] = proc.stdout, pd.read_csv(run_dir / "results.csv")
    assert stdout[2] == stdout[1]
    one, two = csv[1], csv[2]
    assert list(one.columns)[-2:] == ["ranks", "threads"]
    assert set(one["threads"]) == {1} and set(two["threads"]) == {2} and set(two["wrong"]) == {0}
    assert one.drop(columns=["wall_s", "threads"]).equals(two.drop(columns=["wall_s", "threads"]))


def test_analytic_fidelity_ignores_threads(tmp_path):
    proc = run_collsim(["cluster.nodes=1", "threads=4", "sizes.max=1KiB", f"hydra.run.dir={tmp_path / 'run'}"],
                       cwd=tmp_path, env=THIS_CHECKOUT)
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "run" / "results.csv")["threads"].tolist() == [4]


@pytest.mark.parametrize(
    "overrides, line",
    [
        (("threads=0",), "threads: must be an integer >= 1 (engine threads in this process), got 0"),
        (("fidelity=event", "threads=-2"), "threads: must be an integer >= 1 (engine threads in this process), got -2"),
        (("threads=two",), "Value 'two' of type 'str' could not be converted to Integer; full_key: threads"),
        (("cluster.nodes=2", "fidelity=event", "threads=3"),
         "threads: 2 nodes cannot be split over 3 threads (each thread simulates whole nodes); use at most 2 threads "
         "or more nodes"),
    ],
)
def test_bad_threads_one_line_exit_2_nothing_written(tmp_path, overrides, line):
    proc = run_collsim([*overrides, "sizes.max=1KiB", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                       env=THIS_CHECKOUT)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.splitlines() == [f"collsim: error: {line}"] and proc.stdout == ""
    assert not (tmp_path / "run" / "results.csv").exists()


def test_threads_with_mpi_ranks_are_refused(tmp_path):
    proc = mpiexec(2, VENV_BIN / "collsim", "cluster.nodes=4", "fidelity=event", "threads=2", "sizes.max=1KiB",
                   "hydra.run.dir=run", cwd=tmp_path, env=THIS_CHECKOUT)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.splitlines() == [
        "collsim: error: threads: threads=2 cannot be combined with 2 MPI ranks (each rank runs one engine); use "
        "threads=1 under mpiexec, or threads > 1 in a single process"]
    assert proc.stdout == "" and not (tmp_path / "run" / "results.csv").exists()
