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
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from collsim.config import register_configs
from collsim.errors import ConfigError
from collsim.paths import config_dir

EXIT_USAGE = 2


register_configs()


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from collsim.runner import run

    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as err:
        # Raised inside the job: exit here, or Hydra adds its own "Error executing job" line.
        _fail(str(err))


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
    try:
        _hydra_main()
    except ConfigError as err:
        _fail(str(err))
    except (HydraException, OmegaConfBaseException) as err:
        cause = err.__cause__ if isinstance(err.__cause__, (ConfigError, OmegaConfBaseException)) else None
        _fail(one_line(str(cause if cause is not None else err)))


def _fail(message: str) -> None:
    print(f"collsim: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
