"""The ``hydra/launcher=mpi`` config node (structured, so bad values fail clearly)."""
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class MpiLauncherConf:
    _target_: str = "hydra_plugins.collsim_mpi_launcher.mpi_launcher.MpiLauncher"
    # Ranks that run each job together on one sub-communicator (collsim.jobcomm.job_comm());
    # must divide the number of MPI ranks. 1 = every rank runs its own jobs side by side.
    ranks_per_job: int = 1
    # Seconds between checks while a rank that ran out of jobs waits for the others
    # (a sleeping wait leaves the cores to ranks still working; MPI waits spin).
    poll_interval: float = 0.05


ConfigStore.instance().store(group="hydra/launcher", name="mpi", node=MpiLauncherConf, provider="collsim")
