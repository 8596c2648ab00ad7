"""A Hydra launcher that spreads a sweep's jobs over MPI ranks.

Every rank runs the same ``collsim -m ...`` command, so every rank composes
the same sweep and calls :meth:`MpiLauncher.launch` with the same job list.
The world is cut into groups of ``ranks_per_job`` consecutive ranks; each
group is one sub-communicator and runs one job at a time on it (the job gets
the communicator through :func:`collsim.jobcomm.job_comm`).  Groups take the
next job from a shared counter (an MPI one-sided fetch-and-add on rank 0), so
long and short jobs balance themselves; which group ran a job never changes
its results.  At the end every rank gets every job's return, in job order, as
Hydra expects.

Output: job tables go to ``stdout.txt`` in each job's directory; only launch
rank 0 talks to the terminal (launch line, progress, the sweep's final line).
A job that fails prints its message on the rank that ran it and aborts the
whole MPI job (``MPI_Abort``): no rank is left waiting.
"""
from __future__ import annotations

import io
import logging
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

# Slots of the shared counter window on rank 0.
NEXT_JOB, JOBS_DONE, SIZES_DONE = 0, 1, 2
_SLOTS = 3
# Logging for members that are not a job's leader: the leader alone writes the job's log.
_NO_LOGGING = {"version": 1, "root": {"level": "WARNING", "handlers": []}, "disable_existing_loggers": False}
# A failing non-leader waits this long before printing, so that when the whole group fails
# alike the leader's message (printed at once) is the only one before MPI_Abort lands.
_MEMBER_FAIL_DELAY_S = 2.0
_IO_GRACE_S = 0.5


class SharedCounters:
    """int64 counters in an MPI window on rank 0, updated with atomic fetch-and-add."""

    def __init__(self, comm: Any, slots: int) -> None:
        import numpy as np
        from mpi4py import MPI

        self._np, self._MPI = np, MPI
        self.win = MPI.Win.Allocate(8 * slots if comm.Get_rank() == 0 else 0, disp_unit=8, comm=comm)
        if comm.Get_rank() == 0:
            self.win.Lock(0, MPI.LOCK_EXCLUSIVE)
            self.win.Put(np.zeros(slots, dtype=np.int64), 0)
            self.win.Unlock(0)
        comm.Barrier()  # nobody counts before the counters are zero

    def add(self, slot: int, *values: int) -> list[int]:
        """Add ``values`` to counters ``slot, slot+1, ...`` in one atomic-per-counter
        operation; returns their values before."""
        np, MPI = self._np, self._MPI
        origin = np.array(values, dtype=np.int64)
        result = np.zeros(len(values), dtype=np.int64)
        self.win.Lock(0, MPI.LOCK_SHARED)
        self.win.Get_accumulate(origin, result, 0, (slot, len(values), MPI.INT64_T),
                                MPI.SUM if any(values) else MPI.NO_OP)
        self.win.Unlock(0)
        return [int(v) for v in result]

    def read(self, slot: int, count: int = 1) -> list[int]:
        return self.add(slot, *([0] * count))

    def free(self) -> None:
        self.win.Free()


