# C-level interface of the discrete-event engine (DESIGN.md section 4).
#
# Time is int64 picoseconds.  A Message moves elem_count elements of its source
# chip's buffer (starting at elem_offset) along a path of directed links with
# cut-through FIFO reservation; events are ordered by (time, src chip,
# per-source sequence number).  Schedules (collectives/) subclass Schedule and
# react to deliveries by calling Engine.send / Engine.reduce: no Python object
# is created per event, and the run loop holds no GIL.
#
# Data fidelity: when the engine has a DataPlane, send() snapshots the source
# slice and delivery applies it to the destination buffer (OP_COPY overwrites,
# OP_REDUCE adds) *before* Schedule.deliver runs, so a schedule that forwards
# what it just received sends the updated values.
from libc.stdint cimport int64_t, int32_t, uint64_t
from topologies.routing cimport Router, LinkId, MAX_HOPS, MAX_GROUPS
from collsim.engine.events cimport EventQueue
from collsim.engine.data cimport DataPlane

cdef enum:
    OP_COPY = 0
    OP_REDUCE = 1
    OP_WAKE = 2              # a wake-up (Engine.wake): no link, no data

# Kinds of records in the MPI outbox (see collsim/distributed.py).
cdef enum:
    WIRE_HOP = 0             # the message continues at msg.links[msg.hop] on the receiving rank
    WIRE_SENDER = 1          # the message was delivered at time_ps: run deliver on the sender's rank

# Field order matters: a hop reads the first 64 bytes only (its timing and the
# first 8 links of its path), so the loop costs one cache line per link-event.
ctypedef struct Message:
    int32_t hop              # index of the next link; == nhops once delivered
    int32_t nhops
    int64_t nbytes           # elem_count * element size
    int64_t head_ps          # head arrival time at links[hop]
    int64_t tail_ps          # tail leaves the previous link (send time at hop 0)
    LinkId links[MAX_HOPS]
    # read on delivery
    int64_t src
    int64_t dst
    int64_t seq              # per-source sequence number (tie-break)
    int64_t elem_offset      # first element of the slice moved
    int64_t elem_count       # elements moved
    int64_t payload          # data fidelity: snapshot slot, -1 without
    int64_t tag[4]           # schedule-defined (phase, step, chunk, channel, ...)
    int32_t op               # OP_COPY, OP_REDUCE or OP_WAKE
    char _pad[12]            # to 192 bytes: three whole cache lines in the 64-byte aligned pool

# One outbox record: a header, then payload_nbytes bytes padded to 8 (data fidelity).
ctypedef struct WireRecord:
    int64_t dest             # receiving rank
    int64_t time_ps          # the event's time at the receiver
    int64_t kind             # WIRE_HOP or WIRE_SENDER
    int64_t payload_nbytes   # -1: no payload
    Message msg


cdef class Schedule:
    # True (the default) when deliver() may act for msg.src as well as msg.dst
    # (the tree: a delivered up-chunk frees a slot of the sender's window).
    # Under MPI the engine then also calls deliver on the sender's rank, at the
    # same time and with the same message (no payload).  A schedule whose
    # deliver acts only for msg.dst may set it False to save that traffic.
    cdef public bint sender_reacts
    # Emit the initial sends (called once, before the run loop).
    cdef void start(self, Engine engine) noexcept nogil
    # msg has fully arrived at msg.dst at time t_ps (= tail of its last link).
    cdef void deliver(self, Engine engine, const Message* msg, int64_t t_ps) noexcept nogil
    # Called a few events before msg's delivery: prefetch the state deliver() will read
    # (at scale a schedule's per-chip records miss every cache).  A hint only: it must
    # change nothing, and may be skipped.  The default does nothing.
    cdef void prefetch_delivery(self, const Message* msg) noexcept nogil
    # Called for each chip passed to Engine.call_at_end_of_instant, once every event at
    # time t_ps queued so far has been processed (before time moves on).
    cdef void end_of_instant(self, Engine engine, int64_t chip, int64_t t_ps) noexcept nogil


