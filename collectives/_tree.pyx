"""Double binary tree collectives in C: the tree shape and the self-timed event schedule.

See collectives/tree.py for the algorithm, the cost model and when the two agree.

Tree shape
----------
``dtree_*``: NCCL-style double binary tree on ranks 0..N-1.  Tree 0 is the
in-order binary tree rooted at 0: rank r with lowest set bit b has children
r - b/2 and r + h (h the largest power of two <= b/2 with r + h < N), and its
subtree is the rank range [r - b + 1, min(r + b - 1, N - 1)]; the root's
single child is the largest power of two below N.  Tree 1 is the same tree on
virtual ranks, mirrored (v = N-1-r) for even N and shifted (v = r-1 mod N) for
odd N, so that the odd ranks (leaves of tree 0) are its interior vertices.

``tree_*``: the chip-level trees of a cluster (``Shape``): the double binary
tree over the chips when there is one node, else a chain inside each node and
the double binary tree over nodes between chain heads (see _tree.pxd).

Schedule
--------
Tree t carries elements [half_off[t], + half_len[t]) cut into nchunks[t]
chunks (split_counts).  Each (tree, chip) has a counter ``next_up``: the next
chunk it forwards towards the root.  It forwards chunk j when

* every child's part of chunk j has arrived (``recv``, cumulative elements per
  child slot, compared with what the child's up-set holds up to chunk j), and
* (not at the root) its own chunk j - window has been delivered (``up_done``):
  at most ``window`` chunks per chip and tree in flight, which bounds the
  engine's memory and keeps one tree from flooding a link the other needs.

Forwarding chunk j: all-reduce / reduce-scatter reduce it first
(``engine.reduce`` of the chunk's bytes, only at chips with children) and send
it OP_REDUCE to the parent; all-gather sends the chip's subtree blocks in the
chunk, OP_COPY.  The root instead starts the down phase at that time: chunk j
OP_COPY to every child (reduce-scatter: only the blocks of the child's
subtree), and every chip forwards what it receives from its parent at once the
same way.  A root whose reduction ends with nothing to send marks the end with
a message to itself (no link, no data change) so the makespan includes it.
Leaves start at t = 0, so chunks flow one behind another and the up and down
phases overlap chunk by chunk.

Messages carry tag = (tree, phase, chunk, child slot).  State is O(chips):
(2 x 3 + 2 x 2) int64 per chip; nothing is allocated per message.
"""
import numpy as np

from libc.stdint cimport int64_t, int32_t

from collsim.engine.core cimport OP_COPY, OP_REDUCE
from collsim.engine.intmath cimport int_max as _max, int_min as _min

KIND_CODES = {
    "all_reduce": TREE_ALL_REDUCE,
    "reduce_scatter": TREE_REDUCE_SCATTER,
    "all_gather": TREE_ALL_GATHER,
}
"""Collective name -> the ``kind`` code TreeSchedule takes."""


# --- in-order binary tree on 0..N-1 ----------------------------------------------


cdef inline int64_t _root_child(int64_t N) noexcept nogil:
    """Largest power of two below N (N >= 2): the root's only child."""
    cdef int64_t p = 1
    while 2 * p < N:
        p *= 2
    return p


cdef inline int64_t _bt_parent(int64_t N, int64_t v) noexcept nogil:
    cdef int64_t b
    if v == 0:
        return -1
    b = v & (-v)
    # v sits one level below the rank that has lowest bit 2b: v + b when that
    # exists (bit 2b of v clear), else v - b
    if (v & (2 * b)) == 0 and v + b < N:
        return v + b
    return v - b


cdef inline int _bt_children(int64_t N, int64_t v, int64_t* out) noexcept nogil:
    cdef int64_t h
    if N <= 1:
        return 0
    if v == 0:
        out[0] = _root_child(N)
        return 1
    h = (v & (-v)) >> 1
    if h == 0:
        return 0
    out[0] = v - h
    while h > 0 and v + h >= N:
        h >>= 1
    if h == 0:
        return 1
    out[1] = v + h
    return 2


