"""``hydra/launcher=mpi`` under ``mpiexec``: same combined table as one process, failures abort.

Ranks are oversubscribed on small machines (the MPICH wheel's mpiexec allows
it); every run has a timeout, so a hang fails the test instead of blocking it.
"""
import os
import subprocess

import pandas as pd
import pytest

from tests.conftest import VENV_BIN, run_collsim, write_ring4

# 3 node counts x 2 algorithms = 6 jobs of 3 sizes.
SWEEP = ("topology=ring4", "cluster.nodes=1,2,3", "algorithm=ring,hierarchical", "sizes.min=1KiB",
         "sizes.max=64KiB", "sizes.factor=8")
TIMEOUT_S = 180
# Job keys hash collsim's source: pin that part so edits made meanwhile cannot change keys.
PINNED = {"COLLSIM_CODE_FINGERPRINT": "tests"}


def mpiexec(ranks: int, args, cwd, timeout=TIMEOUT_S):
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, **PINNED}
    return subprocess.run([str(VENV_BIN / "mpiexec"), "-n", str(ranks), str(VENV_BIN / "collsim"), "-m", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A config dir with the ring4 topology, and the single-process sweep's combined table."""
    root = tmp_path_factory.mktemp("mpi")
    write_ring4(root)
    proc = run_collsim(["-m", "--config-dir", str(root / "clusters"), *SWEEP, f"hydra.sweep.dir={root / 'single'}"],
                       cwd=root, timeout=TIMEOUT_S, env=PINNED)
    assert proc.returncode == 0, proc.stderr
    return root, pd.read_csv(root / "single" / "combined.csv")


def same_table(mpi: pd.DataFrame, single: pd.DataFrame) -> bool:
    volatile = ["wall_s", "ranks"]
    return mpi.drop(columns=volatile).equals(single.drop(columns=volatile))


def test_four_ranks_give_the_single_process_table(base, tmp_path):
    root, single = base
    # Ranks' stdout is a pipe to mpiexec, never a terminal: progress has to be asked for.
    proc = mpiexec(4, ["--config-dir", str(root / "clusters"), *SWEEP, f"hydra.sweep.dir={tmp_path / 'sw'}",
                       "hydra/launcher=mpi", "sweep.progress=true"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(tmp_path / "sw" / "combined.csv")
    assert len(df) == 18 and same_table(df, single)
    assert set(df["ranks"]) == {1}
    # Rank 0 alone talks: one launch line, one final line, no job tables on the terminal.
    assert proc.stdout.count("Launching 6 jobs on 4 MPI ranks, 1 per job") == 1
    assert proc.stdout.count("# collsim sweep: 6 jobs (0 resumed), 18 rows") == 1
    assert "# collsim topology:" not in proc.stdout
    assert proc.stderr == ""
    # Progress from rank 0 only: one line per change of the shared counts, ending at 6/6.
    progress = [line for line in proc.stdout.splitlines() if line.startswith("# sweep: ")]
    done = [(int(line.split()[2].split("/")[0]), int(line.split()[4])) for line in progress]
    assert done == sorted(set(done)) and 1 <= len(done) <= 2 * 6
    assert progress[-1].startswith("# sweep: 6/6 jobs, 18 sizes, elapsed ")
    # Each job's table went to its own directory instead.
    for key in df["job_key"].unique():
        assert "# collsim topology: ring4" in (tmp_path / "sw" / key / "stdout.txt").read_text()


def test_ranks_per_job_runs_jobs_on_sub_communicators_and_resumes(base, tmp_path):
    import shutil

    root, single = base
    # Start from the single-process sweep with one job's completion marker gone: the group
    # leader decides for both members, 5 jobs are resumed and 1 runs on a 2-rank communicator.
    shutil.copytree(root / "single", tmp_path / "sw")
    rerun_key = single["job_key"].iloc[-1]
    (tmp_path / "sw" / rerun_key / "done.json").unlink()
    (tmp_path / "sw" / rerun_key / "app.log").unlink()
    proc = mpiexec(2, ["--config-dir", str(root / "clusters"), *SWEEP, f"hydra.sweep.dir={tmp_path / 'sw'}",
                       "hydra/launcher=mpi", "hydra.launcher.ranks_per_job=2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Launching 6 jobs on 2 MPI ranks, 2 per job" in proc.stdout
    assert "# collsim sweep: 6 jobs (5 resumed), 18 rows" in proc.stdout
    df = pd.read_csv(tmp_path / "sw" / "combined.csv")
    assert same_table(df, single)
    assert df.loc[df["job_key"] == rerun_key, "ranks"].tolist() == [2, 2, 2]  # ran on a 2-rank communicator
    assert set(df.loc[df["job_key"] != rerun_key, "ranks"]) == {1}  # resumed from the single-process run
    # The group's leader alone wrote the job's log, once.
    log = (tmp_path / "sw" / rerun_key / "app.log")
    assert log.exists() and len(list((tmp_path / "sw" / rerun_key).glob("*.log"))) == 1


@pytest.mark.parametrize("ranks,per_job", [(3, 1), (2, 2)])
def test_a_failing_job_aborts_every_rank_with_one_message(base, tmp_path, ranks, per_job):
    root, _ = base
    proc = mpiexec(ranks, ["--config-dir", str(root / "clusters"), "topology=ring4", "cluster.nodes=1,0,2,3",
                           "sizes.max=1KiB", f"hydra.sweep.dir={tmp_path / 'sw'}", "hydra/launcher=mpi",
                           f"hydra.launcher.ranks_per_job={per_job}"], cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.count("collsim: error: cluster.nodes: must be an integer >= 1, got 0") == 1, proc.stderr
    assert proc.stderr.count("collsim: job #1 (topology=ring4 cluster.nodes=0 sizes.max=1KiB) failed on MPI rank") == 1
    assert not (tmp_path / "sw" / "combined.csv").exists()


def test_ranks_per_job_must_divide_the_ranks(base, tmp_path):
    root, _ = base
    proc = mpiexec(2, ["--config-dir", str(root / "clusters"), "topology=ring4", "cluster.nodes=1,2",
                       "sizes.max=1KiB", f"hydra.sweep.dir={tmp_path / 'sw'}", "hydra/launcher=mpi",
                       "hydra.launcher.ranks_per_job=3"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "collsim: error: hydra.launcher.ranks_per_job: must be a positive divisor of the 2 MPI ranks, got 3"
    ]
