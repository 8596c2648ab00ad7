# C-level interface of the discrete-event engine (DESIGN.md section 4).
#
# Time is int64 picoseconds.  A Message crosses its path of directed links with
# cut-through FIFO reservation; events are ordered by (time, src chip, per-source
# sequence number).  Schedules (collectives/) subclass Schedule and react to
# deliveries by calling Engine.send / Engine.reduce: no Python object is created
# per event, and the run loop holds no GIL.
from libc.stdint cimport int64_t, int32_t
from topologies.routing cimport Router, MAX_HOPS

ctypedef struct Message:
    int64_t src
    int64_t dst
    int64_t nbytes
    int64_t seq              # per-source sequence number (tie-break)
    int64_t head_ps          # head arrival time at links[hop]
    int64_t tail_ps          # tail leaves the previous link (send time at hop 0)
    int64_t tag[4]           # schedule-defined (phase, step, chunk, channel, payload slot...)
    int64_t links[MAX_HOPS]
    int32_t nhops
    int32_t hop              # == nhops once delivered


cdef class Schedule:
    # Emit the initial sends (called once, before the run loop).
    cdef void start(self, Engine engine) noexcept nogil
    # msg has fully arrived at msg.dst at time t_ps (= tail of the last link).
    cdef void deliver(self, Engine engine, const Message* msg, int64_t t_ps) noexcept nogil


cdef class Engine:
    cdef readonly Router router
    cdef readonly int64_t events          # link-events + deliveries processed
    cdef readonly int64_t now_ps          # time of the last processed event

    # Send nbytes from src to dst, head leaving src at t_ps (>= now).  Returns the
    # message's sequence number.  src == dst is delivered at t_ps with no link use.
    cdef int64_t send(self, int64_t src, int64_t dst, int64_t nbytes, int64_t t_ps,
                      int64_t tag0, int64_t tag1, int64_t tag2, int64_t tag3) noexcept nogil
    # Reserve chip's reduction unit (FIFO, rate = reduce bandwidth) for nbytes of
    # output, not before t_ps; returns the completion time.
    cdef int64_t reduce(self, int64_t chip, int64_t t_ps, int64_t nbytes) noexcept nogil