cdef inline void _bt_range(int64_t N, int64_t v, int64_t* lo, int64_t* hi) noexcept nogil:
    cdef int64_t b
    if v == 0:
        lo[0] = 0
        hi[0] = N - 1
        return
    b = v & (-v)
    lo[0] = v - b + 1
    hi[0] = _min(v + b - 1, N - 1)


cdef inline int64_t _to_virtual(int64_t N, int t, int64_t r) noexcept nogil:
    if t == 0:
        return r
    if N % 2 == 0:
        return N - 1 - r
    return r - 1 if r > 0 else N - 1


cdef inline int64_t _from_virtual(int64_t N, int t, int64_t v) noexcept nogil:
    if t == 0:
        return v
    if N % 2 == 0:
        return N - 1 - v
    return v + 1 if v + 1 < N else 0


cdef int64_t dtree_parent(int64_t N, int t, int64_t r) noexcept nogil:
    if N <= 1:
        return -1
    cdef int64_t p = _bt_parent(N, _to_virtual(N, t, r))
    return -1 if p < 0 else _from_virtual(N, t, p)


cdef int dtree_children(int64_t N, int t, int64_t r, int64_t* out) noexcept nogil:
    cdef int k = _bt_children(N, _to_virtual(N, t, r), out)
    cdef int i
    for i in range(k):
        out[i] = _from_virtual(N, t, out[i])
    return k


cdef int dtree_runs(int64_t N, int t, int64_t r, int64_t* lo, int64_t* hi) noexcept nogil:
    cdef int64_t vlo, vhi
    if N <= 1:
        lo[0] = 0
        hi[0] = 0
        return 1
    _bt_range(N, _to_virtual(N, t, r), &vlo, &vhi)
    if t == 0:
        lo[0] = vlo
        hi[0] = vhi
        return 1
    if N % 2 == 0:
        lo[0] = N - 1 - vhi
        hi[0] = N - 1 - vlo
        return 1
    if vhi + 1 < N:
        lo[0] = vlo + 1
        hi[0] = vhi + 1
        return 1
    # virtual N-1 is rank 0: the range wraps
    lo[0] = 0
    hi[0] = 0
    if vlo + 1 <= N - 1:
        lo[1] = vlo + 1
        hi[1] = N - 1
        return 2
    return 1


# --- chip-level trees ----------------------------------------------------------------


cdef inline int64_t _head(const Shape* s, int t) noexcept nogil:
    return 0 if t == 0 else s.per_node - 1


cdef inline int64_t _tail(const Shape* s, int t) noexcept nogil:
    return s.per_node - 1 if t == 0 else 0


cdef int64_t tree_parent(const Shape* s, int t, int64_t x) noexcept nogil:
    if s.nodes == 1:
        return dtree_parent(s.chips, t, x)
    cdef int64_t m = s.per_node
    cdef int64_t a = x // m
    cdef int64_t i = s.chain_pos[x - a * m]
    cdef int64_t head = _head(s, t)
    if i != head:
        return a * m + s.chain[i - 1 if t == 0 else i + 1]
    cdef int64_t pa = dtree_parent(s.nodes, t, a)
    return -1 if pa < 0 else pa * m + s.chain[head]


cdef int tree_children(const Shape* s, int t, int64_t x, int64_t* out) noexcept nogil:
    if s.nodes == 1:
        return dtree_children(s.chips, t, x, out)
    cdef int64_t m = s.per_node
    cdef int64_t a = x // m
    cdef int64_t i = s.chain_pos[x - a * m]
    cdef int64_t head = _head(s, t)
    cdef int64_t remote[2]
    cdef int cnt = 0, k, q
    if i != _tail(s, t):
        out[0] = a * m + s.chain[i + 1 if t == 0 else i - 1]
        cnt = 1
    if i == head:
        k = dtree_children(s.nodes, t, a, remote)
        for q in range(k):
            out[cnt] = remote[q] * m + s.chain[head]
            cnt += 1
    return cnt


