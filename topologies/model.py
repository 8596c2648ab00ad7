"""The cluster model of DESIGN.md section 3: levels, fabrics, directed links, NICs.

A cluster is a hierarchy.  Level 0 groups chips; level i groups ``size_i`` units
of level i-1.  The units of the outermost scale-up level are *nodes* (servers,
or UltraServers): ``Cluster.nodes`` of them are joined by the scale-out network
(EFA), reached through NICs.

Chip numbering is mixed-radix, innermost fastest::

    chip = c_0 + size_0 * (c_1 + size_1 * (... + size_{L-1} * node))

A link of level i >= 1 joins chips at the *same position* inside two level-i
units, i.e. chips whose coordinates differ only in c_i.  So every chip owns
``ports`` directed out-links at each level and the link table is linear in the
number of chips.

Link identifiers are dense integers, grouped by kind (``Cluster.link_groups``):

* level i, fabric ring/torus: one port per (dimension, direction); a dimension
  of extent 2 has a single port (both directions reach the same neighbour),
  extent 1 has none.
* level i, fabric switch: port 0 = chip -> switch (uplink), port 1 = switch ->
  chip (downlink).  Non-blocking switch; a message crosses two links.
* level i, fabric direct: a dedicated link to each other unit (full mesh;
  with ``size == 2`` that is the Trn3 cross-rack pair).
* scale-out: NIC uplinks, NIC downlinks, and with ``oversubscription > 1``
  leaf-switch uplinks and downlinks (``ceil(nics_per_leaf / oversubscription)``
  per leaf, each at NIC rate; NIC j of a leaf uses trunk ``j mod trunks``).

Routing is deterministic with one path per (src, dst): scale-up levels are
corrected innermost first; on a torus dimension-order, shortest direction, ties
to the positive direction.  Chips of different nodes talk NIC to NIC directly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from collsim.units import effective_rate, serialization_ps


class Fabric(str, Enum):
    ring = "ring"
    torus = "torus"
    switch = "switch"
    direct = "direct"
    fat_tree = "fat_tree"


SCALE_UP_FABRICS = (Fabric.ring, Fabric.torus, Fabric.switch, Fabric.direct)


@dataclass(frozen=True)
class LinkSpec:
    """One directed link: line rate per direction, latency, achievable fraction."""

    bandwidth_Bps: int
    latency_ps: int
    efficiency: float = 1.0

    @cached_property
    def rate_Bps(self) -> int:
        """Serialization rate actually used: bandwidth x efficiency (bytes/s)."""
        return effective_rate(self.bandwidth_Bps, self.efficiency)

    def serialization_ps(self, nbytes: int) -> int:
        return serialization_ps(nbytes, self.rate_Bps)

    def transfer_ps(self, nbytes: int) -> int:
        """Uncontended one-hop alpha-beta time: latency + serialization."""
        return self.latency_ps + self.serialization_ps(nbytes)


@dataclass(frozen=True)
class ChipSpec:
    """Per-chip compute that collectives need: reduction rate and call overhead."""

    reduce_Bps: int
    launch_overhead_ps: int

    def reduce_ps(self, nbytes: int) -> int:
        return serialization_ps(nbytes, self.reduce_Bps)


@dataclass(frozen=True)
class Level:
    """A scale-up level: ``size`` units of the level below, joined by ``fabric``."""

    name: str
    size: int
    fabric: Fabric
    link: LinkSpec
    dims: tuple[int, ...] = ()

    @property
    def torus_dims(self) -> tuple[int, ...]:
        """Dimensions for ring/torus fabrics (a ring is a 1-D torus)."""
        return (self.size,) if self.fabric is Fabric.ring else self.dims

    @cached_property
    def ports(self) -> int:
        """Directed out-links per chip at this level."""
        if self.size == 1:
            return 0
        if self.fabric in (Fabric.ring, Fabric.torus):
            return sum(_dim_ports(k) for k in self.torus_dims)
        if self.fabric is Fabric.switch:
            return 2
        return self.size - 1  # direct

    def hop_count(self, a: int, b: int) -> int:
        """Links crossed between units a and b of this level."""
        if a == b:
            return 0
        if self.fabric in (Fabric.ring, Fabric.torus):
            return sum(abs(_torus_step(x, y, k)) for x, y, k in zip(_unflatten(a, self.torus_dims), _unflatten(b, self.torus_dims), self.torus_dims))
        return 2 if self.fabric is Fabric.switch else 1


@dataclass(frozen=True)
class ScaleOut:
    """The scale-out network (EFA): NICs per node and a fat tree behind them."""

    nics_per_node: int
    nic: LinkSpec
    oversubscription: float = 1.0
    nics_per_leaf: int = 32
    spine_latency_ps: int = 0

    @property
    def blocking(self) -> bool:
        return self.oversubscription > 1.0

    @cached_property
    def trunks_per_leaf(self) -> int:
        """Leaf-to-spine links per leaf (each at NIC rate)."""
        return max(1, math.ceil(self.nics_per_leaf / self.oversubscription))


@dataclass(frozen=True)
class Topology:
    """A node design (scale-up levels) plus how nodes reach the scale-out network."""

    name: str
    chip: ChipSpec
    levels: tuple[Level, ...]
    scale_out: ScaleOut
    description: str = ""

    @cached_property
    def chips_per_node(self) -> int:
        return math.prod(level.size for level in self.levels)

    @cached_property
    def chips_per_nic(self) -> int:
        return self.chips_per_node // self.scale_out.nics_per_node


@dataclass(frozen=True)
class LinkGroup:
    """A contiguous block of link ids of one kind, sharing one LinkSpec."""

    name: str
    first: int
    count: int
    spec: LinkSpec = field(compare=False)


@dataclass(frozen=True)
class Cluster:
    """``nodes`` copies of ``topology``'s node joined by its scale-out network."""

    topology: Topology
    nodes: int

    @property
    def chips(self) -> int:
        return self.nodes * self.topology.chips_per_node

    @property
    def levels(self) -> tuple[Level, ...]:
        return self.topology.levels

    @property
    def nics(self) -> int:
        return self.nodes * self.topology.scale_out.nics_per_node

    @cached_property
    def leaves(self) -> int:
        return -(-self.nics // self.topology.scale_out.nics_per_leaf)

    # --- coordinates -------------------------------------------------------

    def coords(self, chip: int) -> tuple[int, ...]:
        """(c_0, ..., c_{L-1}, node) of a chip."""
        out = []
        for level in self.levels:
            chip, c = divmod(chip, level.size)
            out.append(c)
        out.append(chip)
        return tuple(out)

    def chip_at(self, coords) -> int:
        chip = coords[-1]
        for level, c in zip(reversed(self.levels), reversed(coords[:-1])):
            chip = chip * level.size + c
        return chip

    def node_of(self, chip: int) -> int:
        return chip // self.topology.chips_per_node

    def nic_of(self, chip: int) -> int:
        """Global index of the NIC a chip sends and receives through."""
        per_node = self.topology.chips_per_node
        return (chip // per_node) * self.topology.scale_out.nics_per_node + (chip % per_node) // self.topology.chips_per_nic

    # --- link table --------------------------------------------------------

    @cached_property
    def link_groups(self) -> tuple[LinkGroup, ...]:
        groups, first = [], 0
        for level in self.levels:
            count = self.chips * level.ports
            groups.append(LinkGroup(level.name, first, count, level.link))
            first += count
        so = self.topology.scale_out
        half_lat = so.nic.latency_ps // 2
        up = LinkSpec(so.nic.bandwidth_Bps, so.nic.latency_ps - half_lat, so.nic.efficiency)
        down = LinkSpec(so.nic.bandwidth_Bps, half_lat, so.nic.efficiency)
        if self.nodes > 1:
            groups.append(LinkGroup("nic_up", first, self.nics, up))
            first += self.nics
            groups.append(LinkGroup("nic_down", first, self.nics, down))
            first += self.nics
            if so.blocking and self.leaves > 1:
                trunks = self.leaves * so.trunks_per_leaf
                spine_half = so.spine_latency_ps // 2
                groups.append(LinkGroup("leaf_up", first, trunks, LinkSpec(so.nic.bandwidth_Bps, so.spine_latency_ps - spine_half, so.nic.efficiency)))
                first += trunks
                groups.append(LinkGroup("leaf_down", first, trunks, LinkSpec(so.nic.bandwidth_Bps, spine_half, so.nic.efficiency)))
                first += trunks
        return tuple(groups)

    @property
    def num_links(self) -> int:
        last = self.link_groups[-1] if self.link_groups else None
        return last.first + last.count if last else 0

    def group_named(self, name: str) -> LinkGroup:
        for group in self.link_groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def link_spec(self, link: int) -> LinkSpec:
        for group in self.link_groups:
            if group.first <= link < group.first + group.count:
                return group.spec
        raise IndexError(f"link {link} out of range [0, {self.num_links})")

    # --- routing (reference implementation; the engine uses the Cython port) --

    def route(self, src: int, dst: int) -> list[int]:
        """Directed link ids from ``src`` to ``dst`` (empty when src == dst)."""
        if src == dst:
            return []
        if self.node_of(src) != self.node_of(dst):
            return self._route_scale_out(src, dst)
        path: list[int] = []
        here = list(self.coords(src))
        there = self.coords(dst)
        for i, level in enumerate(self.levels):
            if here[i] != there[i]:
                path.extend(self._route_level(i, level, here, there[i]))
        return path

    def _level_link(self, i: int, chip: int, port: int) -> int:
        group = self.link_groups[i]
        return group.first + chip * self.levels[i].ports + port

    def _route_level(self, i: int, level: Level, here: list[int], target: int) -> list[int]:
        """Links at level i moving ``here`` (mutated) to c_i == target."""
        path = []
        if level.fabric is Fabric.switch:
            path.append(self._level_link(i, self.chip_at(here), 0))
            here[i] = target
            path.append(self._level_link(i, self.chip_at(here), 1))
            return path
        if level.fabric is Fabric.direct:
            port = target if target < here[i] else target - 1
            path.append(self._level_link(i, self.chip_at(here), port))
            here[i] = target
            return path
        dims = level.torus_dims
        for d, k in enumerate(dims):
            cur = _unflatten(here[i], dims)
            goal = _unflatten(target, dims)
            step = _torus_step(cur[d], goal[d], k)
            port = _port_index(dims, d, step > 0)
            for _ in range(abs(step)):
                path.append(self._level_link(i, self.chip_at(here), port))
                cur = list(_unflatten(here[i], dims))
                cur[d] = (cur[d] + (1 if step > 0 else -1)) % k
                here[i] = _flatten(cur, dims)
        return path

    def _route_scale_out(self, src: int, dst: int) -> list[int]:
        so = self.topology.scale_out
        a, b = self.nic_of(src), self.nic_of(dst)
        path = [self.group_named("nic_up").first + a]
        leaf_a, leaf_b = a // so.nics_per_leaf, b // so.nics_per_leaf
        if so.blocking and self.leaves > 1 and leaf_a != leaf_b:
            path.append(self.group_named("leaf_up").first + leaf_a * so.trunks_per_leaf + (a % so.nics_per_leaf) % so.trunks_per_leaf)
            path.append(self.group_named("leaf_down").first + leaf_b * so.trunks_per_leaf + (b % so.nics_per_leaf) % so.trunks_per_leaf)
        path.append(self.group_named("nic_down").first + b)
        return path


def _dim_ports(k: int) -> int:
    return 0 if k == 1 else (1 if k == 2 else 2)


def _port_index(dims: tuple[int, ...], d: int, positive: bool) -> int:
    base = sum(_dim_ports(k) for k in dims[:d])
    return base if (positive or dims[d] == 2) else base + 1


def _torus_step(x: int, y: int, k: int) -> int:
    """Signed shortest move from x to y on a ring of k; ties go positive."""
    forward = (y - x) % k
    return forward if forward <= k - forward else forward - k


def _unflatten(index: int, dims: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for k in dims:
        index, c = divmod(index, k)
        out.append(c)
    return tuple(out)


def _flatten(coords, dims: tuple[int, ...]) -> int:
    index = 0
    for c, k in zip(reversed(coords), reversed(dims)):
        index = index * k + c
    return index
