# C-level interface of the hierarchical schedule (collectives/hierarchical.py has
# the algorithm, the data layout, the formulas and when they agree).
# Declares; _hierarchical.pyx implements.
#
# Vocabulary.  A *level* lt is one the algorithm works on: an active scale-up
# level (0 <= lt < n_up) or the nodes (lt == n_up when there are several).  A
# chip's *digit* at lt is (chip // weight[lt]) % size[lt].  A *piece* (j, ch)
# is channel ch's share of chunk j.  A *slot* holds one chip's progress on one
# piece: it is record *key* = ch * slots + j % slots of the chip's channels x
# slots, sid = chip * channels * slots + key.
#
# Message tags: tag0 = phase, tag1 = ring step (tree: 2 * tree + (1 down | 0 up)), tag2 = chunk j,
# tag3 = 2 * key + (1 on the last message of a transfer): the receiver finds its record without dividing.
cimport cython
from libc.stdint cimport int64_t, int32_t, int8_t, uint8_t, uint16_t, uint32_t, uint64_t
from collsim.engine.core cimport Engine, Schedule, Message

# Division by a divisor fixed at construction, by multiplication (dividends
# and divisors below 2**32; see the header).
from collsim.engine.fastdiv cimport (collsim_fastdiv_t, collsim_fastdiv_make, collsim_fastdiv_div,
                                     collsim_fastdiv_mod)

cdef enum:
    KIND_RING_RS = 0
    KIND_RING_AG = 1
    KIND_MESH_RS = 2
    KIND_MESH_AG = 3
    KIND_TREE_AR = 4


# A level lt the algorithm works on (see the vocabulary above).
ctypedef struct Level:
    int64_t size                  # g: units of the level
    int64_t weight                # chips between consecutive units
    int64_t order_off             # ring order in order_unit / order_pos from here; -1: the identity
    int64_t runs                  # strided layout: runs of a part, n_chips // (weight * size)
    collsim_fastdiv_t weight_div  # chip // weight
    collsim_fastdiv_t size_div    # ... % size
    bint mesh                     # direct fabric: a mesh phase, parts go straight to their unit


# A phase: what every delivery of the phase needs, in one place.
ctypedef struct Phase:
    int64_t kind                  # KIND_*
    int64_t level                 # lt
    int64_t size                  # g, its level's size (a delivery reads this table only)
    int64_t last_step             # ring: g - 2, the last step; a part received at an earlier step is sent on
    int64_t lag                   # ring: position v receives part v - lag - step (2 RS, 1 AG)
    int64_t part_scale            # bytes per element of a part's cut: elem_bytes, x runs when strided (set by start)
    int32_t op                    # what its ring messages do: OP_REDUCE for the reduce-scatter kinds, else OP_COPY
    bint reduces                  # arrivals are reduced (RS kinds)
    bint narrows                  # all_reduce, and phase p - 1 is a ring / mesh of level - 1: the range
                                  #   held on entry is the chip's own part of phase p - 1's cut


# What a chip keeps about one slot: 48 bytes, and with its early counters one
# 64-byte line for up to 8 phases (every preset's plan), so a delivery reads
# and writes a single line of slot state.  Narrow types where the range is
# bounded: chip ids < 2**32 (checked at construction), counters and part
# indices below the size of a ring / mesh level, which is at most 2**16
# (checked at construction; a ring across more nodes would take ~10**11
# events).  A phase's fields are reused by the next phase: the tree's outcome
# lives in remaining / last_ps like a ring's, and a piece that waits at a
# chunk gate keeps its ready time in last_ps (its finished phase needs it no
# more).
ctypedef struct Stream:
    int64_t entry_ps         # when the current phase was entered
    int64_t last_ps          # latest readiness so far in the current phase (tree: latest tree finished);
                             #   waiting: when `phase` finished
    int64_t off              # the range held on entering the current phase (all_reduce) or the piece (strided)
    int64_t part_len         # its cut into the phase's parts, made at entry: part x has part_len + (x < part_extra)
                             #   elements (strided: every part is R runs of the piece, part_len = its length)
    uint32_t peer            # ring successor chip in the current phase
    uint16_t remaining       # ring / mesh: transfers still due in the current phase; tree: trees not finished
    uint16_t pos             # own part index in the current phase (< level size)
    uint16_t part_extra      # (< parts)
    int8_t phase             # phase entered, -1 before the piece starts
    uint8_t waiting          # 1: finished `phase` (at last_ps) and waits at the next phase's chunk gate
    uint8_t tree_up[2]       # tree t: reductions arrived from children (at most 2)
    # followed by uint16_t early[n_phases]: transfers arrived before entering phase p