class MpiLauncher(Launcher):
    def __init__(self, ranks_per_job: int = 1, poll_interval: float = 0.05) -> None:
        super().__init__()
        self.ranks_per_job = ranks_per_job
        self.poll_interval = poll_interval
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None
        self._rank = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    # --- the sweep ------------------------------------------------------------------

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from mpi4py import MPI

        from collsim.errors import ConfigError

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        world = MPI.COMM_WORLD
        rank, size = world.Get_rank(), world.Get_size()
        self._rank = rank
        per_job = self.ranks_per_job
        if isinstance(per_job, bool) or not isinstance(per_job, int) or per_job < 1 or size % per_job:
            # Every rank sees the same values and raises alike: no rank is left waiting.
            raise ConfigError("hydra.launcher.ranks_per_job", f"must be a positive divisor of the {size} MPI ranks, got {per_job!r}")
        setup_globals()
        if rank == 0:
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            log.info(f"Launching {len(job_overrides)} jobs on {size} MPI ranks, {per_job} per job")
        group = world.Split(color=rank // per_job, key=rank)
        counters = SharedCounters(world, _SLOTS)
        progress = self._progress(len(job_overrides)) if rank == 0 else None
        try:
            mine = self._run_share(job_overrides, initial_job_idx, group, counters, progress)
            self._wait_for_all(world, counters, progress)
            parts = world.allgather(mine)
        except BaseException as exc:  # an MPI or launcher error on this rank alone: never leave the others waiting
            _abort(f"the MPI launcher failed on MPI rank {rank}", True, "", exc)
        counters.free()
        group.Free()
        returns: Dict[int, JobReturn] = {}
        for part in parts:
            returns.update(part)
        return [returns[i] for i in range(len(job_overrides))]

    def _run_share(self, job_overrides, initial_job_idx, group, counters, progress) -> Dict[int, JobReturn]:
        """Take jobs from the shared counter until none is left; returns the ones this group led."""
        leader = group.Get_rank() == 0
        mine: Dict[int, JobReturn] = {}
        while True:
            idx = counters.add(NEXT_JOB, 1)[0] if leader else None
            if group.Get_size() > 1:
                idx = group.bcast(idx, root=0)
            if idx >= len(job_overrides):
                return mine
            ret = self._run_one(idx, job_overrides[idx], initial_job_idx, group, leader)
            if leader:
                mine[idx] = ret
                rows = ret.return_value.get("rows", 0) if isinstance(ret.return_value, dict) else 0
                counters.add(JOBS_DONE, 1, rows)  # JOBS_DONE and SIZES_DONE are adjacent
            if progress is not None:
                progress.update(*counters.read(JOBS_DONE, 2))

    def _wait_for_all(self, world, counters, progress) -> None:
        """Barrier that sleeps instead of spinning (ranks may share cores), showing progress on rank 0."""
        request = world.Ibarrier()
        while not request.Test():
            if progress is not None:
                progress.update(*counters.read(JOBS_DONE, 2))
            time.sleep(self.poll_interval)
        if progress is not None:
            progress.update(*counters.read(JOBS_DONE, 2))

    def _progress(self, total: int):
        from collsim.sweep import Progress, progress_enabled

        return Progress(total, enabled=progress_enabled(self.config))

    # --- one job --------------------------------------------------------------------

    def _run_one(self, idx: int, overrides: Sequence[str], initial_job_idx: int, group, leader: bool) -> JobReturn:
        from collsim import jobcomm

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        num = initial_job_idx + idx
        what = f"job #{num} ({' '.join(filter_overrides(overrides))}) failed on MPI rank {self._rank}"
        out, err = io.StringIO(), io.StringIO()
        try:
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = num
                sweep_config.hydra.job.num = num
                if not leader:  # the leader alone writes the job's .hydra/ and log file
                    sweep_config.hydra.output_subdir = None
                    sweep_config.hydra.job_logging = _NO_LOGGING
            with jobcomm.assigned(group), redirect_stdout(out), redirect_stderr(sys.stderr if leader else err):
                ret = run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=sweep_config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
            if self._rank == 0:  # run_job pointed logging at the job; the launcher logs again
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            if ret.status == JobStatus.FAILED:  # an exception inside the task function
                _abort(what, leader, err.getvalue(), ret._return_value)
            if leader:
                job_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
                (job_dir / "stdout.txt").write_text(out.getvalue())
        except BaseException as exc:  # SystemExit of a job's one-line error, or a crash outside the task
            _abort(what, leader, err.getvalue(), exc)
        return ret


def _abort(what: str, leader: bool, captured: str, exc: BaseException) -> None:
    """Print the failure once (from the rank that had it) and end every rank with MPI_Abort."""
    from mpi4py import MPI

    if not leader:
        time.sleep(_MEMBER_FAIL_DELAY_S)
        sys.stderr.write(captured)
    if isinstance(exc, SystemExit):  # the job already printed its one-line error
        code = exc.code if isinstance(exc.code, int) and exc.code else 1
    else:
        code = 1
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"collsim: {what}; aborting all ranks", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # The process manager forwards our stderr asynchronously; MPI_Abort kills that forwarding
    # with the processes, so give the message a moment to leave first.
    time.sleep(_IO_GRACE_S)
    MPI.COMM_WORLD.Abort(code)
