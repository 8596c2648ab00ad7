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
largest piece of channel c; serialization and reduction times are exact
picoseconds (``serialization_ps``, the engine's rounding): s = ceil(bytes *
1e12 / rate), r_c = ceil(b_c * elem_bytes * 1e12 / R), R = chip.reduce_Bps;
launch = chip launch overhead.  A collective makes G sends per piece chain
(G = 2(n-1) all-reduce, n-1 reduce-scatter and all-gather), the first Q of
them reduced on arrival (Q = n-1, n-1, 0).

The ring's hops fall in a few *hop classes* (``ring_lap``): one per level of
size > 1 (one link; a switch: up + down), the NIC hop between consecutive
nodes (nodes - 1 of them), and the closing hop.  A class k has a path
latency alpha_k (sum of its links') and rate B_k (its slowest link).  The
ring is *homogeneous* when every class has the same (alpha, B), and
*heterogeneous* otherwise (several levels, nodes joined by EFA).

Homogeneous rings: the symmetric ring
.....................................
alpha, B = the common hop; s_c = serialization of b_c at B.  Single channel
(C = 1), x = alpha + s_0, r = r_0:

    all_reduce      T = launch + 2(n-1) (alpha + s) + (n-1) r
    reduce_scatter  T = launch + (n-1) (alpha + s + r)
    all_gather      T = launch + (n-1) (alpha + s)

i.e. DESIGN.md's 2(n-1)(alpha + S/(nB)) + (n-1)/n S/R with S/n the largest
block.

Several channels share a chip's links and its reduction unit, so their cost
is not a sum of terms.  The model is the *symmetric ring*: every piece of
channel c has b_c elements, and every chip does the same thing at the same
time, so one chip stands for all (the step-g piece it receives left its
neighbour when it sent its own step g).  Per chip: one FIFO out-link per
direction, or one for both when the two directions share a link (a switch
uplink, n = 2, one NIC for a node's entry and exit chip, a closing hop routed
over a backward hop's link); one FIFO reduction unit.  Channel c is a chain
u -> a -> u -> ... (u = send, a = arrival):

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

Heterogeneous rings: the longest path
.....................................
The self-timed ring is a max-plus linear system: a send starts at the max of
(its piece's arrival, + r on a reduce step) and (the end of the previous
send on the same link).  Its makespan is the heaviest path through G stages
of one channel's chain, where each stage is either

* a *hop* to the next ring position: h_k = alpha_k + s_k (+ r if the stage
  is a reduce stage, stage < Q), or
* a *stay* on the current hop's busiest link, which is still sending the
  previous step: sigma_k per stage, the link's per-step load (one piece of
  every channel that uses it: the channels of this direction, and on a link
  that also carries the other direction -- a switch uplink of the innermost
  level, a NIC that a node's entry and exit chips share, links of a routed
  closing hop -- every channel, at that link's rate).

Stays pay off only on the hop q of largest load in the path's window, so a
path is a window W of m consecutive hops plus G - m stays on q; the hop that
ends the stays weighs tau_q + sigma_q (tau_q: the latency from the busiest
link on; the last step's link time covers every piece on it).  The analytic
is the heaviest of these families (per channel c, then the max over
channels; L = sum over the lap of h_k):

    (a) G hops:     all_reduce      2L - (two cheapest adjacent hops) + (n-1) r
                    reduce_scatter   L - (cheapest hop) + (n-1) r
                    all_gather       L - (cheapest hop)
    (b) for each sigma in {sigma_k}:  G sigma + the best circular window of
        <= n-1 hops holding a hop q with sigma_q >= sigma, of
            sum before q (h + r_b - sigma) + (tau_q + sigma_q + r_a - sigma)
              + sum after q (h + r_a - sigma)
        with r_b = r for reduce-scatter and all-reduce (those hops fall in
        reduce stages), r_a = r for reduce-scatter only;
    (b') all-reduce, the stays after a full lap of reducing hops:
            G sigma + (L - n sigma) + (n-1) r + the best of: q = the lap's last
            hop e, then <= n-2 hops of (h - sigma); or a window of <= n-2 hops
            after the lap holding q (weights h - sigma, q as in (b));
    (c) the reduction unit, serving every channel's Q reductions back to back:
            Q * sum_c r_c + the best run of G - Q + 1 hops.

    T = launch + max over channels and families.

For long rings this is the max-plus period: T ~ G * max(max_k sigma_k,
(L + Q r)/n) plus a transient.  E.g. trn2, 16 nodes, 2 channels: at 1 MiB
the lap mean (2.37 us per hop: 15 NeuronLink hops of 1.5 us, one EFA hop of
15 us) dominates; at 256 MiB the EFA link's 21.65 us per step does.  The
windows are maxima over the lap's hop sequence, which ``ring_lap.fold``
evaluates over the hop classes in O(levels + log nodes) segment
concatenations (``collectives/ring_lap.py``): a few ms at a million chips.

When analytic == event, to the picosecond
-----------------------------------------
On homogeneous rings: one ring fabric (any n), one switch (any n), one direct
level, a torus whose snake closes (4x4, 2x2, 2x4, ...), or equal links on
every level:

* C = 1, any count (a chain of smaller blocks never waits on a larger one);
* any C, bidirectional or not, when all blocks are equal (count % n == 0),
  which reduce-scatter and all-gather always satisfy (n x shard).

On heterogeneous rings: C = 1 with equal blocks (every link then serves one
message per step in step order, the reduction unit one per step, so the
engine *is* the max-plus system; tests/test_ring.py checks it on random
clusters).

Otherwise they differ:

* uneven blocks: the analytic prices every block as the largest.  C = 1:
  event <= analytic (times only grow with hop costs), by < 0.01% on the
  presets.  C >= 2: the reduction units and shared links serve unequal
  pieces in arrival order; event within a few percent of analytic either
  way (more when reduction is slower than the links);
* heterogeneous rings with C >= 2: the families see each channel's own chain
  and the per-step loads the channels put on shared links and on the
  reduction unit, but not the waits two channels' pieces cause each other
  when they reach one reduction unit or one shared link at nearly the same
  time (the symmetric model tracks those on homogeneous rings), so event is
  above analytic (on small random clusters at most 0.02% below it).
  Measured (64 KiB .. 256 MiB, all three collectives, 1, 2 or 4 channels;
  benchmarks/ring_analytic.py): within 0.5% on the multi-node presets
  (trn1, trn1n, trn2, trn2-ultraserver, trn3-ultraserver, dgx-h100),
  but up to 4% (trn2-ultraserver) and 9% (trn3-ultraserver) on a single
  UltraServer with 2 bidirectional channels at 16-64 MiB, where no EFA hop
  dominates and the channels meet on every level.  A NIC shared by a node's
  entry and exit chips carries both directions on its down link too; with 3
  or more nodes the two flows reach it from different nodes and collide:
  up to one NIC serialization more (4% at 3 nodes of 4 chips, 1 MiB blocks);
* links the model does not see as shared: event > analytic.  The spine trunk
  of an oversubscribed fat tree can carry a forward and a backward hop that
  leave a leaf from different NICs (tests/test_ring.py pins one case); every
  NIC hop is priced with the spine's latency when one of them crosses it.  A
  closing hop routed over several links can also load links of other hops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectives._ring import KIND_CODES, RingSchedule, symmetric_ring_time_ps
from collectives.base import AlgorithmParams, Collective, effective_count, split_counts
from collectives.ring_lap import (NEG, HopClass, LapShape, LapSums, best_stay_window, best_window_of, lap_sums,
                                  stay_leaf)
from collsim.units import serialization_ps
from topologies.model import Cluster, Fabric

__all__ = ["RingPath", "analytic_time_ps", "make_schedule", "ring_lap", "ring_order", "ring_path"]


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


def _nic_hop(cluster: Cluster) -> tuple[int, int, bool]:
    """(latency_ps, rate_Bps, shared) of the hop between consecutive nodes (nodes > 1).

    The latency includes the spine when some hop between consecutive nodes crosses
    it (O(nodes) numpy, only on an oversubscribed tree).  ``shared``: a node's
    entry and exit chips use one NIC, so its uplink carries both directions.
    """
    so = cluster.topology.scale_out
    per_node = cluster.topology.chips_per_node
    crosses = False
    if so.blocking and cluster.leaves > 1:   # does a hop between consecutive nodes cross the spine?
        boundary = np.arange(1, cluster.nodes, dtype=np.int64) * per_node
        nic_out = _nic_of(cluster, _ring_chips(cluster, boundary - 1))
        nic_in = _nic_of(cluster, _ring_chips(cluster, boundary))
        crosses = bool(np.any(nic_out // so.nics_per_leaf != nic_in // so.nics_per_leaf))
    first, last = _ring_chips(cluster, [0, per_node - 1])
    shared = cluster.chips == 2 or bool(_nic_of(cluster, np.array([first]))[0] == _nic_of(cluster, np.array([last]))[0])
    return so.nic.latency_ps + (so.spine_latency_ps if crosses else 0), so.nic.rate_Bps, shared


def _closing_hop(cluster: Cluster) -> tuple[int, int, int, int]:
    """(latency_ps, rate_Bps, shared_rate_Bps, shared_latency_ps) of the hop from the last ring position to the first.

    The closing hop is routed like any message, so a link of it (or of its reverse,
    the backward ring's hop from the first position) may also carry a ring hop of
    the other direction.  shared_rate_Bps: the slowest such link (0: none);
    shared_latency_ps: the least latency from that link to the end of a hop through it.
    """
    n = cluster.chips
    last, first = (int(c) for c in _ring_chips(cluster, [n - 1, 0]))
    closing = cluster.route(last, first)
    specs = [cluster.link_spec(link) for link in closing]
    latency_ps, rate_Bps = sum(spec.latency_ps for spec in specs), min(spec.rate_Bps for spec in specs)
    if n == 2:
        return latency_ps, rate_Bps, rate_Bps, latency_ps
    crossings = _crossings(cluster, closing, -1) + _crossings(cluster, cluster.route(first, last), +1)
    if not crossings:
        return latency_ps, rate_Bps, 0, latency_ps
    shared_Bps = min(cluster.link_spec(link).rate_Bps for link, _ in crossings)
    tail_ps = min(tail for link, tail in crossings if cluster.link_spec(link).rate_Bps == shared_Bps)
    return latency_ps, rate_Bps, shared_Bps, tail_ps


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
        latency_ps, rate_Bps, nic_shared = _nic_hop(cluster)
        hops.append((latency_ps, rate_Bps))
        shared = shared or nic_shared
    if n > 1:
        last, first = (int(c) for c in _ring_chips(cluster, [n - 1, 0]))
        closing = cluster.route(last, first)
        specs = [cluster.link_spec(link) for link in closing]
        hops.append((sum(spec.latency_ps for spec in specs), min(spec.rate_Bps for spec in specs)))
        shared = shared or _closing_hop_shared(cluster, closing)
    if not hops:
        return RingPath(0, 1, False)
    return RingPath(max(lat for lat, _ in hops), min(rate for _, rate in hops), shared)


def ring_lap(cluster: Cluster) -> LapShape:
    """The ring's lap as hop classes in ring order, with multiplicities (n > 1; O(levels) + the spine check).

    A level-i hop changes Gray digit i: n / below_i - n / below_(i+1) of them per
    lap (below_i = chips per level-i unit).  Consecutive hops of one level occur
    only on the innermost level of size >= 3, so only there can a switch uplink
    carry both directions.
    """
    n = cluster.chips
    levels: list[tuple[int, HopClass]] = []
    below = 1
    for level in cluster.levels:
        if level.size > 1:
            links = 2 if level.fabric is Fabric.switch else 1
            shared = n == 2 or (level.fabric is Fabric.switch and not levels and level.size >= 3)
            rate_Bps = level.link.rate_Bps
            count = n // below - n // (below * level.size)
            latency_ps = links * level.link.latency_ps   # a shared switch uplink is the hop's first link
            levels.append((level.size, HopClass(level.name, latency_ps, rate_Bps, rate_Bps if shared else 0,
                                                latency_ps, count)))
        below *= level.size
    nic = None
    if cluster.nodes > 1:
        latency_ps, rate_Bps, shared = _nic_hop(cluster)
        nic = HopClass("nic", latency_ps, rate_Bps, rate_Bps if shared else 0, latency_ps, cluster.nodes - 1)
    closing = HopClass("closing", *_closing_hop(cluster), 1)
    return LapShape(tuple(levels), nic, closing, cluster.nodes)


def _closing_hop_shared(cluster: Cluster, closing: list[int]) -> bool:
    """Does a backward hop use a link of the closing hop (routed over several links when the radices are odd)?"""
    return bool(_crossings(cluster, closing, -1))


def _crossings(cluster: Cluster, route: list[int], step: int) -> list[tuple[int, int]]:
    """Links of ``route`` (a hop over >= 2 links) that a ring hop ``step`` (+1 forward, -1 backward)
    from one of its chips also uses, each with the least latency from it to the end of either hop."""
    if len(route) < 2:
        return []
    n = cluster.chips
    links, out = set(route), []
    for group, level in zip(cluster.link_groups, cluster.levels):
        for link in route:
            if group.first <= link < group.first + group.count:
                chip = (link - group.first) // level.ports
                other = cluster.route(chip, int(_ring_chips(cluster, [(_ring_position(cluster, chip) + step) % n])[0]))
                for common in links.intersection(other):
                    tails = (route[route.index(common):], other[other.index(common):])
                    out.append((common, min(sum(cluster.link_spec(x).latency_ps for x in t) for t in tails)))
    return out


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
    chip = cluster.topology.chip
    nbytes = [b * elem_bytes for b in pieces]
    r_ps = [chip.reduce_ps(b) for b in nbytes]
    backward = [params.bidirectional and c % 2 == 1 for c in range(len(pieces))]
    steps, reduce_steps = _steps(collective, n)
    shape = ring_lap(cluster)
    if len({(cls.latency_ps, cls.rate_Bps) for cls in shape.classes}) > 1:
        return launch_ps + _heterogeneous_ps(shape, n, steps, reduce_steps, nbytes, r_ps, backward)
    path = ring_path(cluster)
    s_ps = [serialization_ps(b, path.rate_Bps) for b in nbytes]
    link_group = [0 if path.shared else int(back) for back in backward]
    return launch_ps + symmetric_ring_time_ps(steps, reduce_steps, path.alpha_ps, s_ps, r_ps, link_group)


def _heterogeneous_ps(shape: LapShape, n: int, steps: int, reduce_steps: int, nbytes: list[int],
                      r_ps: list[int], backward: list[bool]) -> int:
    """Makespan of a ring whose hops differ: the longest of the path families of the module docstring.

    Channels of one direction see the same link loads, and every family grows
    with a channel's own piece, so only the first (largest) channel of each
    direction is evaluated.
    """
    best = 0
    for c in sorted({backward.index(back) for back in backward}):
        loads = {cls: _load_ps(cls, c, nbytes, backward) for cls in shape.classes}
        best = max(best, _channel_ps(shape, n, steps, reduce_steps, nbytes[c], r_ps[c], sum(r_ps), loads))
    return best


def _load_ps(cls: HopClass, c: int, nbytes: list[int], backward: list[bool]) -> tuple[int, int]:
    """(per-step serialization on the busiest link of a class on channel c's path, latency from that link on).

    Every step a link carries one piece of each channel that uses it: the
    channels in c's direction, and on a link that also carries the other
    direction (rate ``shared_rate_Bps``) every channel.
    """
    same = sum(serialization_ps(b, cls.rate_Bps) for b, back in zip(nbytes, backward) if back == backward[c])
    both = sum(serialization_ps(b, cls.shared_rate_Bps) for b in nbytes) if cls.shared_rate_Bps else 0
    return (both, cls.shared_latency_ps) if both > same else (same, cls.latency_ps)


def _channel_ps(shape: LapShape, n: int, steps: int, reduce_steps: int, nbytes: int, r_ps: int,
                all_r_ps: int, loads: dict[HopClass, tuple[int, int]]) -> int:
    """Longest path of one channel's pieces (module docstring, "heterogeneous rings")."""
    s_ps = {cls: serialization_ps(nbytes, cls.rate_Bps) for cls in shape.classes}
    hop_ps = {cls: cls.latency_ps + s_ps[cls] for cls in shape.classes}
    load_ps = {cls: load for cls, (load, _) in loads.items()}
    # the hop that ends the stays: the rest of the path after its busiest link, the last step's pieces
    last_ps = {cls: tail_ps + load for cls, (load, tail_ps) in loads.items()}
    sums = lap_sums(shape, hop_ps.__getitem__)
    # (a) every stage a hop: the best run of `steps` hops
    t_ps = best_window_of(sums, n, steps) + reduce_steps * r_ps
    # (c) the reduction unit serves every channel's reduce steps back to back
    if reduce_steps > 0:
        t_ps = max(t_ps, reduce_steps * all_r_ps + best_window_of(sums, n, steps - reduce_steps + 1))
    r_before = r_ps if reduce_steps > 0 else 0          # hops before the stays reduce (RS, AR)
    r_after = r_ps if reduce_steps == steps else 0      # hops after them reduce only in a reduce-scatter
    for sigma in sorted(set(load_ps.values())):
        # (b) a window of <= n-1 hops; the stays on one of its hops of load >= sigma
        def leaf(cls):
            split = last_ps[cls] + r_after - sigma if load_ps[cls] >= sigma else None
            return stay_leaf(hop_ps[cls] + r_before - sigma, hop_ps[cls] + r_after - sigma, split)
        window_ps = best_stay_window(shape, leaf)
        if window_ps > NEG:
            t_ps = max(t_ps, steps * sigma + window_ps)
        # (b') all-reduce only: stays after a full lap of reducing hops, so the window is that
        # lap (from just after e to e) and up to n-2 more hops, the stays on e or further on
        if 0 < reduce_steps < steps:
            t_ps = max(t_ps, steps * sigma + _beyond_a_lap_ps(shape, sums, n, sigma, hop_ps, load_ps, last_ps)
                       + reduce_steps * r_ps)
    return t_ps


def _beyond_a_lap_ps(shape: LapShape, sums: LapSums, n: int, sigma: int, hop_ps: dict, load_ps: dict,
                     last_ps: dict) -> int:
    """Best sum of (hop - sigma) over a full lap then up to n-2 more hops, the stays on the
    lap's last hop e or further on (the hop that ends them weighs last_ps instead of hop_ps)."""
    plain = {cls: hop_ps[cls] - sigma for cls in shape.classes}
    extra = {cls: last_ps[cls] - hop_ps[cls] for cls in shape.classes if load_ps[cls] >= sigma}
    # stays on e: e and up to n-2 plain hops after it (e itself is in the lap's sum)
    on_e = best_stay_window(shape, lambda cls: stay_leaf(NEG, plain[cls], extra.get(cls)))
    # stays further on: a window of at most n-2 hops after e
    further = best_stay_window(shape, lambda cls: stay_leaf(
        plain[cls], plain[cls], plain[cls] + extra[cls] if cls in extra else None), left_out=2)
    return sums.total - n * sigma + max(on_e, further)


def make_schedule(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                  params: AlgorithmParams) -> RingSchedule:
    """The self-timed event schedule (collectives/_ring.pyx) of this ring collective."""
    collective = Collective(collective)
    params.validate()
    count = effective_count(collective, count, cluster.chips)
    return RingSchedule(ring_order(cluster), count, params.channels, params.bidirectional,
                        KIND_CODES[collective.value])