# final: nothing subclasses it, so its own cdef methods are called directly
# (no vtable) and the C compiler may inline them into deliver.
@cython.final
cdef class HierarchicalSchedule(Schedule):
    cdef readonly int64_t n_chips
    cdef readonly int64_t nodes
    cdef readonly int64_t total            # all_reduce: elements; strided: block size B
    cdef readonly bint strided             # reduce_scatter / all_gather block layout
    cdef readonly int64_t chunks           # k
    cdef readonly int64_t channels         # C
    cdef readonly int64_t in_flight        # F
    cdef readonly int64_t slots            # min(2F, k): pieces a chip may see at once per channel
    cdef int64_t chip_slots                # channels * slots: records per chip
    cdef readonly bint bidirectional
    cdef readonly int64_t n_up             # active scale-up levels
    cdef readonly int64_t n_phases
    cdef readonly bint coalesce            # no data plane: one message per strided transfer
    cdef readonly int64_t makespan_ps      # latest piece completion (after run)
    cdef readonly int64_t pieces_done      # (chip, piece) completions (after run)

    cdef Phase* phases                     # [n_phases]
    cdef Level* levels                     # [n_levels]
    cdef int64_t n_levels
    cdef collsim_fastdiv_t slots_div       # j % slots
    cdef int64_t piece_len                 # the k * C pieces: piece x = j * C + ch has piece_len + (x < piece_extra)
    cdef int64_t piece_extra               # elements (split_counts(total, k * C))
    cdef const int64_t[::1] order_unit     # flat: ring position -> unit
    cdef const int64_t[::1] order_pos      # flat: unit -> ring position
    cdef const int64_t[::1] tree_parent    # [t * nodes + node], -1 at the root
    cdef const int64_t[::1] tree_child     # [(t * nodes + node) * 2 + i], -1 for none

    # per slot (index sid): one Stream record each, followed by its n_phases
    # early counters; records are stream_stride bytes apart (64 for up to 8
    # phases, a multiple of 64 in any case) and the block is 64-byte aligned
    cdef char* streams
    cdef int64_t n_streams
    cdef int64_t stream_stride
    # per (chip, channel) and phase: the chunk allowed into the phase next (chunks pass a phase in order)
    cdef uint32_t* ph_next                 # [(chip * channels + ch) * n_phases + p] (chunks < 2**32)
    cdef int64_t n_ph_next

    # geometry
    cdef void _piece(self, int64_t j, int64_t ch, int64_t* off, int64_t* length) noexcept nogil
    cdef inline int64_t _digit(self, int64_t chip, int64_t lt) noexcept nogil
    cdef inline bint _reversed(self, int64_t lt, int64_t ch) noexcept nogil
    cdef inline int64_t _own_part(self, int64_t chip, int64_t lt, int64_t ch) noexcept nogil
    cdef inline int64_t _chip_of_part(self, int64_t chip, int64_t lt, int64_t ch, int64_t x) noexcept nogil
    cdef inline void _range(self, int64_t chip, int64_t ch, int64_t j, int64_t depth,
                     int64_t* off, int64_t* length) noexcept nogil
    cdef inline int64_t _parts(self, int64_t length, int64_t g) noexcept nogil
    cdef inline void _entry_range(self, const Stream* st, int64_t chip, int64_t ch, int64_t j, int64_t p,
                                  int64_t* off, int64_t* length) noexcept nogil
    cdef void _send_part(self, Engine engine, const Stream* st, int64_t src, int64_t dst, int64_t t_ps,
                         int64_t p, int64_t step, int64_t j, int64_t key, int32_t op, int64_t lt,
                         int64_t x) noexcept nogil
    cdef void _send_runs(self, Engine engine, const Stream* st, int64_t src, int64_t dst, int64_t t_ps,
                         int64_t p, int64_t step, int64_t j, int64_t key, int32_t op, int64_t lt,
                         int64_t x) noexcept nogil
    # slot state
    cdef Stream* _stream(self, int64_t sid) noexcept nogil
    cdef int64_t _key(self, int64_t ch, int64_t j) noexcept nogil
    cdef int64_t _channel(self, int64_t key) noexcept nogil
    cdef Stream* _slot(self, int64_t chip, int64_t key) noexcept nogil
    # phases: _enter_* returns the phase's completion time, or -1 while transfers are due
    cdef void _open_stream(self, Stream* st, int64_t p, int64_t entry_ps, int64_t off,
                           int64_t length, int64_t parts, int64_t pos) noexcept nogil
    cdef int64_t _enter_ring(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t key, int64_t p,
                             Stream* st, int64_t entry_ps) noexcept nogil
    cdef void _ring_recv(self, Engine engine, const Phase* ph, int64_t chip, int64_t j, int64_t key, int64_t p,
                         Stream* st, int64_t step, int64_t t_ps) noexcept nogil
    cdef int64_t _enter_mesh(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t key, int64_t p,
                             Stream* st, int64_t entry_ps) noexcept nogil
    cdef void _mesh_recv(self, Engine engine, const Phase* ph, int64_t chip, Stream* st,
                         int64_t t_ps) noexcept nogil
    cdef int64_t _enter_tree(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t key, int64_t p,
                             Stream* st, int64_t entry_ps) noexcept nogil
    cdef void _tree_up_done(self, Engine engine, int64_t chip, int64_t j, int64_t key, int64_t p,
                            Stream* st, int64_t t, int64_t ready_ps) noexcept nogil
    cdef int64_t _tree_recv(self, Engine engine, const Message* msg, int64_t chip, int64_t j, int64_t key,
                            int64_t p, Stream* st, int64_t t_ps) noexcept nogil
    cdef void _deliver_other(self, Engine engine, const Message* msg, const Phase* ph, int64_t chip, int64_t j,
                             int64_t key, int64_t p, Stream* st, int64_t t_ps) noexcept nogil
    # pipeline
    cdef void _run_from(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t p,
                        int64_t t_ps) noexcept nogil
    cdef void _release(self, Engine engine, int64_t chip, int64_t ch, int64_t j, int64_t p,
                       int64_t t_ps) noexcept nogil
    cdef void _finish_piece(self, Engine engine, int64_t chip, int64_t ch, int64_t j, Stream* st,
                            int64_t t_ps) noexcept nogil