cdef int tree_subtree_runs(const Shape* s, int t, int64_t x, int64_t* lo, int64_t* hi) noexcept nogil:
    if s.nodes == 1:
        return dtree_runs(s.chips, t, x, lo, hi)
    cdef int64_t m = s.per_node
    cdef int64_t a = x // m
    cdef int64_t i = s.chain_pos[x - a * m]
    cdef int k, q
    cdef int64_t base
    if i == _head(s, t):
        # the head's subtree is its whole node plus the nodes below it
        k = dtree_runs(s.nodes, t, a, lo, hi)
        for q in range(k):
            lo[q] = lo[q] * m
            hi[q] = hi[q] * m + m - 1
        return k
    base = (t * m + i) * s.max_runs
    k = <int> s.run_n[t * m + i]
    for q in range(k):
        lo[q] = a * m + s.run_lo[base + q]
        hi[q] = a * m + s.run_hi[base + q]
    return k


def _chain_runs(chain):
    """Runs of local ids of every chain tail (tree 0) and prefix (tree 1), shape (2, m, R)."""
    m = chain.shape[0]
    member = np.zeros(m + 2, dtype=bool)   # padded: member[id + 1]
    per = [[None] * m, [None] * m]
    for t in range(2):
        member[:] = False
        for step in range(m):
            i = m - 1 - step if t == 0 else step
            member[chain[i] + 1] = True
            inside = member[1 : m + 1]
            starts = np.flatnonzero(inside & ~member[0:m])
            ends = np.flatnonzero(inside & ~member[2 : m + 2])
            per[t][i] = (starts, ends)
    width = max(1, max(len(per[t][i][0]) for t in range(2) for i in range(m)))
    lo = np.zeros((2, m, width), dtype=np.int64)
    hi = np.zeros((2, m, width), dtype=np.int64)
    n = np.zeros((2, m), dtype=np.int64)
    for t in range(2):
        for i in range(m):
            starts, ends = per[t][i]
            lo[t, i, : len(starts)] = starts
            hi[t, i, : len(ends)] = ends
            n[t, i] = len(starts)
    return lo, hi, n, width


cdef inline const int64_t* _ptr(object arr):
    cdef const int64_t[::1] view = arr
    return &view[0]


