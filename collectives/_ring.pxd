# C-level interface of the ring schedule (collectives/ring.py has the model and
# the formulas).  Declares; _ring.pyx implements.
#
# Positions 0..n-1 walk the ring order (ring_order(cluster)); channel c runs
# forward (position p sends to p+1) or, when bidirectional and c is odd,
# backward.  Every block b = split_counts(count, n)[b] is cut into one piece
# per channel (split_counts(|b|, C)); a piece travels the ring as one chain of
# messages: step g of channel c from position p carries the piece of block
# order[p - dir_c * (g + sigma)].  No list of sends exists: every send is
# computed from (position, channel, step) when its predecessor arrives.
cimport cython
from libc.stdint cimport int64_t
from collsim.engine.core cimport Engine, Schedule, Message

cdef enum:
    RING_ALL_REDUCE = 0
    RING_REDUCE_SCATTER = 1
    RING_ALL_GATHER = 2


# What a chip keeps per channel (see the held arrivals below), in one 24-byte
# record rather than three arrays: a delivery reads and writes one place.
ctypedef struct Lane:
    int64_t last_send_ps          # time of the channel's latest send from the chip
    int64_t held_ps               # arrival held until the end of its instant, -1 when empty ...
    int64_t held_step             # ... and its step


# final: nothing subclasses it, so its own cdef methods are called directly
# (no vtable) and the C compiler may inline them into deliver.
@cython.final
cdef class RingSchedule(Schedule):
    cdef readonly int64_t n               # chips on the ring
    cdef readonly int64_t count           # elements per chip (effective count)
    cdef readonly int64_t channels        # channels that carry data (<= params.channels)
    cdef readonly int64_t steps           # sends per piece chain: 2(n-1) all-reduce, n-1 halves
    cdef readonly int64_t reduce_steps    # arrivals of steps g < reduce_steps are reduced
    cdef readonly int kind                # RING_ALL_REDUCE / _REDUCE_SCATTER / _ALL_GATHER
    cdef int64_t sigma                    # 1 when the chain starts with the successor's block (RS/AR), 0 for AG
    cdef int64_t block_base               # count // n
    cdef int64_t block_extra              # count % n: blocks 0..extra-1 hold one more element
    # A block has one of two sizes, base + 1 (block < extra) or base, so its cut
    # into channel pieces is one of two: index [1] for the larger blocks, [0]
    # for the others.  Piece c of a block of size s has s // C + (c < s % C)
    # elements; these are that quotient and remainder.
    cdef int64_t piece_q[2]
    cdef int64_t piece_rem[2]
    cdef const int64_t[::1] order         # position -> chip
    cdef const int64_t[::1] position      # chip -> position
    cdef const int64_t[::1] direction     # channel -> +1 (forward) or -1 (backward)
    # With channels > 1 a chip reduces its arrivals in order of (arrival time,
    # channel).  Deliveries at equal times come in source-chip order, which
    # would make timings depend on chip numbering; so an arrival at t is held
    # (Lane.held_ps / held_step: a channel's arrivals are >= 1 ps apart) and
    # reduced at the end of the instant t (Engine.call_at_end_of_instant), after
    # every delivery at t.  The reduction itself still starts at t.
    # A channel's sends leave a chip in step order, as in a real ring's per-channel
    # queue: a copy may not overtake an earlier step still being reduced.  (Lane.last_send_ps.)
    cdef Lane* lanes                      # [chip * channels + c]
    cdef int64_t[::1] settle_ps           # chip -> the instant whose end it asked for, -1 before any

    cdef int64_t _block_at(self, int64_t p, int64_t c, int64_t g) noexcept nogil
    cdef void _piece(self, int64_t block, int64_t c, int64_t* offset, int64_t* count) noexcept nogil
    cdef void _send_step(self, Engine engine, int64_t p, int64_t c, int64_t g, int64_t t_ps) noexcept nogil
    cdef void _reduce_and_forward(self, Engine engine, int64_t p, int64_t c, int64_t g, int64_t t_ps) noexcept nogil
    cdef void _hold(self, Engine engine, int64_t p, int64_t c, int64_t g, int64_t t_ps) noexcept nogil


# Makespan (ps) of the symmetric ring model of collectives/ring.py, or -1 when
# out of memory: every chip identical; channel c makes `steps` sends of s_ps[c]
# ps over hops of latency alpha_ps, the first `reduce_steps` arrivals reduced
# in r_ps[c] ps; channels with equal link_group[c] (0 or 1) share one FIFO link
# per chip; all channels share the chip's FIFO reduction unit.
cdef int64_t symmetric_ring_ps(int64_t steps, int64_t reduce_steps, int64_t alpha_ps,
                               const int64_t* s_ps, const int64_t* r_ps, const int64_t* link_group,
                               int64_t channels) noexcept nogil
