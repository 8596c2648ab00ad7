"""Ring all-reduce, reduce-scatter and all-gather (DESIGN.md section 5).

Algorithm
---------
The n chips form a ring that follows physical neighbours (``ring_order``).
The buffer of ``count`` elements is cut into n blocks (``split_counts(count,
n)``), and every block into one *piece* per channel (``split_counts(|block|,
C)``).  Channel c is a ring of its own: forward, or backward when
``bidirectional`` and c is odd.  In channel c, position p sends at step g the
piece of block ``order[p - dir_c (g + 1)]`` (all-gather: ``g`` instead of
``g + 1``) to its neighbour:

* reduce-scatter: n-1 steps of OP_REDUCE.  A received piece is reduced by the
  chip's reduction unit (``engine.reduce``), then forwarded; position p ends
  with block ``order[p]`` fully reduced, so chip r holds block r.
* all-gather: n-1 steps of OP_COPY; chip r starts with block r.
* all-reduce: the reduce-scatter, then the all-gather of the reduced blocks,
  one chain of 2(n-1) sends per piece.

Sends are self-timed: a chip forwards a piece as soon as it has arrived (and
been reduced), with no step barrier, so steps pipeline by themselves.  A
channel's sends leave a chip in step order.  A chip's reduction unit serves
arrivals in order of arrival time, ties by channel (see _ring.pyx).  Only
min(C, largest block) channels carry data; empty pieces are never sent.

Ring order
----------
A reflected (boustrophedon) mixed-radix Gray code over the chip coordinates,
c_0 fastest and the node slowest; the digit of a ring or torus level is the
position along the snake of that level's dims (dim 0 fastest).  Consecutive
chips differ in one coordinate by one step, so every hop is one link of one
level (a switch level: up + down), and consecutive nodes are joined by chips
at the same local position, each through its own NIC.  The closing hop (last
chip to first) is one link when the radices allow it (a ring fabric, a torus
whose last dim is even such as 4x4, an even number of units above); otherwise
it is routed like any message.

Cost model (fidelity ``analytic``)
----------------------------------
Notation: n chips; b_c = split_counts(ceil(count/n), C)[c] elements, the
largest piece of channel c; s_c = ceil(b_c * elem_bytes * 1e12 / B) and
r_c = ceil(b_c * elem_bytes * 1e12 / R) ps (``serialization_ps``, the
engine's exact rounding); R = chip.reduce_Bps; launch = chip launch
overhead.  The ring's *bottleneck hop*: alpha = the largest path latency (sum
of link latencies) and B = the smallest path rate over all its hops (along
each level, between nodes through NICs and leaf trunks, and the closing hop).

Single channel (C = 1), x = alpha + s_0, r = r_0:

    all_reduce      T = launch + 2(n-1) (alpha + s) + (n-1) r
    reduce_scatter  T = launch + (n-1) (alpha + s + r)
    all_gather      T = launch + (n-1) (alpha + s)

i.e. DESIGN.md's 2(n-1)(alpha + S/(nB)) + (n-1)/n S/R with S/n the largest
block.

Several channels share a chip's links and its reduction unit, so their cost
is not a sum of terms.  The model is the *symmetric ring*: every hop is the
bottleneck hop, every piece of channel c has b_c elements, and every chip
does the same thing at the same time, so one chip stands for all (the step-g
piece it receives left its neighbour when it sent its own step g).  Per chip:
one FIFO out-link per direction, or one for both when the two directions
share a link (a switch uplink, n = 2, one NIC for a node's entry and exit
chip, a closing hop routed over a backward hop's link); one FIFO reduction
unit.  Channel c is a chain u -> a -> u -> ... (u = send, a = arrival):

    u(0)   = 0
    A(g)   = max(u(g), end of the previous send on the same link)      link start
    a(g)   = A(g) + s_c + alpha
    u(g+1) = max(a(g), reduction unit free) + r_c   after a reduce step
           = a(g)                                   after a copy step
    T      = launch + max over channels of the last a (or reduction end)

with sends served in time order and reductions in arrival order, ties by
channel, as in the engine.  ``_ring.symmetric_ring_ps`` evaluates it exactly:
once consecutive periods repeat (same comparisons, same increments) the state
is affine in the number of periods, so it jumps ahead and verifies the jump
(a few periods per phase plus O(log n) checks: at most tens of ms at a
million chips).
Closed forms: two bidirectional channels on disjoint links (ring fabric with
n >= 3, torus) with equal pieces (b_0 = b_1; x = alpha + s, r as above):

    reduce_scatter  T = launch + x + 2r + (n-2) (r + max(x, r))
    all_reduce      T = reduce_scatter + (n-1) x
    all_gather      T = launch + (n-1) x

(channel 1 waits once for channel 0's reduction, then both pipeline).  Two
channels on one link (one switch, or C = 2 one-directional), when
alpha >= s >= r:

    reduce_scatter  T = launch + (n-1) (x + r) + s
    all_reduce      T = launch + 2(n-1) x + (n-1) r + s
    all_gather      T = launch + (n-1) x + s

When analytic == event, to the picosecond
-----------------------------------------
On homogeneous rings, whose hops all have the bottleneck's path: one ring
fabric (any n), one switch (any n), one direct level, a torus whose snake
closes (4x4, 2x2, 2x4, ...), or equal links on every level:

* C = 1, any count (a chain of smaller blocks never waits on a larger one);
* any C, bidirectional or not, when all blocks are equal (count % n == 0),
  which reduce-scatter and all-gather always satisfy (n x shard).

Otherwise they differ:

* uneven blocks with C >= 2: the reduction units and shared links serve
  unequal pieces in arrival order; event is within a few percent of analytic
  either way (more when reduction is slower than the links);
* heterogeneous rings (several levels, nodes joined by EFA): event <
  analytic, usually far below, since the model puts the bottleneck's latency
  and rate on every hop.  For C = 1 this is a theorem (every link and
  reduction unit serves a fixed sequence of messages, so times only grow with
  hop costs).  A multi-node ring crosses a NIC on 1 hop in chips_per_node,
  not on every hop;
* links the model does not see as shared: event > analytic.  The spine trunk
  of an oversubscribed fat tree can carry a forward and a backward hop that
  leave a leaf from different NICs (tests/test_ring.py pins one case).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectives._ring import KIND_CODES, RingSchedule, symmetric_ring_time_ps
from collectives.base import AlgorithmParams, Collective, effective_count, split_counts
from collsim.units import serialization_ps
from topologies.model import Cluster, Fabric

__all__ = ["RingPath", "analytic_time_ps", "make_schedule", "ring_order", "ring_path"]


# --- ring order ----------------------------------------------------------------


def _reflected_gray(t: np.ndarray, digits) -> np.ndarray:
    """Mixed-radix reflected Gray code of the indices ``t``.

    ``digits`` lists (radix, table, stride), fastest first.  Digit i of t is
    read forward when the number formed by the higher digits is even and
    backward when it is odd (boustrophedon), so consecutive t change exactly
    one digit by one.  Result: sum of table_i[gray digit i] * stride_i.
    """
    out = np.zeros(t.shape, dtype=np.int64)
    below = 1
    for radix, table, stride in digits:
        if radix == 1:
            continue
        digit = (t // below) % radix
        higher = t // (below * radix)
        gray = np.where(higher % 2 == 1, radix - 1 - digit, digit)
        out += table[gray] * stride
        below *= radix
    return out


def _snake(dims: tuple[int, ...]) -> np.ndarray:
    """Snake index -> level-local coordinate of a torus with ``dims`` (dim 0 fastest)."""
    digits, stride = [], 1
    for k in dims:
        digits.append((k, np.arange(k, dtype=np.int64), stride))
        stride *= k
    return _reflected_gray(np.arange(stride, dtype=np.int64), digits)


def _digits(cluster: Cluster):
    """Gray digits of the ring order: one per scale-up level (inner first), then the node."""
    digits, stride = [], 1
    for level in cluster.levels:
        if level.fabric in (Fabric.ring, Fabric.torus):
            table = _snake(level.torus_dims)
        else:
            table = np.arange(level.size, dtype=np.int64)
        digits.append((level.size, table, stride))
        stride *= level.size
    digits.append((cluster.nodes, np.arange(cluster.nodes, dtype=np.int64), stride))
    return digits


def _ring_chips(cluster: Cluster, positions) -> np.ndarray:
    """Chips at the given ring positions (vectorised, O(len(positions)))."""
    return _reflected_gray(np.asarray(positions, dtype=np.int64), _digits(cluster))


def ring_order(cluster: Cluster) -> np.ndarray:
    """The ring: chip at each position 0..n-1 (int64 permutation), O(n) numpy."""
    return _ring_chips(cluster, np.arange(cluster.chips, dtype=np.int64))


def _ring_position(cluster: Cluster, chip: int) -> int:
    """Inverse of the ring order for one chip, O(levels): undo the reflections from the top digit down."""
    digits = _digits(cluster)
    coords = cluster.coords(chip)
    gray = []
    for (radix, table, _), c in zip(digits, coords):
        inverse = np.empty(radix, dtype=np.int64)
        inverse[table] = np.arange(radix, dtype=np.int64)
        gray.append(int(inverse[c]))
    position = 0
    for (radix, _, _), g in zip(reversed(digits), reversed(gray)):
        position = position * radix + (radix - 1 - g if position % 2 == 1 else g)
    return position


# --- the bottleneck hop -----------------------------------------------------------


@dataclass(frozen=True)
class RingPath:
    """What the analytic model needs of the ring's hops.

    alpha_ps  largest path latency of any hop (sum of its link latencies)
    rate_Bps  smallest rate on any hop's path
    shared    a chip's forward and backward hops share a link (switch uplink,
              n = 2, one NIC for a node's entry and exit chip, or a closing
              hop routed over a backward hop's link)
    """

    alpha_ps: int
    rate_Bps: int
    shared: bool


def _nic_of(cluster: Cluster, chips: np.ndarray) -> np.ndarray:
    """Vectorised Cluster.nic_of."""
    topo = cluster.topology
    per_node = topo.chips_per_node
    return (chips // per_node) * topo.scale_out.nics_per_node + (chips % per_node) // topo.chips_per_nic


def ring_path(cluster: Cluster) -> RingPath:
    """Bottleneck latency and rate of the ring's hops, from the structure of ring_order (no O(n) scan)."""
    n = cluster.chips
    hops: list[tuple[int, int]] = []  # (latency_ps, rate_Bps) of every kind of hop
    for level in cluster.levels:
        if level.size > 1:
            links = 2 if level.fabric is Fabric.switch else 1
            hops.append((links * level.link.latency_ps, level.link.rate_Bps))
    shared = n == 2 or any(level.fabric is Fabric.switch and level.size > 1 for level in cluster.levels)
    if cluster.nodes > 1:
        so = cluster.topology.scale_out
        per_node = cluster.topology.chips_per_node
        crosses = False
        if so.blocking and cluster.leaves > 1:   # does a hop between consecutive nodes cross the spine?
            boundary = np.arange(1, cluster.nodes, dtype=np.int64) * per_node
            nic_out = _nic_of(cluster, _ring_chips(cluster, boundary - 1))
            nic_in = _nic_of(cluster, _ring_chips(cluster, boundary))
            crosses = bool(np.any(nic_out // so.nics_per_leaf != nic_in // so.nics_per_leaf))
        hops.append((so.nic.latency_ps + (so.spine_latency_ps if crosses else 0), so.nic.rate_Bps))
        first, last = _ring_chips(cluster, [0, per_node - 1])
        shared = shared or bool(_nic_of(cluster, np.array([first]))[0] == _nic_of(cluster, np.array([last]))[0])
    if n > 1:
        last, first = (int(c) for c in _ring_chips(cluster, [n - 1, 0]))
        closing = cluster.route(last, first)
        specs = [cluster.link_spec(link) for link in closing]
        hops.append((sum(spec.latency_ps for spec in specs), min(spec.rate_Bps for spec in specs)))
        shared = shared or _closing_hop_shared(cluster, closing)
    if not hops:
        return RingPath(0, 1, False)
    return RingPath(max(lat for lat, _ in hops), min(rate for _, rate in hops), shared)


def _closing_hop_shared(cluster: Cluster, closing: list[int]) -> bool:
    """Does a backward hop use a link of the closing hop (routed over several links when the radices are odd)?"""
    if len(closing) < 2:
        return False
    n = cluster.chips
    links = set(closing)
    for group, level in zip(cluster.link_groups, cluster.levels):
        for link in closing:
            if group.first <= link < group.first + group.count:
                chip = (link - group.first) // level.ports
                back = int(_ring_chips(cluster, [(_ring_position(cluster, chip) - 1) % n])[0])
                if links.intersection(cluster.route(chip, back)):
                    return True
    return False


# --- the algorithm contract ---------------------------------------------------------


def _steps(collective: Collective, n: int) -> tuple[int, int]:
    """(sends per piece chain, how many of them are reduce steps)."""
    if collective is Collective.all_reduce:
        return 2 * (n - 1), n - 1
    if collective is Collective.reduce_scatter:
        return n - 1, n - 1
    return n - 1, 0


def analytic_time_ps(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                     params: AlgorithmParams) -> int:
    """Ring time (ps) of the cost model in the module docstring, including the launch overhead."""
    collective = Collective(collective)
    params.validate()
    n = cluster.chips
    launch_ps = cluster.topology.chip.launch_overhead_ps
    count = effective_count(collective, count, n)
    if n == 1 or count == 0:
        return launch_ps
    pieces = [b for b in split_counts(-(-count // n), params.channels) if b > 0]
    path = ring_path(cluster)
    chip = cluster.topology.chip
    s_ps = [serialization_ps(b * elem_bytes, path.rate_Bps) for b in pieces]
    r_ps = [chip.reduce_ps(b * elem_bytes) for b in pieces]
    backward = [params.bidirectional and c % 2 == 1 for c in range(len(pieces))]
    link_group = [0 if path.shared else int(back) for back in backward]
    steps, reduce_steps = _steps(collective, n)
    return launch_ps + symmetric_ring_time_ps(steps, reduce_steps, path.alpha_ps, s_ps, r_ps, link_group)


def make_schedule(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                  params: AlgorithmParams) -> RingSchedule:
    """The self-timed event schedule (collectives/_ring.pyx) of this ring collective."""
    collective = Collective(collective)
    params.validate()
    count = effective_count(collective, count, cluster.chips)
    return RingSchedule(ring_order(cluster), count, params.channels, params.bidirectional,
                        KIND_CODES[collective.value])
