"""Which MPI communicator the current job runs on, and which launch rank this process is.

A sweep under ``hydra/launcher=mpi`` runs each job on a sub-communicator of
``ranks_per_job`` ranks (see ``hydra_plugins/collsim_mpi_launcher``).  The
launcher hands that communicator to the job with :func:`assigned`; code that
runs inside a job (the MPI chip-group simulation) asks :func:`job_comm` for it
and never reaches for ``MPI.COMM_WORLD`` directly, so the same simulation runs
alone under ``mpirun -n R collsim ...`` (world) or side by side with other jobs
of a sweep (a slice of the world).

mpi4py is imported lazily: a run without MPI never initialises it.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

_assigned: list[Any] = []  # stack of communicators handed out by the launcher

# Environment variables through which common process managers publish the rank of
# a process before MPI is initialised (MPICH/Intel MPI, Open MPI, PMIx, MVAPICH, SLURM).
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")


@contextmanager
def assigned(comm: Any) -> Iterator[Any]:
    """Make ``comm`` the communicator of the job run inside this block."""
    _assigned.append(comm)
    try:
        yield comm
    finally:
        _assigned.pop()


def job_comm() -> Any:
    """The communicator the current job must run on.

    Inside a job started by the MPI launcher: its sub-communicator.  Otherwise
    ``MPI.COMM_WORLD`` (a plain ``mpirun -n R collsim ...`` run, or a size-1
    world without mpirun).  Importing mpi4py here initialises MPI, so call it
    only from code that actually communicates.
    """
    if _assigned:
        return _assigned[-1]
    from mpi4py import MPI

    return MPI.COMM_WORLD


def has_job_comm() -> bool:
    """True inside a job that the MPI launcher placed on a sub-communicator."""
    return bool(_assigned)


def is_job_leader() -> bool:
    """True on the rank that writes the job's files: rank 0 of the job's communicator.

    Without an assigned communicator this is the launch rank 0 (every process
    of a non-MPI run).
    """
    if _assigned:
        return _assigned[-1].Get_rank() == 0
    return launch_rank() == 0


def launch_rank() -> int:
    """This process's rank in the launch (0 without MPI).

    Uses MPI when mpi4py is already initialised; otherwise the process
    manager's environment, so that errors found before MPI starts (bad
    overrides, detected identically by every rank) can be printed once.
    """
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_rank()
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def world_size() -> int:
    """Ranks in MPI_COMM_WORLD if MPI is initialised, else 1."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_size()
    return 1