cdef class TreeShape:
    """``TreeShape(chips, nodes, chain)``: the two trees of a cluster.

    ``chain``: chain position -> local chip id (a permutation of 0..m-1 with
    m = chips // nodes); ignored when nodes == 1.
    """

    def __init__(self, int64_t chips, int64_t nodes, chain=None):
        if chips < 1 or nodes < 1 or chips % nodes != 0:
            raise ValueError(f"need chips >= 1 and a whole number of chips per node, got {chips} / {nodes}")
        m = chips // nodes
        if nodes == 1 or chain is None:
            chain = np.arange(m, dtype=np.int64)
        chain_arr = np.ascontiguousarray(chain, dtype=np.int64)
        if chain_arr.shape[0] != m or np.unique(chain_arr).shape[0] != m or chain_arr.min() != 0 or chain_arr.max() != m - 1:
            raise ValueError(f"chain must be a permutation of 0..{m - 1}")
        pos = np.empty(m, dtype=np.int64)
        pos[chain_arr] = np.arange(m, dtype=np.int64)
        if nodes > 1:
            lo, hi, n, width = _chain_runs(chain_arr)
        else:
            lo = hi = np.zeros((2, m, 1), dtype=np.int64)
            n, width = np.zeros((2, m), dtype=np.int64), 1
        if width > RUN_SCRATCH:
            raise ValueError(f"chain tails split into {width} runs of chip ids (at most {RUN_SCRATCH} supported)")
        self._chain, self._chain_pos = chain_arr, pos
        self._run_lo, self._run_hi, self._run_n = lo.ravel(), hi.ravel(), n.ravel()
        self.shape.chips = chips
        self.shape.nodes = nodes
        self.shape.per_node = m
        self.shape.chain = _ptr(self._chain)
        self.shape.chain_pos = _ptr(self._chain_pos)
        self.shape.run_lo = _ptr(self._run_lo)
        self.shape.run_hi = _ptr(self._run_hi)
        self.shape.run_n = _ptr(self._run_n)
        self.shape.max_runs = width

    @property
    def chips(self):
        return self.shape.chips

    @property
    def nodes(self):
        return self.shape.nodes

    @property
    def chain(self):
        return self._chain.copy()

    def _check(self, int t, int64_t x):
        if t not in (0, 1) or not 0 <= x < self.shape.chips:
            raise IndexError(f"tree {t}, chip {x} out of range")

    def parent(self, int t, int64_t x):
        """Parent of chip x in tree t (-1 at the root)."""
        self._check(t, x)
        return tree_parent(&self.shape, t, x)

    def children(self, int t, int64_t x):
        """Children of chip x in tree t, in the order the schedule sends to them."""
        cdef int64_t out[MAX_CHILDREN]
        self._check(t, x)
        cdef int k = tree_children(&self.shape, t, x, out)
        return [out[i] for i in range(k)]

    def subtree_runs(self, int t, int64_t x):
        """Chips of x's subtree in tree t as inclusive runs [(lo, hi), ...], ascending."""
        cdef int64_t lo[RUN_SCRATCH]
        cdef int64_t hi[RUN_SCRATCH]
        self._check(t, x)
        cdef int k = tree_subtree_runs(&self.shape, t, x, lo, hi)
        return [(lo[i], hi[i]) for i in range(k)]


def dtree(int64_t N, int t, int64_t r):
    """(parent, children, subtree runs) of rank r in tree t of the double binary tree on N ranks."""
    cdef int64_t out[2]
    cdef int64_t lo[2]
    cdef int64_t hi[2]
    if t not in (0, 1) or not 0 <= r < N:
        raise IndexError(f"tree {t}, rank {r} out of range for N = {N}")
    cdef int k = dtree_children(N, t, r, out)
    cdef int nr = dtree_runs(N, t, r, lo, hi)
    return dtree_parent(N, t, r), [out[i] for i in range(k)], [(lo[i], hi[i]) for i in range(nr)]


# --- the schedule ----------------------------------------------------------------------


