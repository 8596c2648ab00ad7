"""Build a validated :class:`Topology` from a config mapping (a preset or a user YAML).

Every check names the dotted field at fault (``topology.levels[1].dims``) and
what is allowed, by raising :class:`collsim.errors.ConfigError`.  The command
turns that into a one-line error with exit code 2.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from collsim.errors import ConfigError
from collsim.units import parse_bandwidth, parse_time
from topologies.model import SCALE_UP_FABRICS, ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology

_FABRIC_NAMES = ", ".join(f.value for f in SCALE_UP_FABRICS)


def load_topology(cfg: Mapping, where: str = "topology") -> Topology:
    """Convert the ``topology`` config node into a :class:`Topology`."""
    name = _require(cfg, "name", where)
    levels_cfg = _require(cfg, "levels", where)
    if not levels_cfg:
        raise ConfigError(f"{where}.levels", "needs at least one scale-up level")
    levels = tuple(_load_level(lvl, f"{where}.levels[{i}]") for i, lvl in enumerate(levels_cfg))
    seen = set()
    for i, level in enumerate(levels):
        if level.name in seen:
            raise ConfigError(f"{where}.levels[{i}].name", f"duplicate level name {level.name!r}")
        seen.add(level.name)
    chip = _load_chip(_require(cfg, "chip", where), f"{where}.chip")
    chips_per_node = math.prod(level.size for level in levels)
    scale_out = _load_scale_out(_require(cfg, "scale_out", where), f"{where}.scale_out", chips_per_node)
    return Topology(
        name=str(name),
        chip=chip,
        levels=levels,
        scale_out=scale_out,
        description=str(cfg.get("description", "") or ""),
    )


def make_cluster(topology: Topology, nodes) -> Cluster:
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError("cluster.nodes", f"must be an integer >= 1, got {nodes!r}")
    return Cluster(topology, nodes)


def load_link(cfg: Mapping, where: str) -> LinkSpec:
    bandwidth = parse_bandwidth(_require(cfg, "bandwidth", where), f"{where}.bandwidth")
    latency = parse_time(_require(cfg, "latency", where), f"{where}.latency")
    efficiency = cfg.get("efficiency", 1.0)
    if isinstance(efficiency, bool) or not isinstance(efficiency, (int, float)) or not 0.0 < efficiency <= 1.0:
        raise ConfigError(f"{where}.efficiency", f"must be a number in (0, 1], got {efficiency!r}")
    return LinkSpec(bandwidth_Bps=bandwidth, latency_ps=latency, efficiency=float(efficiency))


def _load_level(cfg: Mapping, where: str) -> Level:
    name = str(_require(cfg, "name", where))
    size = _positive_int(_require(cfg, "size", where), f"{where}.size")
    fabric = _fabric(_require(cfg, "fabric", where), f"{where}.fabric")
    dims = tuple(cfg.get("dims") or ())
    if fabric is Fabric.torus:
        if not dims:
            raise ConfigError(f"{where}.dims", "a torus needs dims, e.g. [4, 4]")
        for d in dims:
            _positive_int(d, f"{where}.dims")
        if math.prod(dims) != size:
            raise ConfigError(f"{where}.dims", f"product of dims {list(dims)} is {math.prod(dims)}, but size is {size}")
    elif dims:
        raise ConfigError(f"{where}.dims", f"only a torus takes dims (fabric is {fabric.value})")
    link = load_link(_require(cfg, "link", where), f"{where}.link")
    return Level(name=name, size=size, fabric=fabric, link=link, dims=tuple(int(d) for d in dims))


def _load_chip(cfg: Mapping, where: str) -> ChipSpec:
    reduce_bw = parse_bandwidth(_require(cfg, "reduce_bandwidth", where), f"{where}.reduce_bandwidth")
    overhead = parse_time(_require(cfg, "launch_overhead", where), f"{where}.launch_overhead")
    return ChipSpec(reduce_Bps=reduce_bw, launch_overhead_ps=overhead)


def _load_scale_out(cfg: Mapping, where: str, chips_per_node: int) -> ScaleOut:
    fabric = str(cfg.get("fabric", "fat_tree"))
    if fabric != Fabric.fat_tree.value:
        raise ConfigError(f"{where}.fabric", f"the scale-out network must be fat_tree, got {fabric!r}")
    nics = _positive_int(_require(cfg, "nics_per_node", where), f"{where}.nics_per_node")
    if chips_per_node % nics != 0:
        raise ConfigError(
            f"{where}.nics_per_node",
            f"{nics} NICs cannot be shared evenly by the {chips_per_node} chips of a node (must divide it)",
        )
    nic = load_link(_require(cfg, "nic", where), f"{where}.nic")
    oversub = cfg.get("oversubscription", 1.0)
    if isinstance(oversub, bool) or not isinstance(oversub, (int, float)) or oversub < 1.0:
        raise ConfigError(f"{where}.oversubscription", f"must be a number >= 1 (1 = non-blocking), got {oversub!r}")
    per_leaf = _positive_int(cfg.get("nics_per_leaf", 32), f"{where}.nics_per_leaf")
    spine = parse_time(cfg.get("spine_latency", "0us"), f"{where}.spine_latency")
    return ScaleOut(
        nics_per_node=nics, nic=nic, oversubscription=float(oversub), nics_per_leaf=per_leaf, spine_latency_ps=spine
    )


def _require(cfg: Mapping, key: str, where: str):
    if not isinstance(cfg, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(cfg).__name__}")
    value = cfg.get(key)
    if value is None:
        raise ConfigError(f"{where}.{key}", "is required")
    return value


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(where, f"must be an integer >= 1, got {value!r}")
    return value


def _fabric(value, where: str) -> Fabric:
    text = value.value if isinstance(value, Fabric) else str(value)
    try:
        fabric = Fabric(text)
    except ValueError:
        raise ConfigError(where, f"unknown fabric {text!r}; allowed: {_FABRIC_NAMES}") from None
    if fabric not in SCALE_UP_FABRICS:
        raise ConfigError(where, f"{text!r} is the scale-out fabric; scale-up levels allow: {_FABRIC_NAMES}")
    return fabric
