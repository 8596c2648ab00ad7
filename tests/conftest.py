"""Shared test helpers: run the installed ``collsim`` command as a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent

# A user topology (README "Your own cluster"): 4 chips on a ring, round numbers for hand-computed times.
RING4 = """\
name: ring4
chip: {reduce_bandwidth: 1000GB/s, launch_overhead: 5us}
levels:
  - {name: ring, size: 4, fabric: ring, link: {bandwidth: 100GB/s, latency: 1us, efficiency: 1.0}}
scale_out:
  nics_per_node: 4
  nic: {bandwidth: 100Gbps, latency: 10us}
"""


def write_ring4(root: Path) -> Path:
    """Write RING4 as ``root/clusters/topology/ring4.yaml``; return the config dir for --config-dir."""
    (root / "clusters" / "topology").mkdir(parents=True, exist_ok=True)
    (root / "clusters" / "topology" / "ring4.yaml").write_text(RING4)
    return root / "clusters"


def run_collsim(args, cwd, timeout=120, env=None):
    """Run ``collsim ARGS`` in ``cwd``; returns the CompletedProcess (text mode)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [str(VENV_BIN / "collsim"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


@pytest.fixture
def user_dir(tmp_path):
    """--config-dir holding the ring4 user topology."""
    return write_ring4(tmp_path)


@pytest.fixture
def collsim(tmp_path):
    """Call as ``collsim(*overrides)``; runs in tmp_path with hydra.run.dir=tmp_path/run."""

    def _run(*args, timeout=120):
        return run_collsim([*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, timeout=timeout)

    _run.run_dir = tmp_path / "run"
    return _run
