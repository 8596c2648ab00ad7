"""The ``collsim`` command: a Hydra app (``collsim topology=trn2 cluster.nodes=64 ...``).

Bad input of any kind (unknown preset or group option, a value of the wrong
type, an invalid topology, impossible sizes) ends with one line on stderr
naming the field, and exit code 2.  Hydra's own multi-line messages are folded
into that one line.  Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from collsim.config import register_configs
from collsim.errors import ConfigError
from collsim.jobcomm import is_job_leader, launch_rank
from collsim.paths import config_dir
from collsim.sweep import register_mpi_launcher, run_sweep_job  # also registers ${collsim_job_key:}

EXIT_USAGE = 2
# Ranks other than 0 of a plain MPI run (``mpiexec -n R collsim ...``) write nothing:
# no output directory of their own (the run dir is the current one), no config copy, no log.
QUIET_RANK_OVERRIDES = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled")


register_configs()
register_mpi_launcher()


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> dict | None:
    from collsim.runner import run

    hydra_cfg = HydraConfig.get()
    try:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # A sweep job: resumable, and noted for the sweep's combined table (collsim/sweep.py).
            return run_sweep_job(cfg, Path(hydra_cfg.runtime.output_dir), overrides=hydra_cfg.overrides.task)
        run(cfg, Path(hydra_cfg.runtime.output_dir))
    except ConfigError as err:
        # Raised inside the job: exit here, or Hydra adds its own "Error executing job" line.
        # Under MPI every rank raises it alike; the job's rank 0 alone prints it.
        _fail(str(err), not is_job_leader())


def one_line(message: str) -> str:
    """Fold a multi-line Hydra/OmegaConf message into one line, keeping what matters."""
    parts: list[str] = []
    listing: list[str] = []
    for raw in message.splitlines():
        line = raw.strip()
        if not line or line.startswith(("object_type=", "reference_type=")):
            continue
        if raw.startswith("\t"):
            listing.append(line)
            continue
        if listing:
            parts[-1] += " " + ", ".join(listing)
            listing = []
        if line.startswith("Config search path"):
            break
        line = re.sub(r"^In '[^']*': ", "", line)
        parts.append(line)
    if listing and parts:
        parts[-1] += " " + ", ".join(listing)
    return "; ".join(parts)


def main() -> None:
    """Console-script entry point; maps bad input to one line and exit code 2."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us instead of Hydra's printer
    # Errors caught here happen outside any job, identically on every rank of an
    # MPI launch (config composition, sweep validation): launch rank 0 alone prints.
    quiet = launch_rank() != 0
    if quiet and not _is_multirun(sys.argv[1:]):
        sys.argv += QUIET_RANK_OVERRIDES  # later overrides win
    try:
        _hydra_main()
    except ConfigError as err:
        _fail(str(err), quiet)
    except (HydraException, OmegaConfBaseException) as err:
        cause = err.__cause__ if isinstance(err.__cause__, (ConfigError, OmegaConfBaseException)) else None
        _fail(one_line(str(cause if cause is not None else err)), quiet)


def _is_multirun(args: list[str]) -> bool:
    return any(a in ("-m", "--multirun") or a.replace(" ", "") == "hydra.mode=MULTIRUN" for a in args)


def _fail(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"collsim: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
