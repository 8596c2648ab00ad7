# C-level interface of the double-binary-tree schedule (collectives/tree.py has
# the model, the formulas and when analytic == event).  Declares; _tree.pyx
# implements.
#
# Two complementary trees t = 0, 1 each carry one half of the buffer
# (split_counts(count, 2)[t]), cut into chunks that flow up as reductions and
# down as broadcasts.  The tree is never stored: parent, children and subtree
# of a chip are computed from (chips, nodes, chain order) by the functions
# below, in O(1) (plus O(log n) for one loop).
from libc.stdint cimport int64_t, int32_t
from collsim.engine.core cimport Engine, Schedule, Message

cdef enum:
    TREE_ALL_REDUCE = 0
    TREE_REDUCE_SCATTER = 1
    TREE_ALL_GATHER = 2
    MAX_CHILDREN = 3          # chain child + two children in the tree across nodes
    PHASE_UP = 0              # tag1 of a message: reduction / gather towards the root
    PHASE_DOWN = 1            # broadcast / scatter away from the root
    PHASE_MARK = 2            # self-message marking the end of a root's last reduction
    RUN_SCRATCH = 64          # run arrays live on the stack: TreeShape refuses chains needing more


# The shape of both trees, in plain C so that the nogil schedule and the
# Python-level helpers share one implementation.
#
# nodes == 1: the double binary tree spans the chips directly (rank = chip id).
# nodes  > 1: inside node a, tree 0 is a chain through chain[0..m-1] towards its
# head chain[0], tree 1 the reversed chain towards chain[m-1]; the heads of
# tree t (all at the same local chip) form the double binary tree over nodes.
ctypedef struct Shape:
    int64_t chips             # n
    int64_t nodes             # N (scale-out units)
    int64_t per_node          # m = chips per node
    const int64_t* chain      # chain position -> local chip id        (m entries)
    const int64_t* chain_pos  # local chip id -> chain position        (m entries)
    # Chips below chain position i in tree t, as runs of local ids: tree 0 the
    # tail chain[i..m-1], tree 1 the prefix chain[0..i].  Run r of (t, i) is
    # run_lo/run_hi[(t * m + i) * max_runs + r], r < run_n[t * m + i].
    const int64_t* run_lo
    const int64_t* run_hi
    const int64_t* run_n
    int64_t max_runs


# In-order binary tree on 0..N-1 rooted at 0 (the root's single child is the
# largest power of two below N); tree 1 maps rank r to a virtual rank
# (mirror N-1-r for even N, shift r-1 for odd N) so that interior and leaf
# roles swap.
cdef int64_t dtree_parent(int64_t N, int t, int64_t r) noexcept nogil
cdef int dtree_children(int64_t N, int t, int64_t r, int64_t* out) noexcept nogil
# Ranks of r's subtree (r included) as at most two runs of ranks; returns the count.
cdef int dtree_runs(int64_t N, int t, int64_t r, int64_t* lo, int64_t* hi) noexcept nogil

# Chip-level trees (both layouts above).
cdef int64_t tree_parent(const Shape* s, int t, int64_t x) noexcept nogil
cdef int tree_children(const Shape* s, int t, int64_t x, int64_t* out) noexcept nogil
# Chips of x's subtree as runs of chip ids [lo, hi], ascending; returns the count
# (at most max(2, s.max_runs); callers pass arrays of that length).
cdef int tree_subtree_runs(const Shape* s, int t, int64_t x, int64_t* lo, int64_t* hi) noexcept nogil


cdef class TreeShape:
    """Owner of a Shape and its arrays; Python access for the analytic model and tests."""
    cdef Shape shape
    cdef object _chain, _chain_pos, _run_lo, _run_hi, _run_n   # numpy owners


cdef class TreeSchedule(Schedule):
    cdef readonly TreeShape tree
    cdef const Shape* s
    cdef readonly int kind                # TREE_ALL_REDUCE / _REDUCE_SCATTER / _ALL_GATHER
    cdef readonly int64_t n
    cdef readonly int64_t count           # elements per chip (effective count)
    cdef readonly int64_t elem_bytes
    cdef readonly int64_t chunks          # nominal chunks per half (params.chunk_count)
    cdef readonly int64_t window          # up-chunks a chip may have undelivered (params.in_flight)
    cdef int64_t half_off[2]              # tree t carries elements [half_off, half_off + half_len)
    cdef int64_t half_len[2]
    cdef int64_t nchunks[2]               # non-empty chunks of half t: min(chunks, half_len)
    cdef int64_t chunk_base[2]            # split_counts(half_len, chunks): base ...
    cdef int64_t chunk_extra[2]           # ... and how many chunks hold one more element
    cdef int64_t block_base               # blocks: split_counts(count, n)
    cdef int64_t block_extra
    cdef int64_t run_cap                  # length of run scratch arrays
    # Per (tree, chip) counters: O(chips) memory, no per-message state.
    cdef int64_t[:, :, ::1] recv          # elements received from child slot i (cumulative)
    cdef int64_t[:, ::1] next_up          # next chunk to reduce/forward up (or start down at the root)
    cdef int64_t[:, ::1] up_done          # elements of this chip's own up-sends delivered

    cdef int64_t _chunk_start(self, int t, int64_t j) noexcept nogil
    cdef int64_t _chunk_of(self, int t, int64_t elem) noexcept nogil
    cdef int64_t _block_start(self, int64_t x) noexcept nogil
    cdef int64_t _cum_up(self, int t, int64_t x, int64_t j) noexcept nogil
    cdef int64_t _next_up_elem(self, int t, int64_t x, int64_t elem) noexcept nogil
    cdef int _slot(self, int t, int64_t parent, int64_t child) noexcept nogil
    # Send [a, b) from src to dst, restricted to the blocks of owner's subtree
    # when owner >= 0 (one message per run); returns the number of messages.
    cdef int _send_slice(self, Engine engine, int t, int64_t owner, int64_t src, int64_t dst, int64_t t_ps,
                         int64_t a, int64_t b, int32_t op, int phase, int64_t j, int64_t slot) noexcept nogil
    cdef void _advance(self, Engine engine, int t, int64_t x, int64_t t_ps) noexcept nogil
    cdef int _send_down(self, Engine engine, int t, int64_t x, int64_t t_ps, int64_t a, int64_t b) noexcept nogil
