"""Hierarchical collectives: reduce-scatter up the scale-up levels, all-reduce across nodes, all-gather back.

Algorithm
---------
Let the cluster have scale-up levels 0..L-1 (level l groups ``g_l`` units of
level l-1; levels of size 1 are skipped) and ``N`` nodes on the scale-out
network.  ``all_reduce`` runs these phases, each inside every group of its
level at once:

1. RS_0, RS_1, ..., RS_{L-1}: reduce-scatter inside each level-l group (chips
   that differ only in their level-l coordinate); afterwards a chip holds
   1/(g_0...g_l) of the data, reduced over its level-<=l group;
2. only when N > 1, all-reduce of that shard across nodes among chips at the
   same local position, each chip through its own share of its NIC:
   ``algorithm.top=ring``: TOP_RS + TOP_AG, a ring over the nodes in node
   order; ``tree``: TREE, a double binary tree (each tree carries half of the
   shard, reductions flow up, the root broadcasts down);
3. AG_{L-1}, ..., AG_0: all-gather back out.

``reduce_scatter`` = RS_0..RS_{L-1} + TOP_RS; ``all_gather`` = TOP_AG +
AG_{L-1}..AG_0 (they always cross nodes on a ring: ``top=tree`` is an
all-reduce shape).  Scale-up phases are rings over the level's units in
physical-neighbour order (``ring_order``): a ring fabric and a switch in unit
order (a switch hop is 2 links, chip -> switch -> chip), a torus in snake
(boustrophedon) order with an even dimension outermost, so every hop and the
closing one are single links.  A ``direct`` level (a dedicated link between
every pair of units) runs a one-step mesh: each chip sends every other unit
its part at once.

Data layout.  ``all_reduce`` may place data anywhere, so parts nest
contiguously: a chunk is split with ``split_counts`` into g_0 parts by ring
position, the chip's part into g_1 parts, and so on.  NCCL's in-place
reduce-scatter / all-gather fix where block r lives (chip r ends with block r
of ``split_counts(count, n)``, all B = count/n long), and elements never move
in the buffer, so after RS_l a chip must hold every block whose level-0..l
coordinates are its own: a strided set.  A level-l transfer is then
``R_l = n / (g_0...g_l)`` runs of one block piece each, at a stride of
g_0...g_l blocks (R = 1 across nodes).  With a data plane the runs travel as R_l
messages and the receiver acts on the last; without one (``event`` fidelity)
they travel as one message of the same total size (as one DMA descriptor
chain would), so event fidelity keeps O(chips x steps) messages.

Pipelining (DESIGN.md section 5).  The buffer is cut into ``k =
algorithm.chunk_count(S)`` chunks and each chunk into C = ``channels`` pieces
(``split_counts(total, k C)``, piece j C + c; for reduce-scatter / all-gather
every block is cut so).  Channel c runs its rings backwards when
``bidirectional`` and c is odd.  Each phase takes the chunks of a channel one
at a time and in order, like the stages of a pipeline: on a chip, chunk j
enters phase p as soon as it has finished phase p-1 there (its part is
reduced / gathered) and chunk j-1 has left phase p there; chunk j + F starts
when chunk j has finished (F = ``in_flight`` chunks in the pipeline).  So
while chunk j crosses the EFA, chunk j+1 reduces over NeuronLink.

Formulas (integer ps)
---------------------
``ser(b, B) = ceil(b 1e12 / B)`` (``collsim.units.serialization_ps``, as the
engine), ``red(b) = ser(b, R)``, R = ``chip.reduce_Bps``, e = element bytes.
Level l: alpha_l = latency of the longest path between ring neighbours (one
link on ring, torus and direct levels, two on a switch), B_l = the link's
``rate_Bps``.  Across nodes: alpha = NIC latency (+ spine latency when an
oversubscribed fat tree has several leaves), B = NIC rate.

Part sizes in elements, at the largest piece (the slowest chip):
all_reduce: c = ceil(count / (k C)); a chip holding c_l elements entering level
l sends parts of b_l = ceil(c_l / g_l) and keeps one (c_{l+1} = b_l); across
nodes b = ceil(c_top / N) (ring) or h = ceil(c_top / 2) (tree).
reduce_scatter / all_gather: p = ceil(B / (k C)); b_l = (n / (g_0...g_l)) p;
b = p across nodes.

Channels sharing a directed link: lambda_l = ceil(C'/2) when ``bidirectional``
and the level is a ring/torus of size >= 3 (the two directions use different
links), else C'; across nodes lambda = chips_per_nic x C' (the chips on one NIC
and their channels share its rate); C' = min(C, elements) channels carry data.
Each chip reduces for all its channels: C' reductions per step.

    ring RS_l:   (g_l - 1) (alpha_l + lambda_l ser(b_l e, B_l) + C' red(b_l e))
    ring AG_l:   (g_l - 1) (alpha_l + lambda_l ser(b_l e, B_l))
    mesh RS_l:   alpha_l + C' ser(b_l e, B_l) + (g_l - 1) C' red(b_l e)
    mesh AG_l:   alpha_l + C' ser(b_l e, B_l)
    TOP_RS:      (N - 1) (alpha + lambda ser(b e, B) + C' red(b e))
    TOP_AG:      (N - 1) (alpha + lambda ser(b e, B))
    TREE:        fill and period of the walk below (``tree_phase_ps``)

With t_p the time of one chunk through phase p and m_p what each further chunk
adds behind it (m_p = t_p except for the tree), Sigma = sum_p t_p, M = max_p
m_p, k' chunks that carry data and F = in_flight, the pipeline is a flow shop
with a window of F chunks (``pipeline_ps``):

    T = launch + Sigma + q max(Sigma, F M) + r M,   (q, r) = divmod(k' - 1, F)

i.e. launch + Sigma + (k' - 1) M whenever the window does not bind (F M >=
Sigma).  Count 0 (or one chip): T = launch.

Links two phases share (``shared_link_ps``).  RS_l and AG_l of a level (and
TOP_RS and TOP_AG on the NICs) send over the same directed links; per chunk a
ring phase keeps the busiest of them serializing busy_p = (g_l - 1) lambda_l
ser(b_l e, B_l) (a mesh phase C' ser(b_l e, B_l)).  Every chunk crosses it in
both phases, so

    T >= launch + (fills of the phases before RS_l) + k' (busy_RS_l + busy_AG_l)
                + alpha_l + (fills of the phases after AG_l)

and the analytic is the larger of this and the flow shop.  It never binds for
one chunk, nor for reduce_scatter / all_gather (one phase per level); it binds
when one level's two phases are the bottleneck: trn3-ultraserver, 1 GiB, the
sled switch links carry 4 chunks x 1,748 us: event 6,997 us, analytic 6,996
us (the flow shop alone: 6,111 us).

The tree phase across nodes (top = tree)
----------------------------------------
The event schedule (``_enter_tree``, ``_tree_up_done``, ``deliver`` in
_hierarchical.pyx), per chip position and channel, on the two trees of
``double_binary_tree`` (tree t carries half t, h_t = split_counts(c_top, 2)[t]):
a leaf sends its half up on entering the phase; an inner node reduces each
child's half as it arrives (one reduction unit, FIFO, not before it entered)
and sends up after the last; the root broadcasts and every node forwards the
broadcast to its children on arrival, in children order; a node has finished
the phase when both trees are done there, and only then takes the next chunk
of that channel into the phase.  Every message crosses the sender's NIC
uplink and the receiver's NIC downlink (cut-through, FIFO by head arrival).

``_tree_chunk`` times one chunk of one stream node by node, a whole tree level
at a time (O(N) from ``tree_layout``), with s_t = ser(h_t e, B), r_t =
red(h_t e), alpha = NIC latency, alpha_d = its downlink's share:

    leaf x:   sends at max(entry_x, uplink free)           (tree 0 before tree 1)
    inner x:  children served by x's downlink in order of send time (then
              node id): a_1 = u_1 + alpha + s_t, a_2 = max(u_2 + alpha, a_1) + s_t
              (each also behind broadcasts of the previous chunk that reached
              the downlink first); ready_x = max(a_1, entry_x) + r_t, then
              max(a_2, ready_x) + r_t; it sends up when its uplink is free
    down:     child i (0, 1) of x gets it at start_x + alpha + (i + 1) s_t
              (x's uplink sends to its children one after the other);
              start = the root's ready time, or the arrival at x
    done_x  = max over both trees (the root of t: its ready time in t)

fill = max_x done_x with every node entering at 0.  The period is what a
second chunk adds when every node enters it on finishing the first (entry_x =
done_x): its leaves' up messages queue behind their own broadcasts of the
first chunk on the uplink, and behind the first chunk's broadcasts that reach
the parent's downlink first.  With one stream the period repeats from the
second chunk on (observed for N <= 2048).

So the cost follows the real trees: every level of an in-order tree charges
the second sibling's s_t only where a node has two children, and the down
path charges the (i + 1)-th child's position.  The old closed form charged D
levels of f = 2 children (D = height of the taller tree) each way, each of
f lambda ser and no period below the fill.  D = floor(log2 N) for every N in
[2^p, 2^(p+1) - 1], so it gave the same 11,314 us for 4,096 and 7,282 trn3
UltraServers (589,824 and 1,048,608 chips) although the root has one child at
4,096 and two at 7,282; and it charged every hop all lambda streams' messages
(f lambda = 4 with two channels) where the streams follow each other and a
hop costs one or two messages: at trn2 x 1,024, 1 GiB it was 1.95x the event
time.

Several streams (lambda = chips_per_nic x C' > 1) send the same pattern
through every NIC at once and follow each other: the second stream's halves
queue behind the first's at the first parent (g = the busiest sibling group,
max_x,t children_t(x) s_t = 2 s_0), and at the root's child the first
stream's broadcast waits behind the second stream's halves (s_0 - 2 alpha -
r_0 when positive).  The model adds that lag per further stream to the fill
and to the period (or, when reductions weigh more, the C' channels' work on
one reduction unit, (C' - 1) max_x sum_t children_t(x) r_t):

    fill_lambda   = fill_1 + (lambda - 1) (g + max(0, s_0 - 2 alpha - r_0))
    period_lambda = period_1 + (lambda - 1) (g + max(0, s_0 - 2 alpha - r_0))

When analytic == event
----------------------
To the picosecond when C = 1, every split is even (equal parts at every
level), no NIC is shared (chips_per_nic = 1, or N = 1), rings close with one
link (not a torus whose dimensions are all odd), the scale-out network is
non-blocking, strided runs in data fidelity serialize in whole ps (b 1e12
divisible by the rate), and

* one chunk carries data (k' = 1), for every collective, with top = ring, or
  top = tree when the two trees' broadcasts never reach a node within one
  message time of each other (N = 2..13, 15..31, 64, 127, 255, 256, 4096 and
  most others below 70; tests/test_hierarchical_tree.py lists them); or
* all_gather with any k and in_flight: its phases use disjoint links and never
  reduce, so the event schedule is exactly the flow shop;
* reduce_scatter with any k, as long as two phases never reduce on a chip at
  the same time (the chip's one reduction unit is shared, FIFO);
* all_reduce over nodes of one chip each (no scale-up level), top = tree, with
  any k for most of the N above (the period repeats; not for N = 13).

Otherwise the formula is a model:

* RS_l and AG_l of a level use the same links: chunk j+1's RS_l queues behind
  chunk j's AG_l (and TOP_RS / TOP_AG share the NICs).  The flow shop ignores
  that, the shared-link bound counts the load but not the latencies and
  reductions that interleave with it; where neither is tight the event time
  is higher (2 x 4 ring chips, 4 chunks: +2.1%; 2 ring chips, 2 chunks whose
  reductions sit between the transfers: +18%, both worked out in the tests).
* Shared links (channels, chips on one NIC) are charged lambda x ser per step;
  in the event engine the sharers drift apart and overlap their latency and
  reductions with each other's transfers, so the event time is lower (up to
  26% lower with two channels on a switch level).
* Tree, one stream: the walk leaves out the waits it does not list above (two
  broadcasts reaching a node together; a broadcast overtaken by the next
  chunk's up message).  Measured event / analytic over nodes of one chip,
  N = 2..3000, k = 1..4, alpha / s from 0.004 to 3.75: 0.97..1.05, and never
  below 1 with one or two chunks.
* Tree, several streams: exact for two streams and one chunk on N = 4, 16,
  64, 256, 1024 when s_0 >> alpha; otherwise the streams drift apart and
  collide in ways that depend on N.  Measured event / analytic over nodes of
  one chip, alpha / s from 0.04 to 3.75, k = 1..4: two streams 0.98..1.08 for
  N >= 64 (0.90..1.13 below), four streams 0.97..1.15 for N >= 64 (0.82..1.31
  below); on the trn1 (four streams) and trn2 presets, 64..4096 nodes, 64 MiB
  and 1 GiB: 0.98..1.05.  trn3-ultraserver, 1 GiB: 1.00 at 64..1024
  UltraServers, 0.97 at 4096 and 7282: the event hides the EFA tree under the
  scale-up phases, the flow shop lets its period show.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from collectives.base import AlgorithmParams, Collective, effective_count
from collsim.errors import ConfigError
from collsim.units import serialization_ps
from topologies.model import Cluster, Fabric

# Phase kinds (same values as collectives/_hierarchical.pxd).
RING_RS = 0
RING_AG = 1
MESH_RS = 2
MESH_AG = 3
TREE_AR = 4

RING_UNITS_MAX = 2**16
"""Largest ring or mesh the event schedule runs: a slot counts its transfers in 16 bits
(collectives/_hierarchical.pxd).  A ring across more nodes would be ~10^11 events anyway."""


@dataclass(frozen=True)
class LevelPlan:
    """One level the algorithm works on: a scale-up level of size > 1, or the nodes."""

    level: int  # index in cluster.levels; len(cluster.levels) for the scale-out level
    size: int  # units in a group (g)
    weight: int  # chips per unit: a chip's digit at this level = (chip // weight) % size
    mesh: bool  # direct fabric: one-step mesh instead of a ring
    order: tuple[int, ...]  # ring position -> unit (physical neighbours); () = identity
    alpha_ps: int  # longest path latency between ring neighbours
    rate_Bps: int  # serialization rate of the links used
    lanes: int  # 2 when the two ring directions use disjoint directed links, else 1
    share: int  # chips whose traffic shares one link of this level (NIC share at the top)


@dataclass(frozen=True)
class Phase:
    kind: int  # RING_RS, RING_AG, MESH_RS, MESH_AG, TREE_AR
    level: int  # index into Plan.levels


@dataclass(frozen=True)
class Plan:
    levels: tuple[LevelPlan, ...]  # active scale-up levels inner -> outer, then the nodes (if N > 1)
    scale_up: int  # how many of ``levels`` are scale-up levels
    phases: tuple[Phase, ...]
    strided: bool  # reduce_scatter / all_gather block layout


# --- ring orders and trees -----------------------------------------------------


def snake_order(dims: tuple[int, ...]) -> tuple[int, ...]:
    """Units of a torus (first dimension fastest) in boustrophedon order.

    Consecutive units differ by one step in one dimension.  A dimension of
    even extent is made the outermost when there is one, so the last unit is
    one wrap-around link away from the first and the ring closes in one hop.
    """
    strides, acc = [], 1
    for k in dims:
        strides.append(acc)
        acc *= k
    axes = list(range(len(dims)))
    even = [d for d in axes if dims[d] % 2 == 0 and dims[d] > 1]
    if even:
        axes.remove(even[-1])
        axes.append(even[-1])
    seq: list[int] = [0]
    for d in axes:  # inner -> outer
        layer: list[int] = []
        for z in range(dims[d]):
            part = seq if z % 2 == 0 else seq[::-1]
            layer.extend(u + z * strides[d] for u in part)
        seq = layer
    return tuple(seq)


def ring_order(level) -> tuple[int, ...]:
    """Ring position -> unit for one scale-up level (physical-neighbour order)."""
    if level.fabric is Fabric.torus:
        return snake_order(tuple(level.dims))
    return tuple(range(level.size))


def _inorder_tree(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary tree over labels 1..n in in-order layout: children (n+1, 2) and parent (n+1) by label.

    Label i with lowest set bit L has children i - L/2 and i + d, d the
    largest of L/2, L/4, ... with i + d <= n (none when L = 1).  The root is
    the largest power of two <= n; height ~ log2 n.  Label 0 is unused.
    """
    lab = np.arange(1, n + 1, dtype=np.int64)
    low = lab & -lab
    half = low // 2
    left = np.where(half >= 1, lab - half, 0)
    d = half.copy()
    while True:
        bad = (d >= 1) & (lab + d > n)
        if not bad.any():
            break
        d = np.where(bad, d // 2, d)
    right = np.where(d >= 1, lab + d, 0)
    children = np.zeros((n + 1, 2), dtype=np.int64)
    children[1:, 0] = left
    children[1:, 1] = right
    parent = np.zeros(n + 1, dtype=np.int64)
    for col in (left, right):
        has = col > 0
        parent[col[has]] = lab[has]
    return children, parent


def double_binary_tree(n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Two complementary binary trees over nodes 0..n-1 (n >= 2).

    Tree 0 puts node r at label r+1 of the in-order tree; tree 1 mirrors it
    (label n - r) when n is even, shifts it (label (r+1) mod n + 1) when n is
    odd, so that the leaves of one tree are mostly inner nodes of the other.
    Returns parent (2, n) with -1 at the roots, children (2, n, 2) with -1 for
    none (left first), and the height of the taller tree (edges).
    """
    children_l, parent_l = _inorder_tree(n)
    labels = np.arange(1, n + 1, dtype=np.int64)
    node_of_label = [labels - 1, (n - labels) if n % 2 == 0 else (labels - 2) % n]
    parent = np.full((2, n), -1, dtype=np.int64)
    children = np.full((2, n, 2), -1, dtype=np.int64)
    height = 0
    for t in range(2):
        to_node = np.concatenate(([-1], node_of_label[t]))  # label -> node, label 0 -> -1
        nodes = to_node[1:]
        parent[t, nodes] = to_node[parent_l[1:]]
        children[t, nodes, 0] = to_node[children_l[1:, 0]]
        children[t, nodes, 1] = to_node[children_l[1:, 1]]
        depth = np.zeros(n, dtype=np.int64)
        par = parent[t]
        for _ in range(n):  # ~log2 n rounds: depth[x] = depth[parent] + 1
            new = np.where(par >= 0, depth[np.maximum(par, 0)] + 1, 0)
            if np.array_equal(new, depth):
                break
            depth = new
        height = max(height, int(depth.max()))
    return parent, children, height


# --- the tree phase across nodes: walks over the real tree shapes ------------------------


class TreeLayout:
    """``double_binary_tree(n)`` arranged for walks that treat a whole level of a tree at once.

    parent (2, n) and children (2, n, 2) as ``double_binary_tree`` (a node's
    children are a prefix of its row); nch (2, n) children per node; leaf
    (2, n) nch == 0; root[t].  ups[t]: tree t's inner nodes grouped by height
    1, 2, ... (a group's children are leaves or in earlier groups), each as
    (nodes, first child, second child or -1, parent in tree 0, parent in tree
    1).  downs[t]: the inner nodes grouped by depth from the root, each as
    (nodes, first children, nodes with a second child, second children).
    Built once per n (``tree_layout``), O(n); the index arrays spare the
    walks any fancy indexing of the (2, n, 2) table.
    """

    def __init__(self, n: int):
        parent, children, height = double_binary_tree(n)
        self.n, self.parent, self.children, self.height = n, parent, children, height
        self.nch = (children >= 0).sum(axis=2)
        self.leaf = self.nch == 0
        self.root = tuple(int(np.flatnonzero(parent[t] < 0)[0]) for t in range(2))
        self.ups: list[list[tuple[np.ndarray, ...]]] = []
        self.downs: list[list[tuple[np.ndarray, ...]]] = []
        for t in range(2):
            levels = [np.array([self.root[t]], dtype=np.int64)]
            while True:
                below = children[t, levels[-1]].reshape(-1)
                below = below[below >= 0]
                if below.size == 0:
                    break
                levels.append(below)
            up_height = np.zeros(n, dtype=np.int64)
            downs = []
            for level in levels[:-1]:
                inner = level[self.nch[t, level] > 0]
                two = inner[children[t, inner, 1] >= 0]
                downs.append((inner, children[t, inner, 0], two, children[t, two, 1]))
            for level in reversed(levels):  # deepest first: children's heights are known
                inner = level[self.nch[t, level] > 0]
                kids = children[t, inner]
                up_height[inner] = np.where(kids >= 0, up_height[np.maximum(kids, 0)], -1).max(axis=1) + 1
            inner = np.flatnonzero(self.nch[t] > 0)
            ups = []
            for h in range(1, int(up_height.max()) + 1):
                nodes = inner[up_height[inner] == h]
                ups.append((nodes, children[t, nodes, 0], children[t, nodes, 1], parent[0, nodes], parent[1, nodes]))
            self.ups.append(ups)
            self.downs.append(downs)

    def down_levels(self, t: int) -> list[np.ndarray]:
        """Tree t's nodes by depth, the root first (for tests)."""
        levels = [np.array([self.root[t]], dtype=np.int64)]
        for inner, first, _, second in self.downs[t]:
            levels.append(np.concatenate((first, second)))
        return levels


@lru_cache(maxsize=16)
def tree_layout(n: int) -> TreeLayout:
    return TreeLayout(n)


@dataclass(frozen=True)
class TreeHop:
    """Costs of one stream's messages between two nodes' chips (no other traffic on the way)."""

    alpha_ps: int  # path latency, sender's NIC uplink to receiver's NIC downlink
    last_ps: int  # latency of the path's last link (the receiver's NIC downlink)
    ser_ps: tuple[int, int]  # serialization of tree t's half; 0: the half is empty, tree t is idle
    red_ps: tuple[int, int]  # reduction of tree t's half


_NEVER = np.iinfo(np.int64).min // 2


def _tree_chunk(lay: TreeLayout, hop: TreeHop, entry: np.ndarray, up_free: np.ndarray,
                prev_down: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk of one stream through both trees, as the event schedule runs it (module docstring).

    entry: when each node enters the phase; up_free: when its NIC uplink is
    free of the previous chunk; prev_down (2, n): when the previous chunk's
    broadcasts reached each node (None for the first chunk).  Returns the
    time each node finishes the phase (both trees done), its uplink free time
    afterwards, and done per tree (2, n).
    """
    n = lay.n
    first = hop.alpha_ps - hop.last_ps  # a message's head reaches the receiver's downlink this long after it starts
    last = hop.last_ps
    send = np.zeros((2, n), dtype=np.int64)  # start on the sender's uplink: up message, or a root's broadcast
    done = np.empty((2, n), dtype=np.int64)
    # leaves send their half on entry, tree 0 before tree 1 (a leaf of both sends both)
    free = np.maximum(entry, up_free)
    for t in range(2):
        if hop.ser_ps[t]:
            send[t] = np.where(lay.leaf[t], free, 0)
            free = np.where(lay.leaf[t], free + hop.ser_ps[t], free)
    if prev_down is not None:
        # the previous chunk's broadcasts on each node's downlink: head arrival and end of service
        heads = [prev_down[t] - last - hop.ser_ps[t] if hop.ser_ps[t] else None for t in range(2)]
        ends = prev_down - last

    def behind_broadcasts(nodes, parents, head, src):
        """End of the previous chunk's broadcasts on ``nodes``' downlinks that are ahead of a message
        whose head arrives at ``head`` from ``src`` (FIFO by head time, then source)."""
        busy = np.full(nodes.size, _NEVER, dtype=np.int64)
        if prev_down is None:
            return busy
        for t in range(2):
            if heads[t] is None:
                continue
            par, bhead = parents[t], heads[t][nodes]
            ahead = (par >= 0) & ((bhead < head) | ((bhead == head) & (par < src)))
            busy = np.where(ahead, np.maximum(busy, ends[t, nodes]), busy)
        return busy

    for t in range(2):
        s, r = hop.ser_ps[t], hop.red_ps[t]
        if not s:
            done[t] = entry  # an empty half is finished on entry
            continue
        send_t, done_t = send[t], done[t]  # views: 1-D indexing below
        for nodes, kid0, kid1, par0, par1 in lay.ups[t]:
            two = kid1 >= 0
            u0 = send_t[kid0]
            u1 = np.where(two, send_t[np.maximum(kid1, 0)], u0)
            swap = two & ((u1 < u0) | ((u1 == u0) & (kid1 < kid0)))  # served in order of head arrival
            ua, ca = np.where(swap, u1, u0), np.where(swap, kid1, kid0)
            ub, cb = np.where(swap, u0, u1), np.where(swap, kid0, kid1)
            # the parent's downlink serves its children one after the other (sibling FIFO)
            parents = (par0, par1)
            end_a = np.maximum(ua + first, behind_broadcasts(nodes, parents, ua + first, ca)) + s
            end_b = np.maximum(np.maximum(ub + first, behind_broadcasts(nodes, parents, ub + first, cb)), end_a) + s
            # one reduction unit, in arrival order, not before the node entered
            ready = np.maximum(end_a + last, entry[nodes]) + r
            ready = np.where(two, np.maximum(end_b + last, ready) + r, ready)
            done_t[nodes] = ready  # final for the root only; others are overwritten going down
            send_t[nodes] = np.maximum(ready, free[nodes])
        # down: the root broadcasts, every node forwards on arrival, children in order on its uplink
        start = np.zeros(n, dtype=np.int64)
        root = lay.root[t]
        start[root] = send_t[root]
        for inner, kid0, two, kid1 in lay.downs[t]:
            done_t[kid0] = start[inner] + hop.alpha_ps + s
            done_t[kid1] = start[two] + hop.alpha_ps + 2 * s
            start[kid0] = done_t[kid0]
            start[kid1] = done_t[kid1]
        free = np.where(lay.leaf[t], free, np.maximum(free, start + lay.nch[t] * s))
    return done.max(axis=0), free, done


@lru_cache(maxsize=256)
def tree_phase_ps(nodes: int, hop: TreeHop, streams: int = 1, reducers: int = 1) -> tuple[int, int]:
    """(fill, period) of the tree phase across ``nodes`` nodes (module docstring, "The tree phase").

    fill: one chunk, every node entering at 0.  period: the time a further
    chunk adds when each node enters it as soon as it finished the previous
    one.  ``streams`` share every NIC link (channels x chips per NIC),
    ``reducers`` every reduction unit (channels).
    """
    lay = tree_layout(nodes)
    zero = np.zeros(nodes, dtype=np.int64)
    done0, free, down0 = _tree_chunk(lay, hop, zero, zero, None)
    done1, _, _ = _tree_chunk(lay, hop, done0, free, down0)
    fill = int(done0.max())
    period = int(done1.max()) - fill
    if streams <= 1 and reducers <= 1:
        return fill, period
    ser = np.array(hop.ser_ps, dtype=np.int64)[:, None]
    red = np.array(hop.red_ps, dtype=np.int64)[:, None]
    sibling = int((lay.nch * ser).max())  # one stream's busiest sibling group on a parent's downlink
    # at the root's child the leading stream's broadcast waits behind the next stream's halves
    turn = max(0, hop.ser_ps[0] - 2 * hop.alpha_ps - hop.red_ps[0])
    unit = int((lay.nch * red).sum(axis=0).max())  # one stream's busiest reduction unit
    extra = max((streams - 1) * (sibling + turn), (reducers - 1) * unit)
    return fill + extra, period + extra


# --- the plan --------------------------------------------------------------------


def _level_alpha_ps(cluster: Cluster, order: tuple[int, ...], weight: int, mesh: bool) -> int:
    """Longest path latency between consecutive units of the ring (group of chip 0)."""
    pairs = [(0, 1)] if mesh else [(order[q], order[(q + 1) % len(order)]) for q in range(len(order))]
    worst = 0
    for a, b in pairs:
        path = cluster.route(a * weight, b * weight)
        worst = max(worst, sum(cluster.link_spec(link).latency_ps for link in path))
    return worst


def build_plan(cluster: Cluster, collective: Collective, params: AlgorithmParams) -> Plan:
    """Levels worked on and phases in order (shared by the analytic and the event schedule)."""
    levels: list[LevelPlan] = []
    weight = 1
    for index, level in enumerate(cluster.levels):
        if level.size > 1:
            mesh = level.fabric is Fabric.direct
            order = () if mesh else ring_order(level)
            lanes = 2 if (level.fabric in (Fabric.ring, Fabric.torus) and level.size >= 3) else 1
            levels.append(
                LevelPlan(index, level.size, weight, mesh, order,
                          _level_alpha_ps(cluster, order, weight, mesh), level.link.rate_Bps, lanes, 1)
            )
        weight *= level.size
    scale_up = len(levels)
    if cluster.nodes > 1:
        so = cluster.topology.scale_out
        alpha = so.nic.latency_ps + (so.spine_latency_ps if (so.blocking and cluster.leaves > 1) else 0)
        levels.append(LevelPlan(len(cluster.levels), cluster.nodes, weight, False, (), alpha, so.nic.rate_Bps, 1,
                                cluster.topology.chips_per_nic))
    top = scale_up if cluster.nodes > 1 else None
    ups = list(range(scale_up))
    phases: list[Phase] = []

    def rs(i):
        return MESH_RS if levels[i].mesh else RING_RS

    def ag(i):
        return MESH_AG if levels[i].mesh else RING_AG

    if collective is Collective.all_reduce:
        phases += [Phase(rs(i), i) for i in ups]
        if top is not None:
            if params.top == "tree":
                phases.append(Phase(TREE_AR, top))
            else:
                phases += [Phase(RING_RS, top), Phase(RING_AG, top)]
        phases += [Phase(ag(i), i) for i in reversed(ups)]
    elif collective is Collective.reduce_scatter:
        phases += [Phase(rs(i), i) for i in ups]
        if top is not None:
            phases.append(Phase(RING_RS, top))
    else:
        if top is not None:
            phases.append(Phase(RING_AG, top))
        phases += [Phase(ag(i), i) for i in reversed(ups)]
    return Plan(tuple(levels), scale_up, tuple(phases), collective is not Collective.all_reduce)


# --- analytic ----------------------------------------------------------------------


def pipeline_ps(stage_ps: list[int], chunks: int, in_flight: int, period_ps: list[int] | None = None) -> int:
    """Flow shop: ``chunks`` identical chunks through the stages, each stage one chunk at a time.

    Chunk j finishes stage p at C(j, p) = max(C(j, p-1) + t_p, C(j-1, p) + m_p)
    and chunk j may only start once chunk j - in_flight has left the last
    stage; t_p is the time of a chunk through stage p, m_p (``period_ps``,
    default t_p) what it adds behind the previous chunk (less than t_p for the
    tree, whose chunks overlap).  The longest path of this max-plus recurrence
    walks the slowest stage (M = max m_p per chunk) or jumps a window (Sigma =
    sum t_p per in_flight chunks), whichever is longer: Sigma + q max(Sigma,
    F M) + r M with q, r = divmod(chunks - 1, F).  With a single stage the
    window never binds (a chip takes chunk j + F into the stage when chunk j
    has left it, which chunk j + 1 already waits for): t + (chunks - 1) m.
    """
    if chunks <= 0 or not stage_ps:
        return 0
    total, worst = sum(stage_ps), max(stage_ps if period_ps is None else period_ps)
    if len(stage_ps) == 1:
        return total + (chunks - 1) * worst
    q, r = divmod(chunks - 1, in_flight)
    return total + q * max(total, in_flight * worst) + r * worst


def _channels_per_link(level: LevelPlan, params: AlgorithmParams, c: int) -> int:
    """Of ``c`` busy channels, how many send on one directed link of this level (times the chips sharing it)."""
    if level.mesh:
        return c
    if params.bidirectional and level.lanes == 2 and c >= 2:
        return level.share * (-(-c // 2))
    return level.share * c


@dataclass(frozen=True)
class PhaseCosts:
    """What the analytic knows about each phase of a plan (ps, per chunk), and the chunks that carry data."""

    fill_ps: list[int]  # one chunk through the phase
    period_ps: list[int]  # what each further chunk adds behind it (the fill, except for the tree)
    busy_ps: list[int]  # how long the phase keeps its level's busiest directed link serializing
    level: list[int]  # index into Plan.levels
    last_hop_ps: list[int]  # latency after the phase's last message leaves that link
    chunks: int


def phase_times_ps(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                   params: AlgorithmParams) -> PhaseCosts:
    """Per phase: time of one chunk through it, what each further chunk adds, its link load (module docstring)."""
    params = params.validate()
    n = cluster.chips
    total_count = effective_count(collective, count, n)
    if n == 1 or total_count == 0:
        return PhaseCosts([], [], [], [], [], 0)
    plan = build_plan(cluster, collective, params)
    k = params.chunk_count(total_count * elem_bytes)
    c = params.channels
    pieces = k * c
    total = total_count if not plan.strided else total_count // n
    chunks = -(-min(total, pieces) // c)
    piece = -(-total // pieces)
    c = min(c, total)  # channels that carry data (pieces j*C + ch; the first ``total`` are non-empty)
    red = cluster.topology.chip.reduce_ps

    # elements of one part message at each plan level (largest chip)
    part: list[int] = []
    held = piece
    for lv in plan.levels:
        if plan.strided:
            part.append((n // (lv.weight * lv.size)) * piece)
        else:
            part.append(-(-held // lv.size))
            held = part[-1]
    costs = PhaseCosts([], [], [], [], [], chunks)
    for ph in plan.phases:
        lv = plan.levels[ph.level]
        g, alpha, lam = lv.size, lv.alpha_ps, _channels_per_link(lv, params, c)
        if ph.kind == TREE_AR:
            held_top = piece if plan.scale_up == 0 else part[plan.scale_up - 1]
            halves = (held_top - held_top // 2, held_top // 2)  # split_counts(held_top, 2)
            hop = TreeHop(alpha, cluster.group_named("nic_down").spec.latency_ps,
                          tuple(serialization_ps(h * elem_bytes, lv.rate_Bps) for h in halves),
                          tuple(red(h * elem_bytes) for h in halves))
            t, m = tree_phase_ps(g, hop, streams=lam, reducers=c)
            busy = 0  # the tree is the only phase on the NICs; its period counts their load
        else:
            bb = part[ph.level] * elem_bytes
            ser = serialization_ps(bb, lv.rate_Bps)
            rs = ph.kind in (RING_RS, MESH_RS)
            if ph.kind in (MESH_RS, MESH_AG):
                t = alpha + c * ser + ((g - 1) * c * red(bb) if rs else 0)
                busy = c * ser  # one message per channel on each link to another unit
            else:
                t = (g - 1) * (alpha + lam * ser + (c * red(bb) if rs else 0))
                busy = (g - 1) * lam * ser
            m = t
        costs.fill_ps.append(t)
        costs.period_ps.append(m)
        costs.busy_ps.append(busy)
        costs.level.append(ph.level)
        costs.last_hop_ps.append(alpha)
    return costs


def shared_link_ps(costs: PhaseCosts) -> int:
    """Lower bound from links that two phases share (RS_l and AG_l of one level), 0 if none.

    Every chunk crosses such a link in both phases, so it serializes
    chunks x (busy of both) in all; before the first chunk reaches it come the
    phases in front of the first of them, after the last message its latency
    and the phases behind the last of them.
    """
    bound = 0
    for level in set(costs.level):
        at = [p for p, lv in enumerate(costs.level) if lv == level]
        if len(at) < 2:
            continue
        head = sum(costs.fill_ps[:at[0]])
        tail = costs.last_hop_ps[at[-1]] + sum(costs.fill_ps[at[-1] + 1:])
        bound = max(bound, head + costs.chunks * sum(costs.busy_ps[p] for p in at) + tail)
    return bound


def _fixed_top_time_ps(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                       params: AlgorithmParams) -> int:
    costs = phase_times_ps(cluster, collective, count, elem_bytes, params)
    flow_shop = pipeline_ps(costs.fill_ps, costs.chunks, params.in_flight, costs.period_ps)
    return cluster.topology.chip.launch_overhead_ps + max(flow_shop, shared_link_ps(costs))


def resolve_top(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                params: AlgorithmParams) -> AlgorithmParams:
    """``top=auto``: ring or tree across nodes, whichever the closed form says is faster.

    As NCCL's tuner picks its inter-node algorithm per size: a ring across N
    nodes pays 2(N-1) EFA latencies, a tree 2 log2(N), so the tree wins on
    large clusters and small shards, the ring on few nodes and large shards.
    Ties go to the ring.  It is decided once per (cluster, size), and the event
    schedule runs the same choice, so ``event`` and ``analytic`` agree on it.
    """
    if params.top != "auto":
        return params
    ring, tree = replace(params, top="ring"), replace(params, top="tree")
    if collective is not Collective.all_reduce or cluster.nodes <= 1:
        return ring  # reduce-scatter / all-gather always cross nodes on a ring
    t_ring = _fixed_top_time_ps(cluster, collective, count, elem_bytes, ring)
    t_tree = _fixed_top_time_ps(cluster, collective, count, elem_bytes, tree)
    return tree if t_tree < t_ring else ring


def analytic_time_ps(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                     params: AlgorithmParams) -> int:
    """Closed-form time (ps) including the chip's launch overhead (module docstring)."""
    params = resolve_top(cluster, collective, count, elem_bytes, params.validate())
    return _fixed_top_time_ps(cluster, collective, count, elem_bytes, params)


# --- event ----------------------------------------------------------------------------


def _check_ring_sizes(cluster: Cluster, collective: Collective, plan) -> None:
    for ph in plan.phases:
        size = plan.levels[ph.level].size if 0 <= ph.level < len(plan.levels) else 0
        if ph.kind != TREE_AR and size > RING_UNITS_MAX:
            last = ph.level == len(plan.levels) - 1 and size == cluster.nodes
            raise ConfigError("cluster.nodes" if last else "topology.levels",
                              f"the hierarchical event schedule runs rings of at most {RING_UNITS_MAX:,} units, "
                              f"this {collective.value} needs one of {size:,} (fidelity=analytic has no such limit)")


def check_event_limits(cluster: Cluster, collective: Collective, params: AlgorithmParams) -> None:
    """Refuse, before any output, a cluster the event schedule cannot run (ConfigError).

    With ``top=auto`` only the rings every size needs are checked (auto may pick the
    tree across nodes); make_schedule checks the plan it builds.
    """
    if params.top == "auto":
        params = replace(params, top="tree")
    _check_ring_sizes(cluster, collective, build_plan(cluster, collective, params))


def make_schedule(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                  params: AlgorithmParams):
    """The event schedule (collectives/_hierarchical.pyx) for ``count`` elements per chip."""
    from collectives._hierarchical import HierarchicalSchedule

    params = resolve_top(cluster, collective, count, elem_bytes, params.validate())
    n = cluster.chips
    total_count = effective_count(collective, count, n)
    plan = build_plan(cluster, collective, params)
    k = params.chunk_count(total_count * elem_bytes)
    nlv = len(plan.levels)
    orders, pos = [], []
    order_off = np.full(nlv, -1, dtype=np.int64)
    at = 0
    for i, lv in enumerate(plan.levels):
        if lv.order and lv.order != tuple(range(lv.size)):
            order_off[i] = at
            orders.extend(lv.order)
            inverse = [0] * lv.size
            for q, u in enumerate(lv.order):
                inverse[u] = q
            pos.extend(inverse)
            at += lv.size
    _check_ring_sizes(cluster, collective, plan)
    top_tree = any(ph.kind == TREE_AR for ph in plan.phases)
    if top_tree:
        parent, children, _ = double_binary_tree(cluster.nodes)
    else:
        parent, children = np.full((2, 1), -1, dtype=np.int64), np.full((2, 1, 2), -1, dtype=np.int64)
    return HierarchicalSchedule(
        n,
        cluster.nodes,
        total_count if not plan.strided else total_count // n,
        1 if plan.strided else 0,
        k,
        params.channels,
        params.in_flight,
        1 if params.bidirectional else 0,
        plan.scale_up,
        np.array([ph.kind for ph in plan.phases], dtype=np.int64),
        np.array([ph.level for ph in plan.phases], dtype=np.int64),
        np.array([lv.size for lv in plan.levels], dtype=np.int64),
        np.array([lv.weight for lv in plan.levels], dtype=np.int64),
        np.array([1 if lv.mesh else 0 for lv in plan.levels], dtype=np.int64),
        order_off,
        np.array(orders if orders else [0], dtype=np.int64),
        np.array(pos if pos else [0], dtype=np.int64),
        np.ascontiguousarray(parent.reshape(-1)),
        np.ascontiguousarray(children.reshape(-1)),
    )