cdef class Engine:
    cdef readonly Router router
    cdef readonly int64_t elem_bytes      # size of one element (dtype)
    cdef readonly int64_t events          # link-events + deliveries processed
    cdef readonly int64_t link_events     # link reservations only
    cdef readonly int64_t now_ps          # time of the last processed event

    # --- added: engine state (see core.pyx) ---------------------------------
    cdef readonly int64_t reduce_Bps      # chip reduction rate (bytes/s of output)
    cdef readonly DataPlane data          # None outside data fidelity
    cdef readonly int64_t peak_in_flight  # most messages in flight at once
    cdef object _link_free_arr            # numpy owners of the arrays below
    cdef object _reduce_free_arr
    cdef object _next_seq_arr
    cdef int64_t* link_free_ps            # per directed link: end of its last reservation
    cdef int64_t* reduce_free_ps          # per chip: when its reduction unit is free
    cdef int64_t* next_seq                # per chip: next per-source sequence number
    cdef EventQueue queue
    cdef Message* msgs                    # message pool (in-flight messages only)
    cdef int64_t msg_capacity
    cdef int64_t num_msgs                 # slots created so far
    cdef int64_t* free_msgs               # free list of slots
    cdef int64_t num_free_msgs
    cdef void* retired_pools[64]           # pools outgrown during a delivery, freed after it
    cdef int num_retired_pools             # (the pool doubles: 64 growths are beyond any memory)
    cdef bint delivering                   # inside schedule.deliver: a message of the pool is being read
    cdef int64_t ser_nbytes[MAX_GROUPS]   # per link group: last size serialized (-1: none) ...
    cdef int64_t ser_ps[MAX_GROUPS]       # ... and its time: collectives repeat sizes
    cdef int64_t reduce_nbytes_cached
    cdef int64_t reduce_ps_cached
    cdef int seq_bits                     # event tie = (src << seq_bits) | seq
    cdef int error                        # first failure inside nogil code (ERR_*), 0 if none
    cdef int64_t error_arg[3]
    cdef readonly int64_t reduce_end_ps   # latest end of a reduction (makespan_ps covers it)
    cdef int64_t* settling                # chips waiting for the end of the current instant
    cdef int64_t num_settling
    cdef int64_t settling_cap
    # Links whose first reservation send() may make on the spot (see send in core.pyx):
    # [spot_first, spot_end), and for each the number of queued events whose next hop it is.
    cdef int64_t spot_first
    cdef int64_t spot_end
    cdef object _spot_queued_arr
    cdef int32_t* spot_queued
    cdef readonly bint reserve_at_send    # False: every hop goes through the queue (tests compare)
    cdef readonly int64_t reserved_at_send  # link events made by send() without a queued event
    cdef bint sender_reacts               # the running schedule's sender_reacts

    # --- added: distributed execution (collsim/distributed.py drives it) -------
    # Rank r owns a contiguous block of whole nodes (nodes split as evenly as
    # possible, lower ranks one more): their chips, the links those chips send
    # on, the NIC downlinks of its nodes, and the leaf trunks of every leaf
    # whose first NIC is in its nodes.  It sends, reduces and delivers only for
    # its chips; sends from other chips are dropped.
    cdef readonly int rank
    cdef readonly int ranks
    cdef readonly int64_t chip_lo          # owned chips: [chip_lo, chip_hi)
    cdef readonly int64_t chip_hi
    cdef int64_t node_base                 # nodes // ranks
    cdef int64_t node_extra                # nodes % ranks: ranks below it own one more
    cdef char* outbox                      # WireRecords for other ranks, in creation order
    cdef int64_t outbox_len
    cdef int64_t outbox_cap
    cdef readonly int64_t exported         # records sent to other ranks (cumulative per run)
    cdef readonly int64_t imported         # records received

    # Building blocks of run(), reusable by a windowed (MPI) runner:
    # reset all state and let the schedule emit its first sends (GIL held).
    cdef int _begin(self, Schedule schedule) except -1
    # Time of the earliest pending event, INT64_MAX when none.
    cdef int64_t next_event_ps(self) noexcept nogil
    # Process, in (time, src, seq) order, every event earlier than t_end_ps.
    # Returns the number processed; stops early when self.error is set.
    cdef int64_t _process_until(self, Schedule schedule, int64_t t_end_ps) noexcept nogil
    # Where msg goes after a hop that ended at t_next: another rank's outbox (returns 1,
    # the slot is freed), or back into this rank's queue (returns 0; the caller queues it).
    cdef int _hand_on(self, Message* msg, int64_t slot, int64_t t_next) noexcept nogil
    # A delivery made on another rank, seen by the sender's rank (sender_reacts).
    cdef void _deliver_to_sender(self, Schedule schedule, int64_t slot, int64_t t_ps) noexcept nogil
    # Put a never-used slot on the (empty) free list, growing the pool when full;
    # 0, or -1 when out of memory.  (_alloc_slot in core.pyx is the fast path.)
    cdef int _add_slot(self) noexcept nogil
    cdef void _fail(self, int code, int64_t a, int64_t b, int64_t c) noexcept nogil

    # Move elem_count elements [elem_offset, +count) of src's buffer to dst, head
    # leaving src at t_ps (>= now).  On delivery `op` is applied at dst (data
    # fidelity).  Returns the message's per-source sequence number.
    # src == dst is delivered at t_ps without using any link.
    cdef int64_t send(self, int64_t src, int64_t dst, int64_t t_ps,
                      int64_t elem_offset, int64_t elem_count, int32_t op,
                      int64_t tag0, int64_t tag1, int64_t tag2, int64_t tag3) noexcept nogil
    # Reserve chip's reduction unit (FIFO, rate = chip reduce bandwidth) for
    # nbytes of output, not before t_ps; returns the completion time.
    cdef int64_t reduce(self, int64_t chip, int64_t t_ps, int64_t nbytes) noexcept nogil
    # Zero-cost wake-up: schedule.deliver is called at t_ps (>= now) with a
    # message src == dst == chip, op OP_WAKE, no link, no data, the given tags.
    # Ordered like any event by (t_ps, chip, chip's next sequence number).
    cdef int64_t wake(self, int64_t chip, int64_t t_ps,
                      int64_t tag0, int64_t tag1, int64_t tag2, int64_t tag3) noexcept nogil
    # Have schedule.end_of_instant(chip, now) called once every event at the current
    # time has been processed: no event, no message.  A schedule uses it to act on
    # everything a chip received at t in an order of its own choosing (the engine
    # delivers equal-time messages by source chip).  Owned chips only, like send.
    cdef void call_at_end_of_instant(self, int64_t chip) noexcept nogil
    # Run the end_of_instant calls asked for so far.
    cdef void _settle(self, Schedule schedule) noexcept nogil

    # --- added: distributed pieces --------------------------------------------
    cdef bint owns_chip(self, int64_t chip) noexcept nogil
    cdef int rank_of_node(self, int64_t node) noexcept nogil
    # Rank owning a scale-out link (NIC up/down, leaf trunks); scale-up links
    # belong to the rank of the chip that sends on them.
    cdef int rank_of_link(self, int64_t link) noexcept nogil
    # After a hop of msg: the other rank that must see it next, or -1.
    cdef int _next_rank(self, const Message* msg) noexcept nogil
    # Append a record for msg to the outbox; 0, or -1 when out of memory.
    cdef int _export(self, const Message* msg, int dest, int64_t time_ps, int64_t kind) noexcept nogil
    # Queue a received record; 0, or -1 when out of memory.
    cdef int _import(self, const WireRecord* rec, const char* payload) noexcept nogil
    cdef bint _addressed_here(self, const WireRecord* rec) noexcept nogil
