"""Shared test helpers: run the installed ``collsim`` command as a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def run_collsim(args, cwd, timeout=120, env=None):
    """Run ``collsim ARGS`` in ``cwd``; returns the CompletedProcess (text mode)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [str(VENV_BIN / "collsim"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


@pytest.fixture
def collsim(tmp_path):
    """Call as ``collsim(*overrides)``; runs in tmp_path with hydra.run.dir=tmp_path/run."""

    def _run(*args, timeout=120):
        return run_collsim([*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, timeout=timeout)

    _run.run_dir = tmp_path / "run"
    return _run
