"""Structured config schemas (dataclasses registered in Hydra's ConfigStore).

The YAML files under ``conf/`` supply values; these dataclasses fix the types,
so a bad override (``cluster.nodes=abc``, ``algorithm.channels=x``, a preset
with ``fabric: mesh``) fails with a clear message naming the key.  Quantities
with units are strings parsed by :mod:`collsim.units` (``"256GB/s"``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class FabricName(str, Enum):
    ring = "ring"
    torus = "torus"
    switch = "switch"
    direct = "direct"
    fat_tree = "fat_tree"


class DType(str, Enum):
    float32 = "float32"
    float16 = "float16"
    int32 = "int32"


DTYPE_BYTES = {DType.float32: 4, DType.float16: 2, DType.int32: 4}
NCCL_TYPE_NAMES = {DType.float32: "float", DType.float16: "half", DType.int32: "int32"}


class CollectiveName(str, Enum):
    all_reduce = "all_reduce"
    reduce_scatter = "reduce_scatter"
    all_gather = "all_gather"


class AlgorithmName(str, Enum):
    ring = "ring"
    tree = "tree"
    hierarchical = "hierarchical"
    auto = "auto"


class FidelityName(str, Enum):
    analytic = "analytic"
    event = "event"
    data = "data"


# --- topology (group ``topology``: presets in conf/topology/*.yaml) --------------


@dataclass
class LinkConfig:
    bandwidth: str = MISSING  # per direction, e.g. "256GB/s" or "200Gbps"
    latency: str = MISSING  # e.g. "1.5us"
    efficiency: float = 1.0  # achievable fraction of line rate, (0, 1]


@dataclass
class LevelConfig:
    name: str = MISSING
    size: int = MISSING
    fabric: FabricName = MISSING
    dims: Optional[List[int]] = None  # torus only
    link: LinkConfig = MISSING


@dataclass
class ChipConfig:
    reduce_bandwidth: str = MISSING  # bytes of reduced output per second
    launch_overhead: str = MISSING  # fixed cost per collective call


@dataclass
class ScaleOutConfig:
    fabric: FabricName = FabricName.fat_tree
    nics_per_node: int = MISSING
    nic: LinkConfig = MISSING
    oversubscription: float = 1.0  # leaf uplink oversubscription; 1 = non-blocking
    nics_per_leaf: int = 32
    spine_latency: str = "0us"  # extra latency across the spine (oversubscribed trees)


@dataclass
class TopologyConfig:
    name: str = MISSING
    description: str = ""
    chip: ChipConfig = MISSING
    levels: List[LevelConfig] = MISSING
    scale_out: ScaleOutConfig = MISSING


# --- run ------------------------------------------------------------------------


@dataclass
class ClusterConfig:
    nodes: int = 1  # scale-up domains (servers, or UltraServers) joined by the scale-out network
    chips: Optional[int] = None  # if set, overrides nodes: chips / chips per node (must divide)


@dataclass
class SizesConfig:
    """Message sizes, like nccl-tests -b/-e/-f: min, min*factor, ... up to max."""

    min: str = "1KiB"
    max: str = "1GiB"
    factor: int = 2


@dataclass
class CollectiveConfig:
    name: CollectiveName = CollectiveName.all_reduce


@dataclass
class AlgorithmConfig:
    name: AlgorithmName = AlgorithmName.auto
    channels: int = 2  # parallel rings
    bidirectional: bool = True  # odd channels run the ring backwards
    chunks: int = 4  # pipeline chunks (tree, hierarchical)
    chunk_size: Optional[str] = None  # if set, overrides chunks: ceil(size / chunk_size)
    in_flight: int = 4  # tree, hierarchical: chunks a chip keeps in the pipeline at once
    top: str = "auto"  # hierarchical: algorithm across nodes (ring | tree | auto: the faster per size)


@dataclass
class FidelityConfig:
    name: FidelityName = FidelityName.analytic


@dataclass
class ReportConfig:
    gib: bool = False  # print algbw/busbw in GiB/s (as nccom-test does) instead of GB/s
    results_file: str = "results.csv"


@dataclass
class SweepConfig:
    """Multirun bookkeeping (collsim/sweep.py); not part of a job's key."""

    name: str = "adhoc"  # sweep directory: multirun/<name>
    resume: bool = True  # skip jobs whose directory already holds complete results
    progress: Optional[bool] = None  # progress lines on rank 0; None = when stdout is a terminal


@dataclass
class CollsimConfig:
    topology: TopologyConfig = MISSING
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    collective: CollectiveConfig = field(default_factory=CollectiveConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    sizes: SizesConfig = field(default_factory=SizesConfig)
    dtype: DType = DType.float32
    report: ReportConfig = field(default_factory=ReportConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # Engine threads in this process for event and data fidelity, each simulating a block of whole
    # nodes like an MPI rank (collsim/distributed.py); results are identical for any value.
    threads: int = 1


def register_configs() -> None:
    """Register the schemas; conf/config.yaml extends ``collsim_schema``."""
    cs = ConfigStore.instance()
    cs.store(name="collsim_schema", node=CollsimConfig)
