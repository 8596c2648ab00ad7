"""Sweeps (``collsim -m``): combined table, resume, progress, experiments, errors."""
import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from collsim import sweep
from collsim.errors import ConfigError
from tests.conftest import VENV_BIN, run_collsim, write_ring4





# Job keys hash collsim's source; pinning that part keeps resume tests independent of edits
# made to the tree while they run (the fingerprint itself is tested in-process below).
PINNED = {sweep.CODE_FINGERPRINT_ENV: "tests"}


def multirun(tmp_path, *args, sweep_dir="sw", timeout=180):
    return run_collsim(["-m", *args, f"hydra.sweep.dir={tmp_path / sweep_dir}"], cwd=tmp_path, timeout=timeout,
                       env=PINNED)


# 2 nodes x 2 algorithms x sizes 1 MiB and 4 MiB on the 4-chip ring4 cluster: 4 jobs, 8 rows.
SMALL = ("topology=ring4", "cluster.nodes=1,2", "algorithm=ring,hierarchical", "algorithm.channels=1",
         "sizes.min=1MiB", "sizes.max=4MiB", "sizes.factor=4")


def small_sweep(tmp_path, user_dir, *extra, sweep_dir="sw"):
    return multirun(tmp_path, "--config-dir", str(user_dir), *SMALL, *extra, sweep_dir=sweep_dir)


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The SMALL sweep, run once for the module: (CompletedProcess, sweep dir, user config dir)."""
    base = tmp_path_factory.mktemp("small")
    write_ring4(base)
    proc = small_sweep(base, base / "clusters")
    assert proc.returncode == 0, proc.stderr
    return proc, base / "sw", base / "clusters"


# --- the combined table ------------------------------------------------------------------


def test_multirun_writes_one_complete_combined_table(small):
    proc, sweep_dir, _ = small
    df = pd.read_csv(sweep_dir / "combined.csv")  # one pandas call
    assert len(df) == 8
    assert f"4 jobs (0 resumed), 8 rows -> {sweep_dir / 'combined.csv'}" in proc.stdout
    # Hydra's job order: the first swept key varies slowest.
    assert df["job"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert df["nodes"].tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    assert df["chips"].tolist() == [4, 4, 4, 4, 8, 8, 8, 8]
    assert df["algorithm"].tolist() == ["ring", "ring", "hierarchical", "hierarchical"] * 2
    assert df["size_bytes"].tolist() == [2**20, 2**22] * 4
    assert df.loc[0, "overrides"] == ("topology=ring4 cluster.nodes=1 algorithm=ring algorithm.channels=1 "
                                      "sizes.min=1MiB sizes.max=4MiB sizes.factor=4")
    # Every job directory is named by its key and its rows are exactly that job's results.csv.
    dirs = job_dirs(sweep_dir)
    assert sorted(d.name for d in dirs) == sorted(df["job_key"].unique())
    for key, rows in df.groupby("job_key", sort=False):
        own = pd.read_csv(sweep_dir / key / "results.csv")
        assert rows.drop(columns=list(sweep.LEAD_COLUMNS + sweep.TAIL_COLUMNS)).reset_index(drop=True).equals(own)
    # One ring of 4 chips, one channel, S = 4 MiB: 2(n-1)(alpha + S/(nB)) + (n-1)(S/n)/R + launch
    #   = 6 x (1 us + 1,048,576 B / 100 GB/s) + 3 x 1,048,576 B / 1000 GB/s + 5 us
    #   = 6 x (1,000,000 + 10,485,760) + 3,145,728 + 5,000,000 ps = 77,060,288 ps
    assert df.loc[1, "time_ps"] == 77_060_288
    # Per-chip line rates: ring of 4 = 2 ports x 100 GB/s; 4 x 100 Gbps NICs for 4 chips = 12.5 GB/s.
    assert set(df["scaleup_GBps_per_chip"]) == {200.0}
    assert set(df["scaleout_GBps_per_chip"]) == {12.5}
    # No temporary files are left behind by the atomic writes.
    assert not [p for p in sweep_dir.rglob(".*.tmp")]
    # Silent about progress when stdout is not a terminal.
    assert "# sweep:" not in proc.stdout


def test_resume_false_reruns_and_the_table_covers_only_this_sweep(small, tmp_path):
    _, original, user_dir = small
    shutil.copytree(original, tmp_path / "sw")
    sweep_dir = tmp_path / "sw"
    stamps = {d.name: (d / "results.csv").stat().st_mtime_ns for d in job_dirs(sweep_dir)}
    # A smaller sweep into the same directory, told not to resume: its 2 jobs run again,
    # the other 2 stay on disk but are not part of this sweep's table.
    proc = multirun(tmp_path, "--config-dir", str(user_dir), *[a for a in SMALL if not a.startswith("cluster.")],
                    "cluster.nodes=1", "sweep.resume=false")
    assert proc.returncode == 0, proc.stderr
    assert "2 jobs (0 resumed), 4 rows" in proc.stdout
    df = pd.read_csv(sweep_dir / "combined.csv")
    assert df["nodes"].tolist() == [1, 1, 1, 1] and df["job"].tolist() == [0, 0, 1, 1]
    # sweep.* is not part of the key: the same directories were reused.
    assert {d.name for d in job_dirs(sweep_dir)} == set(stamps)
    for name, stamp in stamps.items():
        rerun = (sweep_dir / name / "results.csv").stat().st_mtime_ns != stamp
        assert rerun == (name in set(df["job_key"])), name


# --- resume ----------------------------------------------------------------------------------


def test_killed_sweep_resumes_and_loses_nothing_that_finished(tmp_path, user_dir):
    sweep_dir = tmp_path / "sw"
    nodes = ",".join(str(n) for n in range(1, 5))
    point = ["--config-dir", str(user_dir), "topology=ring4", f"cluster.nodes={nodes}", "algorithm=ring",
             "sizes.min=1KiB", "sizes.max=1KiB"]
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, **PINNED}
    proc = subprocess.Popen([str(VENV_BIN / "collsim"), "-m", *point, f"hydra.sweep.dir={sweep_dir}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not list(sweep_dir.glob("*/done.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = {p.parent.name: (p.parent / "results.csv").stat().st_mtime_ns for p in sweep_dir.glob("*/done.json")}
    assert 1 <= len(finished) < 4, "the kill must land mid-sweep"
    assert not (sweep_dir / "combined.csv").exists()
    rerun = multirun(tmp_path, *point)
    assert rerun.returncode == 0, rerun.stderr
    assert f"4 jobs ({len(finished)} resumed), 4 rows" in rerun.stdout
    assert rerun.stdout.count("complete results found") == len(finished)
    df = pd.read_csv(sweep_dir / "combined.csv")
    assert df["nodes"].tolist() == list(range(1, 5))
    for name, stamp in finished.items():  # finished jobs were not run again
        assert name in set(df["job_key"])
        assert (sweep_dir / name / "results.csv").stat().st_mtime_ns == stamp


# --- errors ----------------------------------------------------------------------------------


def one_error_line(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("collsim: error: ")
    return lines[0]


def test_bad_experiment_name_is_one_line(tmp_path):
    line = one_error_line(multirun(tmp_path, "experiment=trn9_scaling"))
    assert "experiment/trn9_scaling" in line
    for name in ("demo", "generations", "trn2_scaling", "trn3_scaling"):
        assert name in line


def test_bad_sweep_value_fails_before_any_job(tmp_path):
    line = one_error_line(multirun(tmp_path, "cluster.nodes=1,two", "sizes.max=1KiB"))
    assert "cluster.nodes" in line and "two" in line
    assert not (tmp_path / "sw").exists() or not job_dirs(tmp_path / "sw")


def test_bad_sweep_node_value_is_one_line(tmp_path):
    line = one_error_line(multirun(tmp_path, "experiment=demo", "sweep.resume=maybe"))
    assert "sweep.resume" in line


def test_invalid_point_stops_the_sweep_with_one_line(tmp_path):
    line = one_error_line(multirun(tmp_path, "cluster.chips=32,40", "algorithm=ring", "sizes.max=1KiB"))
    assert line == "collsim: error: cluster.chips: must be a positive multiple of the 16 chips per node, got 40"
    df = pd.read_csv(next((tmp_path / "sw").glob("*/results.csv")))  # the valid point before it finished
    assert df["chips"].tolist() == [32]


# --- experiments -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import collsim.app  # noqa: F401  (registers schemas, the job-key resolver and the MPI launcher)
    from collsim.paths import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base=None):
        yield lambda *overrides: hydra_compose("config", list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()


def swept(cfg, key) -> list[str]:
    return str(cfg.hydra.sweeper.params[key]).split(",")


def test_trn3_scaling_reaches_a_million_chips(compose):
    cfg = compose("experiment=trn3_scaling")
    assert swept(cfg, "topology") == ["trn3-ultraserver"]
    nodes = [int(n) for n in swept(cfg, "cluster.nodes")]
    assert nodes[0] == 1 and nodes[-1] == 6944
    assert 144 * 6944 == 999_936  # chips per UltraServer: 4 x 18 x 2
    assert swept(cfg, "algorithm") == ["ring", "tree", "hierarchical"]
    assert sweep.count_jobs(cfg) == len(nodes) * 3
    assert str(cfg.hydra.sweep.dir) == "multirun/trn3_scaling"


def test_trn2_scaling_covers_1_to_4096_nodes(compose):
    cfg = compose("experiment=trn2_scaling")
    assert swept(cfg, "topology") == ["trn2"]
    assert [int(n) for n in swept(cfg, "cluster.nodes")] == [2**i for i in range(13)]
    assert str(cfg.hydra.sweep.dir) == "multirun/trn2_scaling"


@pytest.mark.parametrize("name", ["generations", "demo"])
def test_equal_chip_experiments_build_every_point(compose, name):
    from collsim.runner import cluster_nodes
    from topologies.loader import load_topology

    cfg = compose(f"experiment={name}")
    topologies, chips = swept(cfg, "topology"), [int(c) for c in swept(cfg, "cluster.chips")]
    assert {"trn1", "trn2", "trn3-ultraserver"} <= set(topologies)
    for topo in topologies:
        point = compose(f"experiment={name}", f"topology={topo}")
        per_node = load_topology(OmegaConf.to_container(point.topology, resolve=True, enum_to_str=True)).chips_per_node
        for n in chips:  # every chip count is whole nodes of every topology
            nodes = cluster_nodes(OmegaConf.create({"nodes": 1, "chips": n}), per_node)
            assert nodes * per_node == n
    assert str(cfg.hydra.sweep.dir) == f"multirun/{name}"


def test_cluster_chips_sets_nodes(compose):
    from collsim.runner import build_spec

    assert build_spec(compose("topology=trn3-ultraserver", "cluster.chips=576")).cluster.nodes == 4  # 576 / 144
    assert build_spec(compose("topology=trn2", "cluster.nodes=3")).cluster.nodes == 3
    with pytest.raises(ConfigError, match="cluster.chips: must be a positive multiple of the 144 chips per node"):
        build_spec(compose("topology=trn3-ultraserver", "cluster.chips=100"))


# --- job keys, bandwidths, the table writer --------------------------------------------------


def test_job_key_is_the_resolved_config_without_sweep_settings(compose, monkeypatch):
    base = compose("topology=trn2", "cluster.nodes=4")
    key = sweep.job_key(base)
    assert len(key) == sweep.KEY_CHARS and int(key, 16) >= 0
    assert sweep.job_key(compose("topology=trn2", "cluster.nodes=4", "sweep.resume=false", "sweep.name=x")) == key
    assert sweep.job_key(compose("topology=trn2", "cluster.nodes=8")) != key
    # A preset value changed in place changes the key even though the overrides look alike.
    assert sweep.job_key(compose("topology=trn2", "cluster.nodes=4", "topology.levels.0.link.latency=2us")) != key
    # The subdir resolver gives the same key on the full (hydra-bearing) config.
    assert str(base.hydra.sweep.subdir) == key
    # Other code, other results: the source fingerprint is part of the key.
    monkeypatch.setattr(sweep, "code_fingerprint", lambda: "0" * 64)
    assert sweep.job_key(base) != key


def test_code_fingerprint_hashes_the_source_unless_pinned(monkeypatch):
    monkeypatch.delenv(sweep.CODE_FINGERPRINT_ENV, raising=False)
    sweep.code_fingerprint.cache_clear()
    real = sweep.code_fingerprint()
    assert len(real) == 64 and int(real, 16) >= 0
    monkeypatch.setenv(sweep.CODE_FINGERPRINT_ENV, "pinned")
    sweep.code_fingerprint.cache_clear()
    assert sweep.code_fingerprint() == "pinned"
    sweep.code_fingerprint.cache_clear()


def test_chip_bandwidths_of_the_presets():
    from topologies.loader import load_topology

    def rates(name):
        text = (Path(__file__).parent.parent / "conf" / "topology" / f"{name}.yaml").read_text()
        return sweep.chip_bandwidths_Bps(load_topology(OmegaConf.to_container(OmegaConf.create(text))))

    assert rates("trn1") == (4 * 96 * 10**9, 8 * 100 * 10**9 // 8 // 16)  # 4x4 torus; 8 x 100 Gbps per 16 chips
    assert rates("trn2") == (4 * 256 * 10**9, 200 * 10**9 // 8)  # 1,024 GB/s; one 200 Gbps NIC per chip
    assert rates("trn2-ultraserver") == ((4 * 256 + 2 * 128) * 10**9, 25 * 10**9)  # torus + Z ring
    assert rates("trn3-ultraserver") == ((256 + 320 + 128) * 10**9, 25 * 10**9)  # sled/rack uplinks + pair


def test_combined_rows_refuses_an_incomplete_job(tmp_path):
    job = tmp_path / "abc"
    job.mkdir()
    (job / "results.csv").write_text("size_bytes\n1\n")
    with pytest.raises(ValueError, match="job 3: no completion marker"):
        sweep.combined_rows([(3, str(job), [])])
    marker = {"key": "abc", "results_file": "results.csv", "rows": 2, "overrides": [],
              "scaleup_Bps_per_chip": 1, "scaleout_Bps_per_chip": 1}
    (job / "done.json").write_text(json.dumps(marker))
    with pytest.raises(ValueError, match="holds 1 result rows, expected 2"):
        sweep.combined_rows([(3, str(job), [])])
    assert sweep.read_done(job, "abc") is None
    marker["rows"] = 1
    (job / "done.json").write_text(json.dumps(marker))
    assert sweep.read_done(job, "abc")["rows"] == 1
    assert sweep.read_done(job, "other") is None


ROWS = [{"job": 0, "size_bytes": 1024, "time_ps": 5, "wrong": ""},
        {"job": 1, "size_bytes": 2048, "time_ps": 7, "wrong": ""}]


def test_write_combined_csv_and_parquet(tmp_path):
    import pyarrow  # noqa: F401  (in the test extra: the Parquet branch must run here, not be skipped)

    written = sweep.write_combined(tmp_path, ROWS)
    assert written == [tmp_path / "combined.csv", tmp_path / "combined.parquet"]
    for df in (pd.read_csv(tmp_path / "combined.csv"), pd.read_parquet(tmp_path / "combined.parquet")):
        assert df["size_bytes"].tolist() == [1024, 2048] and df["time_ps"].tolist() == [5, 7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["combined.csv", "combined.parquet"]  # no temp files


def test_write_combined_without_pyarrow_writes_the_csv_only(tmp_path, monkeypatch):
    for name in ("pyarrow", "pyarrow.csv", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    assert sweep.write_combined(tmp_path, ROWS) == [tmp_path / "combined.csv"]
    assert pd.read_csv(tmp_path / "combined.csv")["time_ps"].tolist() == [5, 7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["combined.csv"]


# --- progress --------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_lines_on_a_terminal():
    clock, term = Clock(), Terminal()
    progress = sweep.Progress(4, stream=term, clock=clock)
    assert progress.enabled
    clock.now += 10.0
    progress.update(1, 23)
    clock.now += 20.0
    progress.update(3, 69)
    progress.update(3, 69)  # nothing new: no line
    clock.now += 3725.0
    progress.update(4, 92)
    assert term.getvalue().splitlines() == [
        "# sweep: 1/4 jobs, 23 sizes, elapsed 0:10, ETA 0:30",  # 10 s per job, 3 to go
        "# sweep: 3/4 jobs, 69 sizes, elapsed 0:30, ETA 0:10",
        "# sweep: 4/4 jobs, 92 sizes, elapsed 1:02:35, ETA 0:00",
    ]


def test_progress_is_silent_off_a_terminal_and_on_other_ranks(monkeypatch):
    quiet = io.StringIO()
    sweep.Progress(2, stream=quiet).update(1, 1)
    assert quiet.getvalue() == ""
    monkeypatch.setenv("PMI_RANK", "1")
    term = Terminal()
    sweep.Progress(2, stream=term).update(1, 1)
    assert term.getvalue() == ""
    forced = io.StringIO()
    sweep.Progress(None, stream=forced, enabled=True).update(1, 5)
    assert forced.getvalue().startswith("# sweep: 1/? jobs, 5 sizes, elapsed 0:00\n")


def test_progress_shows_on_a_terminal_end_to_end(tmp_path, user_dir):
    master, slave = pty.openpty()
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, **PINNED}
    proc = subprocess.Popen(
        [str(VENV_BIN / "collsim"), "-m", "--config-dir", str(user_dir), "topology=ring4", "cluster.nodes=1,2",
         "algorithm=ring", "sizes.min=1KiB", "sizes.max=4KiB", f"hydra.sweep.dir={tmp_path / 'sw'}"],
        cwd=tmp_path, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    out = b"".join(chunks).decode()
    assert "# sweep: 1/2 jobs, 3 sizes, elapsed " in out and ", ETA " in out
    assert "# sweep: 2/2 jobs, 6 sizes, elapsed " in out
