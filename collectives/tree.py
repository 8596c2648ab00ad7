"""Pipelined double binary tree: all-reduce, reduce-scatter, all-gather (DESIGN.md section 5).

Trees
-----
NCCL's double binary tree.  Tree 0 is the in-order binary tree on ranks
0..N-1 rooted at rank 0: rank r with lowest set bit b has children r - b/2 and
r + b/2 (the latter moved down to the largest power of two that stays below
N), the root has the single child 2^floor(log2(N-1)); its depth is
ceil(log2 N).  Tree 1 is the same tree on mirrored ranks (N-1-r, even N) or
shifted ranks (r-1 mod N, odd N): the odd ranks, leaves of tree 0, are its
interior vertices, so every rank is interior in at most one tree (rank 0 in
both for odd N).  Tree t carries half t of the buffer, split_counts(count, 2)[t].

* One node: the trees span the chips, rank = chip id.  (No rank order makes
  the edges r <-> r +- 2^i physical neighbours; chip order keeps every subtree
  one contiguous range of blocks.)
* Several nodes (NCCL's layout): inside each node a chain through its m chips
  in physical-neighbour order (``chain_order``: reflected Gray code, one link
  per hop on ring, torus and direct levels, up + down on a switch level).
  Tree 0 flows towards chain[0], tree 1 towards chain[m-1], so the two trees'
  heads are different chips with their own NICs (unless the node's chips share
  one).  The heads of tree t, all at the same local position, form tree t of
  the double binary tree over nodes.  A head's children: its chain neighbour,
  then up to two heads of other nodes.

Schedule (collectives/_tree.pyx)
--------------------------------
Each half is cut into k = params.chunk_count(bytes of half 0) chunks
(split_counts).  Leaves send at t = 0; a chip forwards chunk j up as soon as
all its children's parts of chunk j have arrived (all-reduce and
reduce-scatter first reduce it: ``engine.reduce`` of the chunk's bytes, once
per chunk at chips with children) and its own chunk j - W has arrived at its
parent (W = params.in_flight: chunks in flight per chip and tree).  The root
starts the down phase with each chunk as soon as it has it; every chip
forwards what its parent sends it at once.  Up and down phases overlap chunk
by chunk.

* all_reduce: up = reduction (OP_REDUCE), down = broadcast of the chunk.
* reduce_scatter: up as all-reduce; down = scatter: a chip receives only the
  blocks of its subtree (blocks = split_counts(count, n), chip r keeps block r).
* all_gather: up = gather (OP_COPY of the chip's subtree blocks: its own block
  plus what its children sent), no reduction; down = broadcast of the whole
  chunk.  Each tree gathers / scatters the blocks inside its half only.

Cost model (fidelity ``analytic``)
----------------------------------
Notation: c_t = elements of tree t's largest chunk, e = element size, for a
link of rate B (bandwidth x efficiency) s(b) = ceil(b * 1e12 / B) ps
(``serialization_ps``); R = chip reduce rate, r = ceil(c_t e 1e12 / R); a
message of b bytes on an idle path costs alpha + max over its links of s(b)
(alpha = sum of the path's link latencies; cut-through).

    T = launch + F + (k - 1) P               (launch only when n = 1 or count = 0)

F (fill) is the critical path of the first chunk, timed as the schedule runs it:

    ready(leaf) = 0
    ready(x)    = last arrival of x's children's up messages + r   (all-gather: + 0)
    down:         the root sends at ready(root); a chip forwards at its arrival time
    F           = max over both trees of the last arrival (or the root's ready time)

where the messages of one sibling group (children sending to one parent, a
parent sending to its children) queue FIFO on the links they share (§4
timing), in order of (ready time, chip) up and in children order down; other
overlaps are not modelled.  Message sizes: c_t, except that the scatter (RS
down) and the gather (AG up) carry the subtree's blocks in the half, at most
c_t.  On one node this walks every chip (O(n)); across nodes every chain is
summarised once and subtrees of equal shape and block layout share their
timing, so F costs O(log^2 N).

Closed forms.  One switch level (links of latency L, so alpha = 2L), s = s(c_t):

    n = 2^p:  F = 2p alpha + (4p - 2) s + p r     (n = 2: 4L + 2s + r, 4: 8L + 6s + 2r, 8: 12L + 10s + 3r)

(up: p - 1 levels where the second child waits s on the parent's downlink, then
the root's single child; down: the root's child, then p - 1 levels where the
second child waits s on the parent's uplink).  reduce-scatter and all-gather on
n = 4 with b = one block, h = 2b = half: 8L + 3 s(h) + 2 s(b) + 2 r(h) and
8L + 3 s(h) + 2 s(b).  Two nodes, chain hops (alpha_c, s_c), NIC hop (alpha_N, s_N):

    F = 2 (m - 1)(alpha_c + s_c) + 2 (alpha_N + s_N) + m r

P (steady state per chunk index) = max of

* the busiest link: sum over the tree edges crossing it (both trees, both
  directions) of s(bytes per chunk of that edge): one chunk for all-reduce, the
  subtree's blocks in the half / k for the scatter and the gather;
* the busiest reduction unit: r times the number of trees in which a chip has
  children (2 for chain interiors and for rank 0 with odd N);
* the in-flight window, when k > W: max over edges of ceil((alpha + s) / W).

On one switch level every interior chip's port carries 4 chunks per index each
way (interior in one tree: 1 up + 2 down; leaf in the other: 1 up): P = 4s for
n >= 4, and with many chunks (k >> log2 n) T ~ 2 log2(n) alpha + 2S/B for
S = count x e.  So the double tree moves
2S through each port and direction, like a ring (2(n-1)/n S); DESIGN.md's
"~S/B" holds for one-link chains (2 chunks per index per direction).  Across
nodes a head's NIC carries 3 chunks per index of its tree (1.5 S/B_NIC) when
the two trees' heads have their own NICs, up to 4 when they share one.

When analytic == event, to the picosecond
-----------------------------------------
* One chunk per tree (k = 1) whenever no two messages of different sibling
  groups meet on a link: the tests pin all three collectives on one switch
  level for n = 2..15 with equal halves (even effective count) under three
  latency / rate / reduce-rate settings, and 2 nodes x ring of 4, 4 nodes x
  torus 2x2, 5 nodes x switch of 2 sharing one NIC, 8 nodes x 1 chip, a 2x2
  torus.
* Pipelined, k > 1: two chips (one switch, or two nodes of one chip) when the
  reduction is the bottleneck (r >= 2s), k <= W and the chunks are equal:
  T = launch + 4L + 2s + k r.

Otherwise:

* Links shared by different sibling groups at the same time: event > analytic.
  Ring of 4, k = 1: tree 0's up message 2 -> 0 and tree 1's 1 -> 3 both cross
  link 2 -> 3 at once; event 5L + 5s + 2r, analytic 6L + 4s + 2r (pinned by
  hand in the tests).  Also: one switch with n >= 16 (a down message of one
  tree meets one of the other tree, +2L at n = 16), chains through switch
  levels (a chip's uplink carries both trees' chain messages at once), torus
  and ring fabrics with multi-hop tree edges.
* Unequal halves shift tree 0 by a few ps per hop against tree 1, which can
  reorder FIFO ties that the symmetric timing resolves favourably.
* Pipelined: the engine serves each link FIFO in whole chunks, the period
  assumes they interleave evenly.  Observed event / analytic for k = 1..16,
  W = 2, 4: 0.83..1.07 on one switch level (n = 8, 13, 16), 0.88..1.13 across
  nodes (up to 16 nodes, chains on rings, tori and switches), 0.83..1.15 on a
  4x4 torus and up to 1.42 on a ring of 8, whose multi-hop tree edges overlap;
  1.01..1.02 for trn2-like clusters of 1k-100k chips at 64 MiB, 16 chunks.
  The presets at scale (checked against the f = 2 problem of the hierarchical
  tree: F already walks the real trees): trn2 at 64..4,096 nodes and
  trn3-ultraserver at 64..1,024 UltraServers, 1 GiB, default knobs:
  0.9991..1.0000; 1 MiB..1 GiB with 4, 16 or 64 chunks: 0.97..1.07.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from collectives._tree import KIND_CODES, TreeSchedule, TreeShape
from collectives.base import AlgorithmParams, Collective, effective_count, split_counts
from collsim.units import serialization_ps
from topologies.model import Cluster, Fabric

__all__ = ["analytic_time_ps", "chain_order", "make_schedule", "tree_shape", "TreeModel"]


# --- structure -------------------------------------------------------------------------


def chain_order(cluster: Cluster) -> np.ndarray:
    """Chain through one node's chips in physical-neighbour order (chain position -> local chip id).

    A reflected mixed-radix Gray code over the node's coordinates, c_0 fastest;
    the digit of a ring or torus level is expanded into that level's dims
    (dim 0 fastest), so consecutive chips differ in one coordinate by one step:
    one link on a ring, torus or direct level, up + down on a switch level.
    """
    radices = []
    for level in cluster.levels:
        if level.fabric in (Fabric.ring, Fabric.torus):
            radices.extend(level.torus_dims)
        else:
            radices.append(level.size)
    m = math.prod(radices)
    index = np.arange(m, dtype=np.int64)
    order = np.zeros(m, dtype=np.int64)
    below = 1
    for radix in radices:
        digit = (index // below) % radix
        backward = (index // (below * radix)) % 2 == 1  # odd pass of this digit: walk it back
        order += np.where(backward, radix - 1 - digit, digit) * below
        below *= radix
    return order


@lru_cache(maxsize=32)
def tree_shape(cluster: Cluster) -> TreeShape:
    """The two trees of ``cluster`` (see collectives/_tree.pyx)."""
    chain = chain_order(cluster) if cluster.nodes > 1 else None
    return TreeShape(cluster.chips, cluster.nodes, chain)


def _chunks(collective: Collective, count: int, n: int, elem_bytes: int, params: AlgorithmParams):
    """(effective count, halves, nominal chunks k, elements of each tree's largest chunk)."""
    params.validate()
    total = effective_count(collective, count, n)
    halves = split_counts(total, 2)
    k = params.chunk_count(halves[0] * elem_bytes)
    largest = [split_counts(h, k)[0] for h in halves]
    return total, halves, k, largest


def make_schedule(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                  params: AlgorithmParams) -> TreeSchedule:
    collective = Collective(collective)
    total, _, k, _ = _chunks(collective, count, cluster.chips, elem_bytes, params)
    return TreeSchedule(tree_shape(cluster), KIND_CODES[collective.value], total, elem_bytes, k, params.in_flight)


# --- cost model ----------------------------------------------------------------------------


def _walk(route, t_ps: int, nbytes: int, free: dict) -> int:
    """Delivery time of one message sent at t_ps (DESIGN.md section 4); ``free`` holds the
    links the message shares with the other messages of its group (FIFO)."""
    head = tail = t_ps
    for link, latency_ps, rate_Bps in route:
        start = max(head, free.get(link, 0))
        end = max(start + serialization_ps(nbytes, rate_Bps), tail)
        free[link] = end
        head, tail = start + latency_ps, end + latency_ps
    return tail


class TreeModel:
    """The analytic model of one (cluster, collective, size, params): see the module docstring.

    ``fill_ps(t)`` is the critical path of tree t's first chunk, ``period_ps()``
    the steady-state time per chunk index, ``time_ps()`` the total including
    launch.  ``node_level`` (default: nodes > 1) summarises every node's chain
    and memoises subtrees of equal shape; False evaluates chip by chip (tests
    check that both agree).
    """

    def __init__(self, cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                 params: AlgorithmParams, node_level: bool | None = None):
        self.cluster = cluster
        self.collective = Collective(collective)
        self.n = cluster.chips
        self.eb = elem_bytes
        self.params = params
        self.total, self.halves, self.k, self.largest = _chunks(self.collective, count, self.n, elem_bytes, params)
        self.half_off = [0, self.halves[0]]
        self.nchunks = [min(self.k, h) for h in self.halves]
        self.shape = tree_shape(cluster)
        self.chain = self.shape.chain   # chain position -> local chip id
        self.m = cluster.topology.chips_per_node
        self.reduce_Bps = cluster.topology.chip.reduce_Bps
        self.reduces = self.collective is not Collective.all_gather
        self._block = divmod(self.total, self.n)
        self._routes: dict = {}
        self._specs: dict = {}
        self.node_level = cluster.nodes > 1 if node_level is None else (node_level and cluster.nodes > 1)
        so = cluster.topology.scale_out
        # head-to-head routes cross the same kinds of links everywhere: subtrees of equal
        # shape take equal time (memoised), and scale-out loads have a closed form
        self.uniform_scale_out = not (so.blocking and cluster.leaves > 1)

    # --- sizes --------------------------------------------------------------------------------

    def block_start(self, x: int) -> int:
        base, extra = self._block
        return x * base + min(x, extra)

    def _runs_elems(self, t: int, x: int, cap: int) -> list[int]:
        """Element counts of the runs of x's subtree blocks inside half t, at most ``cap`` in all."""
        lo_half, hi_half = self.half_off[t], self.half_off[t] + self.halves[t]
        out = []
        for lo, hi in self.shape.subtree_runs(t, x):
            a, b = max(self.block_start(lo), lo_half), min(self.block_start(hi + 1), hi_half)
            if b > a and cap > 0:
                out.append(min(b - a, cap))
                cap -= out[-1]
        return out

    def up_msgs(self, t: int, x: int) -> list[int]:
        """Element counts of the messages x sends up with tree t's first chunk."""
        c = self.largest[t]
        if self.collective is Collective.all_gather:
            return self._runs_elems(t, x, c)
        return [c] if c else []

    def down_msgs(self, t: int, x: int) -> list[int]:
        """Element counts of the messages x receives from its parent with the first chunk."""
        c = self.largest[t]
        if self.collective is Collective.reduce_scatter:
            return self._runs_elems(t, x, c)
        return [c] if c else []

    def reduce_ps(self, t: int) -> int:
        return serialization_ps(self.largest[t] * self.eb, self.reduce_Bps) if self.reduces else 0

    def _per_chunk(self, t: int, total: int) -> int:
        """Elements per chunk index of an edge moving ``total`` elements of half t in all."""
        if total >= self.halves[t]:
            return self.largest[t]
        return -(-total // max(1, self.nchunks[t]))

    def _total_up(self, t: int, x: int) -> int:
        if self.collective is Collective.all_gather:
            return sum(self._runs_elems(t, x, self.halves[t]))
        return self.halves[t]

    def _total_down(self, t: int, x: int) -> int:
        if self.collective is Collective.reduce_scatter:
            return sum(self._runs_elems(t, x, self.halves[t]))
        return self.halves[t]

    # --- links ----------------------------------------------------------------------------------

    def spec(self, link: int):
        if link not in self._specs:
            spec = self.cluster.link_spec(link)
            self._specs[link] = (spec.latency_ps, spec.rate_Bps)
        return self._specs[link]

    def route(self, src: int, dst: int):
        """[(link id, latency_ps, rate_Bps), ...] of the path src -> dst (Cluster.route's links)."""
        key = (src, dst)
        if key not in self._routes:
            if src // self.m != dst // self.m:
                links = self._scale_out_route(src, dst)
            else:
                links = self.cluster.route(src, dst)
            self._routes[key] = [(link, *self.spec(link)) for link in links]
        return self._routes[key]

    def _scale_out_route(self, src: int, dst: int) -> list[int]:
        """Cluster._route_scale_out without its per-call group lookups (one call per tree edge)."""
        if not hasattr(self, "_so_groups"):
            names = [g.name for g in self.cluster.link_groups]
            self._so_groups = {name: self.cluster.group_named(name).first for name in names}
        so = self.cluster.topology.scale_out
        g = self._so_groups
        a, b = self.cluster.nic_of(src), self.cluster.nic_of(dst)
        path = [g["nic_up"] + a]
        leaf_a, leaf_b = a // so.nics_per_leaf, b // so.nics_per_leaf
        if not self.uniform_scale_out and leaf_a != leaf_b:
            trunks = so.trunks_per_leaf
            path.append(g["leaf_up"] + leaf_a * trunks + (a % so.nics_per_leaf) % trunks)
            path.append(g["leaf_down"] + leaf_b * trunks + (b % so.nics_per_leaf) % trunks)
        path.append(g["nic_down"] + b)
        return path

    # --- fill: one chunk through the tree -----------------------------------------------------

    def fill_ps(self, t: int) -> int:
        """Critical path of tree t's first chunk (ps, from t = 0, launch excluded)."""
        if self.halves[t] == 0 or self.n == 1:
            return 0
        return self._fill_nodes(t) if self.node_level else self._fill_chips(t)

    def _gather(self, t: int, parent: int, senders, ready, start=None):
        """Last arrival at ``parent`` of the first-chunk up messages of ``senders`` (None: none).

        Siblings queue FIFO on the links they share, in order of (send time, chip)."""
        free: dict = {}
        last = start
        for c in sorted(senders, key=lambda c: (ready(c), c)):
            for elems in self.up_msgs(t, c):
                arrive = _walk(self.route(c, parent), ready(c), elems * self.eb, free)
                last = arrive if last is None else max(last, arrive)
        return last

    def _fill_chips(self, t: int) -> int:
        """Critical path of tree t's first chunk, evaluated chip by chip."""
        shape = self.shape
        root = next(x for x in range(self.n) if shape.parent(t, x) < 0)
        order, stack = [], [root]
        while stack:
            x = stack.pop()
            order.append(x)
            stack.extend(shape.children(t, x))
        ready: dict = {}
        r_ps = self.reduce_ps(t)
        for x in reversed(order):  # children before parents
            last = self._gather(t, x, shape.children(t, x), ready.__getitem__)
            ready[x] = 0 if last is None else last + r_ps
        end = ready[root]
        stack = [(root, ready[root])]
        while stack:
            x, tau = stack.pop()
            free: dict = {}
            for c in shape.children(t, x):
                arrive = None
                for elems in self.down_msgs(t, c):
                    arrive = _walk(self.route(x, c), tau, elems * self.eb, free)
                if arrive is not None:
                    end = max(end, arrive)
                    stack.append((c, arrive))
        return end

    def _head_chip(self, t: int, a: int) -> int:
        chain = self.chain
        return a * self.m + int(chain[0] if t == 0 else chain[-1])

    def _chain_summary(self, t: int, a: int):
        """(arrival at node a's head of its chain child's first chunk, or None;
        time from the head's receipt of the chunk to the chain's last delivery, or None)."""
        chain, m = self.chain, self.m
        if m == 1:
            return None, None
        positions = range(m) if t == 0 else range(m - 1, -1, -1)  # head first
        chips = [a * m + int(chain[i]) for i in positions]
        r_ps = self.reduce_ps(t)
        ready, last = 0, None
        for i in range(m - 1, 0, -1):  # from the tail towards the head
            free: dict = {}
            last = None
            for elems in self.up_msgs(t, chips[i]):
                last = _walk(self.route(chips[i], chips[i - 1]), ready, elems * self.eb, free)
            ready = 0 if last is None else last + r_ps
        tau, down_end = 0, None
        for i in range(1, m):
            free = {}
            arrive = None
            for elems in self.down_msgs(t, chips[i]):
                arrive = _walk(self.route(chips[i - 1], chips[i]), tau, elems * self.eb, free)
            if arrive is None:
                break
            tau = down_end = arrive
        return last, down_end

    def _chain_key(self, t: int, a: int):
        """Nodes with equal keys have equal chain summaries: the same part of their blocks in
        half t, and the same number of (one element) larger blocks."""
        if self.collective is Collective.all_reduce:
            return ()
        m = self.m
        start, end = self.block_start(a * m), self.block_start(a * m + m)
        lo = min(max(self.half_off[t], start), end) - start
        hi = min(max(self.half_off[t] + self.halves[t], start), end) - start
        if lo >= hi:
            return ("empty",)
        return (lo, hi, min(max(self._block[1] - a * m, 0), m))

    def _subtree_class(self, t: int, a: int):
        """Block layout of the subtree below node a's head, when it makes the subtree's timing
        depend on its shape only: ('empty',), ('full', block size); else None."""
        if self.collective is Collective.all_reduce:
            return ()
        lo_half, hi_half = self.half_off[t], self.half_off[t] + self.halves[t]
        runs = self.shape.subtree_runs(t, self._head_chip(t, a))
        inside = whole = 0
        for lo, hi in runs:
            x0, x1 = self.block_start(lo), self.block_start(hi + 1)
            whole += x1 - x0
            inside += max(0, min(x1, hi_half) - max(x0, lo_half))
        if inside == 0:
            return ("empty",)
        base, extra = self._block
        first, last = runs[0][0], runs[-1][1]
        if inside == whole and (last < extra or first >= extra):
            return ("full", base + (1 if last < extra else 0))
        return None

    def _fill_nodes(self, t: int) -> int:
        """Critical path of tree t's first chunk on the tree across nodes, chains summarised."""
        N, m, shape = self.cluster.nodes, self.m, self.shape
        r_ps = self.reduce_ps(t)
        summaries: dict = {}
        up_memo: dict = {}
        span_memo: dict = {}
        shape_of = _ShapeKey(N, t)
        skip = 1 if m > 1 else 0  # the chain child comes first among a head's children

        def summary(a):
            key = self._chain_key(t, a)
            if key not in summaries:
                summaries[key] = self._chain_summary(t, a)
            return summaries[key]

        def memo_key(a):
            if not self.uniform_scale_out:
                return ("node", a)
            cls = self._subtree_class(t, a)
            return ("node", a) if cls is None else (shape_of(a), cls)

        def node_children(a):
            return [c // m for c in shape.children(t, self._head_chip(t, a))[skip:]]

        def up(a):
            """Time node a's head has reduced (or gathered) the first chunk of its subtree."""
            key = memo_key(a)
            if key not in up_memo:
                ready = {self._head_chip(t, b): up(b) for b in node_children(a)}
                last = self._gather(t, self._head_chip(t, a), ready, ready.__getitem__, summary(a)[0])
                up_memo[key] = 0 if last is None else last + r_ps
            return up_memo[key]

        def span(a):
            """Last delivery in a's subtree after its head received the chunk at time 0 (-1: none)."""
            key = memo_key(a)
            if key not in span_memo:
                head = self._head_chip(t, a)
                chain_end = summary(a)[1]
                end = -1 if chain_end is None else chain_end
                free: dict = {}
                for b in node_children(a):
                    child = self._head_chip(t, b)
                    arrive = None
                    for elems in self.down_msgs(t, child):
                        arrive = _walk(self.route(head, child), 0, elems * self.eb, free)
                    if arrive is not None:
                        end = max(end, arrive + max(span(b), 0))
                span_memo[key] = end
            return span_memo[key]

        root = 0 if t == 0 else (N - 1 if N % 2 == 0 else 1)  # the rank of virtual rank 0
        return up(root) + max(span(root), 0)

    # --- period: steady state per chunk index --------------------------------------------------

    def period_ps(self) -> int:
        """max(busiest link, busiest reduction unit, in-flight window) per chunk index."""
        if self.n == 1 or self.total == 0:
            return 0
        return max(self.link_period_ps(), self.reduce_period_ps(), self.window_period_ps())

    def link_period_ps(self) -> int:
        """Busiest link: ps of traffic per chunk index, both trees together."""
        if not self.node_level:
            loads: dict = {}
            for t in range(2):
                if self.halves[t]:
                    self._edge_loads(t, self._edges_in(t, range(self.n)), loads)
            return max(loads.values(), default=0)
        busiest = self._scale_out_period_ps()
        for a in self._candidate_nodes():
            loads = {}
            for t in range(2):
                if self.halves[t]:
                    self._edge_loads(t, self._edges_in(t, range(a * self.m, (a + 1) * self.m)), loads)
            busiest = max(busiest, max(loads.values(), default=0))
        return busiest

    def _edge_loads(self, t: int, edges, loads: dict):
        """Add to ``loads`` (link -> ps per chunk index) the traffic of tree t's ``edges`` (child, parent)."""
        for child, parent in edges:
            for src, dst, elems in ((child, parent, self._per_chunk(t, self._total_up(t, child))),
                                    (parent, child, self._per_chunk(t, self._total_down(t, child)))):
                if elems:
                    for link, _, rate in self.route(src, dst):
                        loads[link] = loads.get(link, 0) + serialization_ps(elems * self.eb, rate)

    def _edges_in(self, t: int, chips):
        """Tree t's edges (child, parent) with both ends among ``chips`` (a range)."""
        out = []
        for x in chips:
            p = self.shape.parent(t, x)
            if p >= 0 and p in chips:
                out.append((x, p))
        return out

    def _candidate_nodes(self):
        """Nodes whose chains carry every distinct traffic pattern: the chain sizes only change
        where a node holds the start, middle or end of a half, or the last larger block."""
        if self.collective is Collective.all_reduce:
            return [0]
        base, extra = self._block
        big = extra * (base + 1)

        def owner_node(elem):
            elem = min(max(elem, 0), max(self.total - 1, 0))
            chip = elem // (base + 1) if elem < big else extra + (elem - big) // max(base, 1)
            return min(chip, self.n - 1) // self.m

        h0 = self.halves[0]
        marks = [0, h0 // 2, h0 - 1, h0, h0 + self.halves[1] // 2, self.total - 1, big - 1, big]
        return sorted({owner_node(e) for e in marks} | {0, self.cluster.nodes - 1})

    def _head_edges(self, t: int):
        for a in range(self.cluster.nodes):
            head = self._head_chip(t, a)
            p = self.shape.parent(t, head)
            if p >= 0:
                yield head, p

    def _scale_out_period_ps(self) -> int:
        """Busiest scale-out link per chunk index for the trees across nodes."""
        if not self.uniform_scale_out:
            loads: dict = {}
            for t in range(2):
                if self.halves[t]:
                    self._edge_loads(t, self._head_edges(t), loads)
            return max(loads.values(), default=0)
        # NIC links only: a head's NIC uplink carries its up message and its down messages to
        # remote children, its downlink the reverse; both trees add up when their heads share a NIC
        rate = self.cluster.topology.scale_out.nic.rate_Bps
        out_ps, in_ps = [], []
        for t in range(2):
            u, d, parent = self._head_sizes(t)
            su, sd = self._ser_array(u, rate), self._ser_array(d, rate)
            has = parent >= 0
            out_t, in_t = np.where(has, su, 0), np.where(has, sd, 0)
            np.add.at(out_t, parent[has], sd[has])
            np.add.at(in_t, parent[has], su[has])
            out_ps.append(out_t)
            in_ps.append(in_t)
        per_nic = self.cluster.topology.chips_per_nic
        chain = self.chain
        if int(chain[0]) // per_nic == int(chain[-1]) // per_nic:
            return int(max((out_ps[0] + out_ps[1]).max(), (in_ps[0] + in_ps[1]).max()))
        return int(max(out_ps[0].max(), out_ps[1].max(), in_ps[0].max(), in_ps[1].max()))

    def _head_sizes(self, t: int):
        """Per node (numpy): elements per chunk index its head sends up and receives from its
        parent in tree t, and the parent node (-1 at the root)."""
        N, m = self.cluster.nodes, self.m
        if self.halves[t] == 0:
            zero = np.zeros(N, dtype=np.int64)
            return zero, zero, np.full(N, -1, dtype=np.int64)
        v = _virtual(np.arange(N, dtype=np.int64), N, t)
        low = v & -v
        up_v = np.where(((v & (2 * low)) == 0) & (v + low < N), v + low, v - low)
        parent = np.where(v == 0, -1, _rank(up_v, N, t))
        lo_v = np.where(v == 0, 0, v - low + 1)
        hi_v = np.where(v == 0, N - 1, np.minimum(v + low - 1, N - 1))
        total = np.zeros(N, dtype=np.int64)
        for lo, hi in _real_runs(lo_v, hi_v, N, t):
            total += self._elems_in_half(t, lo * m, hi * m + m - 1)
        per = np.where(total >= self.halves[t], self.largest[t], -(-total // max(1, self.nchunks[t])))
        full = np.full(N, self.largest[t], dtype=np.int64)
        up = per if self.collective is Collective.all_gather else full
        down = per if self.collective is Collective.reduce_scatter else full
        return up, down, parent

    def _elems_in_half(self, t: int, first_chip, last_chip):
        """Elements of the blocks of chips first..last (numpy, -1/empty ranges give 0) in half t."""
        base, extra = self._block
        start = first_chip * base + np.minimum(first_chip, extra)
        end = (last_chip + 1) * base + np.minimum(last_chip + 1, extra)
        lo = np.maximum(start, self.half_off[t])
        hi = np.minimum(end, self.half_off[t] + self.halves[t])
        return np.where((last_chip >= first_chip) & (hi > lo), hi - lo, 0)

    def _ser_array(self, elems, rate_Bps: int):
        values, inverse = np.unique(elems, return_inverse=True)
        ser = np.array([serialization_ps(int(e) * self.eb, rate_Bps) for e in values], dtype=np.int64)
        return ser[inverse].reshape(elems.shape)

    def reduce_period_ps(self) -> int:
        if not self.reduces:
            return 0
        return max(sum(self.reduce_ps(t) for t in range(2) if self.halves[t] and has[t])
                   for has in self._reducer_patterns())

    def _reducer_patterns(self):
        """Distinct (reduces in tree 0, reduces in tree 1) over chips: a chip reduces where it has children."""
        shape = self.shape
        if not self.node_level:
            chips = range(self.n)
        else:
            N, m = self.cluster.nodes, self.m
            positions = sorted({i for i in (0, 1, m - 2, m - 1) if 0 <= i < m})
            nodes = sorted({a for a in (0, 1, 2, N - 2, N - 1) if 0 <= a < N})
            chips = [a * m + int(self.chain[i]) for a in nodes for i in positions]
        return {tuple(bool(shape.children(t, x)) for t in range(2)) for x in chips}

    def window_period_ps(self) -> int:
        """A chip sends chunk j + W once its chunk j has arrived: W chunks per edge round trip."""
        window = self.params.in_flight
        worst = 0
        for t in range(2):
            if self.nchunks[t] <= window:
                continue
            if not self.node_level:
                edges = self._edges_in(t, range(self.n))
            else:
                edges = [e for a in self._candidate_nodes()
                         for e in self._edges_in(t, range(a * self.m, (a + 1) * self.m))]
            if self.node_level:
                heads = self._head_edges(t)
                edges.extend(heads if not self.uniform_scale_out else _first(heads))
            for child, parent in edges:
                elems = self._per_chunk(t, self._total_up(t, child))
                if elems:
                    route = self.route(child, parent)
                    alpha = sum(lat for _, lat, _ in route)
                    ser = max(serialization_ps(elems * self.eb, rate) for _, _, rate in route)
                    worst = max(worst, -(-(alpha + ser) // window))
        return worst

    # --- total ----------------------------------------------------------------------------------

    def time_ps(self) -> int:
        launch = self.cluster.topology.chip.launch_overhead_ps
        if self.n == 1 or self.total == 0:
            return launch
        fill = max(self.fill_ps(t) for t in range(2))
        return launch + fill + (max(self.nchunks) - 1) * self.period_ps()


def _first(iterable):
    for item in iterable:
        return [item]
    return []


def _virtual(rank, N: int, t: int):
    """Virtual rank (tree 1 is tree 0 on mirrored / shifted ranks) of ``rank`` (int or numpy)."""
    if t == 0:
        return rank
    return N - 1 - rank if N % 2 == 0 else (rank - 1) % N


def _rank(virtual, N: int, t: int):
    if t == 0:
        return virtual
    return N - 1 - virtual if N % 2 == 0 else (virtual + 1) % N


def _real_runs(lo_v, hi_v, N: int, t: int):
    """Rank runs of the virtual rank ranges [lo_v, hi_v] (numpy; empty runs have hi < lo)."""
    if t == 0:
        return [(lo_v, hi_v)]
    if N % 2 == 0:
        return [(N - 1 - hi_v, N - 1 - lo_v)]
    wraps = hi_v == N - 1  # virtual N-1 is rank 0
    return [(lo_v + 1, np.where(wraps, N - 1, hi_v + 1)),
            (np.zeros_like(lo_v), np.where(wraps, 0, -1))]


class _ShapeKey:
    """Shape of node a's subtree in tree t across N nodes: equal keys, equal structure."""

    def __init__(self, N: int, t: int):
        self.N, self.t = N, t

    def __call__(self, a: int):
        v = _virtual(a, self.N, self.t)
        if v == 0:
            return ("root",)
        low = v & -v
        return (low, min(v + low - 1, self.N - 1) - (v - low + 1) + 1)


def analytic_time_ps(cluster: Cluster, collective: Collective, count: int, elem_bytes: int,
                     params: AlgorithmParams) -> int:
    """Closed-form time (ps) of the pipelined double binary tree, launch overhead included."""
    return TreeModel(cluster, collective, count, elem_bytes, params).time_ps()
