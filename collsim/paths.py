"""Where collsim's Hydra configs live: inside the installed package, or in the checkout."""
from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """``collsim/conf`` when installed with ``pip install .``; ``conf/`` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"collsim's Hydra configs not found next to {here}")
