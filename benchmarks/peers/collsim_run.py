"""The collsim side: the real ``collsim`` command on the cluster SMPI sees.

The topology YAML goes into a temporary ``--config-dir`` (Hydra's standard way to add a
preset), the run directory into the same place, and the per-size figures come back through
the run's ``results.csv``: simulated ``time_ps`` and ``wall_s`` (collsim's own time for that
size, without process start-up).
"""
from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peers.measure import Measured, run_measured
from benchmarks.peers.smpi_platform import collsim_topology_yaml


@dataclass(frozen=True)
class CollsimRow:
    nbytes: int
    count: int
    time_ps: int
    wall_s: float
    events: int


def topology_name(hosts: int) -> str:
    return f"smpi-flat-{hosts}"


def write_config_dir(config_dir: Path, hosts: int, bandwidth_Bps: int, latency_ps: int) -> str:
    """Write ``config_dir/topology/<name>.yaml``; returns the preset name."""
    name = topology_name(hosts)
    topo_dir = config_dir / "topology"
    topo_dir.mkdir(parents=True, exist_ok=True)
    (topo_dir / f"{name}.yaml").write_text(collsim_topology_yaml(hosts, bandwidth_Bps, latency_ps, name))
    return name


def collsim_argv(collsim: str, config_dir: Path, name: str, sizes: tuple[int, int, int], fidelity: str,
                 run_dir: Path) -> list[str]:
    lo, hi, factor = sizes
    return [
        collsim,
        "--config-dir",
        str(config_dir),
        f"topology={name}",
        "cluster.nodes=1",
        "algorithm=ring",
        "algorithm.channels=1",
        "algorithm.bidirectional=false",
        f"fidelity={fidelity}",
        "dtype=float32",
        f"sizes.min={lo}B",
        f"sizes.max={hi}B",
        f"sizes.factor={factor}",
        f"hydra.run.dir={run_dir}",
    ]


def read_results_csv(path: Path) -> list[CollsimRow]:
    with open(path, newline="") as handle:
        return [
            CollsimRow(
                nbytes=int(row["size_bytes"]),
                count=int(row["count"]),
                time_ps=int(row["time_ps"]),
                wall_s=float(row["wall_s"]),
                events=int(row["events"] or 0),
            )
            for row in csv.DictReader(handle)
        ]


def collsim_command() -> str:
    """The ``collsim`` entry point next to this interpreter (the project's .venv)."""
    return str(Path(sys.executable).with_name("collsim"))


def run_collsim(hosts: int, bandwidth_Bps: int, latency_ps: int, sizes: tuple[int, int, int], fidelity: str,
                work_dir: Path) -> tuple[list[CollsimRow], Measured]:
    work_dir.mkdir(parents=True, exist_ok=True)
    config_dir = work_dir / "conf"
    name = write_config_dir(config_dir, hosts, bandwidth_Bps, latency_ps)
    run_dir = work_dir / "run"
    argv = collsim_argv(collsim_command(), config_dir, name, sizes, fidelity, run_dir)
    measured = run_measured(argv, cwd=work_dir)
    if measured.returncode != 0:
        raise RuntimeError(f"collsim failed (exit {measured.returncode}) at {hosts} chips:\n{measured.stderr[-3000:]}")
    return read_results_csv(run_dir / "results.csv"), measured