cdef class TreeSchedule(Schedule):
    """``TreeSchedule(tree, kind, count, elem_bytes, chunks, window)``.

    ``tree``: a TreeShape; ``kind``: TREE_ALL_REDUCE (0), TREE_REDUCE_SCATTER
    (1), TREE_ALL_GATHER (2); ``count``: elements per chip after
    ``effective_count``; ``chunks``: chunks per half; ``window``: up-chunks a
    chip may have in flight per tree.
    """

    def __init__(self, TreeShape tree not None, int kind, int64_t count, int64_t elem_bytes, int64_t chunks,
                 int64_t window):
        if kind not in (TREE_ALL_REDUCE, TREE_REDUCE_SCATTER, TREE_ALL_GATHER):
            raise ValueError(f"unknown tree collective code {kind}")
        if count < 0 or elem_bytes < 1 or chunks < 1 or window < 1:
            raise ValueError(f"need count >= 0, elem_bytes, chunks, window >= 1; got {count}, {elem_bytes}, {chunks}, {window}")
        cdef int t
        n = tree.shape.chips
        self.tree = tree
        self.s = &tree.shape
        self.kind = kind
        self.n = n
        self.count = count
        self.elem_bytes = elem_bytes
        self.chunks = chunks
        self.window = window
        self.half_len[0] = count - count // 2
        self.half_len[1] = count // 2
        self.half_off[0] = 0
        self.half_off[1] = self.half_len[0]
        for t in range(2):
            self.nchunks[t] = _min(chunks, self.half_len[t])
            self.chunk_base[t] = self.half_len[t] // chunks
            self.chunk_extra[t] = self.half_len[t] % chunks
        self.block_base = count // n
        self.block_extra = count % n
        self.recv = np.zeros((2, n, MAX_CHILDREN), dtype=np.int64)
        self.next_up = np.zeros((2, n), dtype=np.int64)
        self.up_done = np.zeros((2, n), dtype=np.int64)

    def state_bytes(self):
        """Bytes of per-chip schedule state."""
        return 8 * (2 * self.n * MAX_CHILDREN + 4 * self.n)

    # --- element arithmetic ------------------------------------------------------------

    cdef int64_t _chunk_start(self, int t, int64_t j) noexcept nogil:
        return self.half_off[t] + j * self.chunk_base[t] + _min(j, self.chunk_extra[t])

    cdef int64_t _chunk_of(self, int t, int64_t elem) noexcept nogil:
        cdef int64_t rel = elem - self.half_off[t]
        cdef int64_t big = self.chunk_base[t] + 1
        if rel < self.chunk_extra[t] * big:
            return rel // big
        return self.chunk_extra[t] + (rel - self.chunk_extra[t] * big) // self.chunk_base[t]

    cdef int64_t _block_start(self, int64_t x) noexcept nogil:
        return x * self.block_base + _min(x, self.block_extra)

    cdef int64_t _cum_up(self, int t, int64_t x, int64_t j) noexcept nogil:
        """Elements of x's up-set in chunks 0..j of tree t (0 for j < 0)."""
        cdef int64_t lo[RUN_SCRATCH]
        cdef int64_t hi[RUN_SCRATCH]
        cdef int64_t end, total = 0, a, b
        cdef int k, q
        if j < 0:
            return 0
        end = self._chunk_start(t, j + 1)
        if self.kind != TREE_ALL_GATHER:
            return end - self.half_off[t]
        # all-gather: x forwards the blocks of its subtree
        k = tree_subtree_runs(self.s, t, x, lo, hi)
        for q in range(k):
            a = _max(self._block_start(lo[q]), self.half_off[t])
            b = _min(self._block_start(hi[q] + 1), end)
            if b > a:
                total += b - a
        return total

    cdef int64_t _next_up_elem(self, int t, int64_t x, int64_t elem) noexcept nogil:
        """First element >= elem of x's all-gather up-set in half t, -1 if none."""
        cdef int64_t lo[RUN_SCRATCH]
        cdef int64_t hi[RUN_SCRATCH]
        cdef int64_t a, b, best = -1, end = self.half_off[t] + self.half_len[t]
        cdef int k = tree_subtree_runs(self.s, t, x, lo, hi), q
        for q in range(k):
            a = _max(self._block_start(lo[q]), elem)
            b = _min(self._block_start(hi[q] + 1), end)
            if b > a and (best < 0 or a < best):
                best = a
        return best

    cdef int _slot(self, int t, int64_t parent, int64_t child) noexcept nogil:
        cdef int64_t out[MAX_CHILDREN]
        cdef int k = tree_children(self.s, t, parent, out), i
        for i in range(k):
            if out[i] == child:
                return i
        return 0

    # --- sends ---------------------------------------------------------------------------

    cdef int _send_slice(self, Engine engine, int t, int64_t owner, int64_t src, int64_t dst, int64_t t_ps,
                         int64_t a, int64_t b, int32_t op, int phase, int64_t j, int64_t slot) noexcept nogil:
        cdef int64_t lo[RUN_SCRATCH]
        cdef int64_t hi[RUN_SCRATCH]
        cdef int64_t ea, eb
        cdef int k, q, sent = 0
        if owner < 0:
            if b <= a:
                return 0
            engine.send(src, dst, t_ps, a, b - a, op, t, phase, j, slot)
            return 1
        k = tree_subtree_runs(self.s, t, owner, lo, hi)
        for q in range(k):
            ea = _max(self._block_start(lo[q]), a)
            eb = _min(self._block_start(hi[q] + 1), b)
            if eb > ea:
                engine.send(src, dst, t_ps, ea, eb - ea, op, t, phase, j, slot)
                sent += 1
        return sent

    cdef int _send_down(self, Engine engine, int t, int64_t x, int64_t t_ps, int64_t a, int64_t b) noexcept nogil:
        cdef int64_t ch[MAX_CHILDREN]
        cdef int k = tree_children(self.s, t, x, ch), i, sent = 0
        for i in range(k):
            sent += self._send_slice(engine, t, ch[i] if self.kind == TREE_REDUCE_SCATTER else -1, x, ch[i], t_ps,
                                     a, b, OP_COPY, PHASE_DOWN, 0, i)
        return sent

    cdef void _advance(self, Engine engine, int t, int64_t x, int64_t t_ps) noexcept nogil:
        """Forward every chunk x can forward now (see the module docstring)."""
        cdef int64_t ch[MAX_CHILDREN]
        cdef int64_t p = tree_parent(self.s, t, x)
        cdef int k = tree_children(self.s, t, x, ch), i
        cdef int64_t j, a, b, e, ready_ps
        cdef bint reduced
        while self.next_up[t, x] < self.nchunks[t]:
            j = self.next_up[t, x]
            if self.kind == TREE_ALL_GATHER and self._cum_up(t, x, j) == self._cum_up(t, x, j - 1):
                # nothing of x's subtree in chunk j (nor in its children's): skip to the next chunk that has some
                e = self._next_up_elem(t, x, self._chunk_start(t, j))
                self.next_up[t, x] = self.nchunks[t] if e < 0 else self._chunk_of(t, e)
                continue
            for i in range(k):
                if self.recv[t, x, i] < self._cum_up(t, ch[i], j):
                    return
            if p >= 0 and j >= self.window and self.up_done[t, x] < self._cum_up(t, x, j - self.window):
                return
            a = self._chunk_start(t, j)
            b = self._chunk_start(t, j + 1)
            ready_ps = t_ps
            reduced = self.kind != TREE_ALL_GATHER and k > 0
            if reduced:
                ready_ps = engine.reduce(x, t_ps, (b - a) * self.elem_bytes)
            if p >= 0:
                self._send_slice(engine, t, x if self.kind == TREE_ALL_GATHER else -1, x, p, ready_ps, a, b,
                                 OP_COPY if self.kind == TREE_ALL_GATHER else OP_REDUCE, PHASE_UP, j,
                                 self._slot(t, p, x))
            elif self._send_down(engine, t, x, ready_ps, a, b) == 0 and reduced:
                engine.send(x, x, ready_ps, a, b - a, OP_COPY, t, PHASE_MARK, j, 0)
            self.next_up[t, x] = j + 1

    cdef void start(self, Engine engine) noexcept nogil:
        cdef int t
        cdef int64_t x
        cdef int i
        for t in range(2):
            for x in range(self.n):
                for i in range(MAX_CHILDREN):
                    self.recv[t, x, i] = 0
                self.next_up[t, x] = 0
                self.up_done[t, x] = 0
        for t in range(2):
            for x in range(self.n):
                self._advance(engine, t, x, 0)

    cdef void deliver(self, Engine engine, const Message* msg, int64_t t_ps) noexcept nogil:
        cdef int t = <int> msg.tag[0]
        cdef int64_t phase = msg.tag[1]
        if phase == PHASE_UP:
            self.recv[t, msg.dst, msg.tag[3]] += msg.elem_count
            self.up_done[t, msg.src] += msg.elem_count
            self._advance(engine, t, msg.dst, t_ps)
            self._advance(engine, t, msg.src, t_ps)
        elif phase == PHASE_DOWN:
            self._send_down(engine, t, msg.dst, t_ps, msg.elem_offset, msg.elem_offset + msg.elem_count)
