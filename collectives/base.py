"""What every collective algorithm shares: names, parameters, bus factors, data splits.

Sizes follow nccl-tests (DESIGN.md section 2): ``S`` is the full per-chip buffer
for all-reduce, and n x the per-chip shard for reduce-scatter (input) and
all-gather (output).  Buffers are split by *elements*, never mid-element:
``split_counts(count, parts)`` gives the first ``count % parts`` parts one extra
element, and every algorithm (analytic or event) uses that same split so the
two fidelities agree to the picosecond.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from collsim.errors import ConfigError


class Collective(str, Enum):
    all_reduce = "all_reduce"
    reduce_scatter = "reduce_scatter"
    all_gather = "all_gather"


ALGORITHMS = ("ring", "tree", "hierarchical")
"""Concrete algorithms; ``auto`` picks the fastest of these per size."""


@dataclass(frozen=True)
class AlgorithmParams:
    """Knobs shared by the algorithms (config group ``algorithm``).

    channels      parallel rings (ring; hierarchical phases run as rings), each
                  carrying 1/channels of the buffer.
    bidirectional odd channels run their ring in the reverse direction.
    chunks        pipeline depth: the buffer (per channel / per tree) is cut into
                  this many chunks that flow one behind another (tree,
                  hierarchical).
    chunk_bytes   if > 0, overrides ``chunks``: chunks = ceil(bytes / chunk_bytes).
    in_flight     chunks a chip keeps in the pipeline at once (hierarchical: per
                  phase pipeline; tree: per tree), bounding memory and letting
                  the two trees share a port fairly.
    top           hierarchical: algorithm across the scale-out level: ring, tree,
                  or auto (the faster by the closed form, decided per size).
    """

    channels: int = 2
    bidirectional: bool = True
    chunks: int = 4
    chunk_bytes: int = 0
    in_flight: int = 4
    top: str = "auto"

    def validate(self) -> "AlgorithmParams":
        for name in ("channels", "chunks", "in_flight"):
            if getattr(self, name) < 1:
                raise ConfigError(f"algorithm.{name}", f"must be >= 1, got {getattr(self, name)}")
        if self.chunk_bytes < 0:
            raise ConfigError("algorithm.chunk_size", "must be >= 0 bytes (0 = use algorithm.chunks)")
        if self.top not in ("ring", "tree", "auto"):
            raise ConfigError("algorithm.top", f"must be ring, tree or auto, got {self.top!r}")
        return self

    def chunk_count(self, nbytes: int) -> int:
        """Number of pipeline chunks for a buffer of ``nbytes``."""
        if self.chunk_bytes > 0:
            return max(1, -(-nbytes // self.chunk_bytes))
        return self.chunks


def bus_factor(collective: Collective, n: int) -> float:
    """nccl-tests busbw = algbw x factor."""
    if n <= 1:
        return 0.0
    if collective is Collective.all_reduce:
        return 2.0 * (n - 1) / n
    return (n - 1) / n


def split_counts(count: int, parts: int) -> list[int]:
    """Split ``count`` elements into ``parts`` contiguous parts, larger ones first."""
    base, extra = divmod(count, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def effective_count(collective: Collective, count: int, n: int) -> int:
    """Elements actually moved: reduce-scatter / all-gather round down to n x shard (as nccl-tests)."""
    if collective is Collective.all_reduce:
        return count
    return (count // n) * n


def lower_bound_ps(cluster, collective: Collective, count: int, elem_bytes: int) -> int:
    """A time no all-reduce / reduce-scatter / all-gather algorithm can beat on ``cluster``.

    Without in-network reduction every chip must *receive* at least one value
    per element of its result that depends on other chips: S bytes for
    all-reduce, its block for reduce-scatter (>= S/n, the smallest block), all
    other blocks for all-gather (>= S - largest block).  It cannot receive
    faster than the sum of the rates of every link into it (each level's ports,
    plus a whole NIC), and the first byte needs at least the smallest link
    latency.  So T >= launch + min latency + bytes / ingress rate, rounded down.
    Property tests check every algorithm, analytic and event, against it.
    """
    n = cluster.chips
    launch = cluster.topology.chip.launch_overhead_ps
    count = effective_count(collective, count, n)
    if n == 1 or count == 0:
        return launch
    parts = split_counts(count, n)
    needed = {
        Collective.all_reduce: count,
        Collective.reduce_scatter: min(parts),
        Collective.all_gather: count - max(parts),
    }[collective] * elem_bytes
    ingress, latencies = 0, []
    for level in cluster.levels:
        if level.ports:
            ingress += (1 if level.fabric.value == "switch" else level.ports) * level.link.rate_Bps
            latencies.append(level.link.latency_ps)
    if cluster.nodes > 1:
        nic = cluster.topology.scale_out.nic
        ingress += nic.rate_Bps
        latencies.append(nic.latency_ps // 2)  # the NIC downlink's share (topologies.model)
    return launch + min(latencies) + needed * 10**12 // ingress
