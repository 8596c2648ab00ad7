"""The discrete-event engine core (DESIGN.md section 4).

Model
-----
The only per-link state is ``link_free_ps[link]``: when the link's last
reservation ends.  A message of b bytes on the path l_1..l_h is processed as
one event per hop, at the time its head reaches the link::

    start_k = max(head_k, free_k)                  # FIFO: wait for the link
    end_k   = max(start_k + ser_k(b), tail_{k-1})  # cut-through: not before upstream
    free_k  = end_k
    head_{k+1} = start_k + lat_k ;  tail_k = end_k + lat_k   (tail_0 = send time)

followed by a delivery event at tail_h, which applies the payload (data
fidelity) and calls ``schedule.deliver``.  A send at the current time whose
first link nothing else can take at that instant reserves it at once, without
a queued event (``reserve_at_send``; see "reserving a first link at send
time" below): the same reservation, one queue round trip fewer.  ``events``
and ``link_events`` count it all the same (``reserved_at_send`` says how many).  ser_k(b) = ceil(b * 1e12 / rate_k)
ps in 128-bit integer arithmetic (``timing.h``), equal to
``collsim.units.serialization_ps``.  A chip's reduction unit is a FIFO server
too (``reduce``).

Events live in a queue of C structs (``events.pyx``: equal-time batches behind
a radix heap over time) keyed (time, src chip, per-source seq), the last two
packed into one word ``src << seq_bits | seq``: a message has one pending
event at a time and (src, seq) is unique, so the order is total and runs are
bit-for-bit repeatable.  A hop replaces the message's event at the top of the
queue.  Messages live in a growable C pool with a free list, so memory follows
what is in flight, never the whole schedule.  Per chip: the reduction unit's
free time and the next sequence number.  Nothing in the loop touches a Python
object; it runs ``with nogil``.

Schedules react to deliveries by calling ``send`` / ``reduce`` from inside
``deliver`` (re-entrant pushes into the queue are fine; ``deliver`` receives a
copy of the message, so the pool may grow meanwhile).  Errors raised by a
schedule's misuse inside nogil code (sending in the past, bad chip, slice out
of the buffer, out of memory) are recorded in ``error`` and the loop stops;
``run`` then raises.

Makespan and wake-ups
---------------------
``makespan_ps`` is the later of the last event and the end of the last
reduction (``reduce_end_ps``), so a schedule need not turn its final
reduction into an event.  (``run`` still returns ``now_ps``, the time of the
last event.)  ``wake(chip, t, tags)`` queues a zero-cost wake-up: at t the
schedule's ``deliver`` runs with a message src == dst == chip, op OP_WAKE,
no link and no data, ordered like any event by (t, chip, chip's next seq).
``call_at_end_of_instant(chip)`` costs no event: the loop calls
``schedule.end_of_instant(chip, t)`` once every event at the current time t
has been processed (the next event is later, or beyond the window), and then
processes whatever those calls sent at t.

Distributed execution (DESIGN.md section 7; collsim/distributed.py drives it)
-------------------------------------------------------------------------------
``Engine(..., rank=r, ranks=R)`` simulates the chips of rank r: a contiguous
block of whole nodes (nodes split as evenly as possible, lower ranks one
more).  A rank owns its chips' state, every link its chips send on, the NIC
downlinks of its nodes, and the leaf trunks of the leaves whose first NIC is
in its nodes.  ``send``, ``wake`` and ``reduce`` act only for owned chips:
a schedule may run its start() over every chip, the other ranks' sends are
dropped (their owners make them).  A data plane holds the owned chips only
(row k = chip chip_lo + k).

Only the scale-out network joins nodes, so a message can leave a rank only
when its next link is a scale-out link owned elsewhere.  ``_process_until``
then moves it into the outbox (``_export``) instead of re-queueing it; the
owner re-inserts it (``_import``) with the same (time, src, seq) key.  A
delivery happens on the receiving chip's rank; when the schedule's
``sender_reacts`` is set and the sender lives elsewhere, a WIRE_SENDER copy
goes to the sender's rank, which runs ``deliver`` there at the same key
(without payload, not counted as an event).  Per-source sequence numbers are
per chip, so keys, event order and every result are identical for any rank
count.  An exported event lies at least one scale-out link latency after the
event that created it: that is the lookahead of the conservative windows
(``_process_until(schedule, t0 + lookahead)`` is safe once every rank agrees
on t0, the earliest pending event anywhere).  With ranks == 1 none of this
runs.
"""
import numpy as np

from libc.stdint cimport int64_t, int32_t, uint64_t, INT64_MAX
from libc.stdlib cimport malloc, realloc, free

cdef extern from "hugepages.h" nogil:
    void* collsim_alloc_lines(size_t nbytes)
from libc.string cimport memcpy, memset
from cython.view cimport array as cvarray

from collsim.engine.events cimport (Event, queue_init, queue_clear, queue_free, queue_push, queue_pop,
                                    queue_replace_top, queue_upcoming_slot)

cdef extern from *:
    void __builtin_prefetch(const void* address) nogil
from collsim.engine.intmath cimport int_max as _max
from collsim.errors import ConfigError

cdef extern from "timing.h" nogil:
    int64_t collsim_serialization_ps(int64_t nbytes, int64_t rate_Bps)

cdef enum:
    # Prefetch distances in events behind the next one.  At a million chips a message
    # read misses the TLB and the caches (~100+ ns); 2 ahead left the loop waiting on
    # it (perf: 70% of the loop's samples); 6 ahead: trn3 x 1,024 run 22.3-24.0 ->
    # 20.9-21.5 s CPU, 10 ahead no better.
    _PREFETCH_MSG_AHEAD = 5
    _PREFETCH_LINK_AHEAD = 2

cdef enum:
    ERR_NONE = 0
    ERR_NOMEM = 1
    ERR_BAD_CHIP = 2
    ERR_PAST = 3
    ERR_BAD_SLICE = 4
    ERR_SEQ = 5


def serialization_ps(int64_t nbytes, int64_t rate_Bps):
    """The engine's ser(b) (timing.h), exposed so tests can compare it with units.py."""
    if nbytes < 0 or rate_Bps <= 0:
        raise ValueError("need nbytes >= 0 and rate_Bps > 0")
    return collsim_serialization_ps(nbytes, rate_Bps)


cdef class Schedule:
    """Base class of event schedules: override ``start`` and ``deliver`` (cdef, nogil).

    ``sender_reacts`` (default True): deliver() may act for msg.src too, so under
    MPI it also runs on the sender's rank (see the module docstring).
    """

    def __cinit__(self):
        self.sender_reacts = True

    cdef void start(self, Engine engine) noexcept nogil:
        pass

    cdef void deliver(self, Engine engine, const Message* msg, int64_t t_ps) noexcept nogil:
        pass

    cdef void prefetch_delivery(self, const Message* msg) noexcept nogil:
        pass

    cdef void end_of_instant(self, Engine engine, int64_t chip, int64_t t_ps) noexcept nogil:
        pass


cdef class Engine:
    """``Engine(router, reduce_Bps, elem_bytes, data=None, rank=0, ranks=1)``; ``run(schedule)`` -> last event ps."""

    def __cinit__(self):
        self.msgs = NULL
        self.num_retired_pools = 0
        self.delivering = False
        self.free_msgs = NULL
        queue_init(&self.queue)
        self.outbox = NULL
        self.settling = NULL

    def __init__(self, Router router not None, reduce_Bps, elem_bytes, DataPlane data=None, int rank=0, int ranks=1,
                 bint reserve_at_send=True):
        if int(reduce_Bps) <= 0:
            raise ConfigError("topology.chip.reduce_bandwidth", f"must be > 0 bytes/s, got {reduce_Bps!r}")
        if int(elem_bytes) <= 0:
            raise ConfigError("dtype", f"element size must be >= 1 byte, got {elem_bytes!r}")
        nodes = router.num_chips // router.chips_per_node
        if not 1 <= ranks <= nodes or not 0 <= rank < ranks:
            raise ValueError(f"rank {rank} of {ranks}: need 0 <= rank < ranks <= nodes ({nodes})")
        self.rank = rank
        self.ranks = ranks
        self.node_base = nodes // ranks
        self.node_extra = nodes % ranks
        first, last = rank_nodes(nodes, ranks, rank)
        self.chip_lo = first * router.chips_per_node
        self.chip_hi = last * router.chips_per_node
        if data is not None:
            if data.chips != self.chip_hi - self.chip_lo:
                raise ValueError(f"data plane has {data.chips} chips, rank {rank} owns {self.chip_hi - self.chip_lo}")
            if data.elem_bytes != elem_bytes:
                raise ValueError(f"data plane elements are {data.elem_bytes} bytes, engine expects {elem_bytes}")
        self.router = router
        # the event tie-break packs (src, seq) into 64 bits: src takes what the chip count needs
        self.seq_bits = 64 - max(1, int(router.num_chips - 1).bit_length())
        self.reduce_Bps = reduce_Bps
        self.elem_bytes = elem_bytes
        self.data = data
        # the only O(links) and O(chips) state: 8 bytes per link, 16 per chip
        self._link_free_arr = _lines_zeros(router.num_links, np.int64)
        self._reduce_free_arr = _lines_zeros(router.num_chips, np.int64)
        self._next_seq_arr = _lines_zeros(router.num_chips, np.int64)
        self.link_free_ps = _pointer(self._link_free_arr)
        self.reserve_at_send = reserve_at_send
        self.spot_first, self.spot_end = _spot_links(router) if reserve_at_send else (0, 0)
        self._spot_queued_arr = _lines_zeros(max(1, self.spot_end - self.spot_first), np.int32)
        self.spot_queued = _pointer32(self._spot_queued_arr)
        self.reduce_free_ps = _pointer(self._reduce_free_arr)
        self.next_seq = _pointer(self._next_seq_arr)
        self.msg_capacity = 1024
        if sizeof(Message) % 64 != 0:
            raise RuntimeError(f"engine: Message is {sizeof(Message)} bytes, not whole cache lines")
        self.msgs = _alloc_pool(self.msg_capacity)
        self.free_msgs = <int64_t*> malloc(self.msg_capacity * sizeof(int64_t))
        if self.msgs == NULL or self.free_msgs == NULL:
            raise MemoryError("engine: message pool")
        self.num_msgs = 0
        self.num_free_msgs = 0
        cdef int g
        for g in range(MAX_GROUPS):
            self.ser_nbytes[g] = -1
        self.reduce_nbytes_cached = -1

    def __dealloc__(self):
        queue_free(&self.queue)
        _free_retired_pools(self)
        free(self.msgs)
        free(self.free_msgs)
        free(self.outbox)
        free(self.settling)

    # --- Python API ------------------------------------------------------------

    def run(self, Schedule schedule not None):
        """Run ``schedule`` from t = 0 until no event is left; return the makespan (ps)."""
        self._begin(schedule)
        with nogil:
            self._process_until(schedule, INT64_MAX)
        self._raise_if_failed()
        return self.now_ps

    def _run_in_windows(self, Schedule schedule not None, int64_t window_ps):
        """``run`` as a windowed runner would drive it (tests pin that both agree)."""
        cdef int64_t t_end
        if window_ps < 1:
            raise ValueError("window_ps must be >= 1")
        self._begin(schedule)
        while self.next_event_ps() < INT64_MAX and self.error == ERR_NONE:
            t_end = self.next_event_ps() + window_ps
            with nogil:
                self._process_until(schedule, t_end)
        self._raise_if_failed()
        return self.now_ps

    @property
    def makespan_ps(self):
        """End of the run: the last event or the end of the last reduction, whichever is later."""
        return self.now_ps if self.now_ps > self.reduce_end_ps else self.reduce_end_ps

    @property
    def in_flight(self):
        """Messages sent and not yet delivered."""
        return self.num_msgs - self.num_free_msgs

    def link_free_ps_array(self):
        """Copy of the per-link free times (end of each link's last reservation)."""
        return self._link_free_arr.copy()

    def reduce_free_ps_array(self):
        """Copy of the per-chip reduction-unit free times."""
        return self._reduce_free_arr.copy()

    def reduce_py(self, int64_t chip, int64_t t_ps, int64_t nbytes):
        """Python access to ``reduce`` (tests)."""
        if not 0 <= chip < self.router.num_chips:
            raise IndexError(f"chip {chip} out of range [0, {self.router.num_chips})")
        return self.reduce(chip, t_ps, nbytes)

    def state_bytes(self):
        """Bytes held by the engine's own arrays (links, chips, event queue, message pool)."""
        return (self._link_free_arr.nbytes + self._reduce_free_arr.nbytes + self._next_seq_arr.nbytes
                + (self.queue.capacity + 1) * sizeof(Event) + self.msg_capacity * (sizeof(Message) + sizeof(int64_t)))

    # --- run pieces ------------------------------------------------------------

    cdef int _begin(self, Schedule schedule) except -1:
        self._link_free_arr.fill(0)
        self._spot_queued_arr.fill(0)
        self.sender_reacts = schedule.sender_reacts
        self._reduce_free_arr.fill(0)
        self._next_seq_arr.fill(0)
        queue_clear(&self.queue)
        # every slot back on the free list, lowest first
        self.num_free_msgs = 0
        cdef int64_t s
        for s in range(self.num_msgs - 1, -1, -1):
            self.free_msgs[self.num_free_msgs] = s
            self.num_free_msgs += 1
        if self.data is not None:
            self.data.reset_pool()
        self.events = 0
        self.link_events = 0
        self.reserved_at_send = 0
        self.now_ps = 0
        self.reduce_end_ps = 0
        self.peak_in_flight = 0
        self.error = ERR_NONE
        self.outbox_len = 0
        self.num_settling = 0
        self.exported = 0
        self.imported = 0
        with nogil:
            schedule.start(self)
        self._raise_if_failed()
        return 0

    cdef int64_t next_event_ps(self) noexcept nogil:
        return self.queue.top.time_ps if self.queue.size > 0 else INT64_MAX

    cdef int64_t _process_until(self, Schedule schedule, int64_t t_end_ps) noexcept nogil:
        cdef Event ev
        cdef Event* top
        cdef Message* msg
        cdef Message* upcoming
        cdef int64_t done = 0, t_next, ahead
        while self.error == ERR_NONE:
            if self.num_settling > 0 and (self.queue.size == 0 or self.queue.top.time_ps != self.now_ps):
                # every event at now_ps has been processed (the next is later, or in the
                # next window): the instant is over; what the calls send is processed next
                self._settle(schedule)
                continue
            if self.queue.size == 0:
                break
            top = &self.queue.top
            if top.time_ps >= t_end_ps:
                break
            self.now_ps = top.time_ps
            msg = &self.msgs[top.slot]
            # Cache misses on messages, link times and the schedule's records are the
            # loop's largest cost (pools of millions of messages, millions of links,
            # records per chip): fetch the message _PREFETCH_MSG_AHEAD + 1 events
            # ahead (a hop reads its first line, a delivery the others); then, for
            # the event _PREFETCH_LINK_AHEAD + 1 ahead, whose message is in cache by
            # now, its next link's free time, or for a delivery the state deliver()
            # reads: the schedule's record (prefetch_delivery; on 64 trn3
            # UltraServers that read had been 16% of the cycles) and the receiving
            # chip's sequence number and reduction time (it usually sends on).
            # (Fetching only the first line far ahead and the rest for deliveries
            # nearer was 9% slower.)
            ahead = queue_upcoming_slot(&self.queue, _PREFETCH_MSG_AHEAD)
            if ahead >= 0:
                __builtin_prefetch(&self.msgs[ahead])
                __builtin_prefetch(<char*> &self.msgs[ahead] + 64)
                __builtin_prefetch(<char*> &self.msgs[ahead] + 128)
            ahead = queue_upcoming_slot(&self.queue, _PREFETCH_LINK_AHEAD)
            if ahead >= 0:
                upcoming = &self.msgs[ahead]
                if upcoming.hop < upcoming.nhops:
                    __builtin_prefetch(&self.link_free_ps[upcoming.links[upcoming.hop]])
                elif upcoming.hop == upcoming.nhops:
                    schedule.prefetch_delivery(upcoming)
                    __builtin_prefetch(&self.next_seq[upcoming.dst])
                    __builtin_prefetch(&self.reduce_free_ps[upcoming.dst])
            if msg.hop < msg.nhops:
                self.events += 1
                done += 1
                _count_unqueued(self, msg.links[msg.hop])
                t_next = _hop(self, msg)
                if self.ranks > 1 and self._hand_on(msg, top.slot, t_next):
                    queue_pop(&self.queue, &ev)      # it moved to another rank
                    continue
                _count_queued(self, msg)
                # the message's next event replaces this one: one sift, no push
                queue_replace_top(&self.queue, t_next, top.tie, top.slot)
            elif msg.hop == msg.nhops:
                self.events += 1
                done += 1
                queue_pop(&self.queue, &ev)
                _deliver(self, schedule, ev.slot, ev.time_ps)
            else:
                queue_pop(&self.queue, &ev)
                self._deliver_to_sender(schedule, ev.slot, ev.time_ps)
        return done

    cdef int _next_rank(self, const Message* msg) noexcept nogil:
        """After a hop: the rank that must see the message next when it is not this one, else -1.

        Before the last link: the owner of the next link (only scale-out links
        can belong to another rank).  After it: the sender's rank, for a
        schedule whose deliver also acts for the sender (the delivery itself
        is here: the last link belongs to the receiving chip's rank).
        """
        cdef int64_t link
        cdef int dest
        if msg.hop < msg.nhops:
            link = msg.links[msg.hop]
            if link < self.router.nic_up_first:
                return -1
            dest = self.rank_of_link(link)
            return -1 if dest == self.rank else dest
        if self.sender_reacts and not self.owns_chip(msg.src):
            return self.rank_of_node(msg.src // self.router.chips_per_node)
        return -1

    cdef int _hand_on(self, Message* msg, int64_t slot, int64_t t_next) noexcept nogil:
        cdef int dest = self._next_rank(msg)
        if dest < 0:
            return 0
        if msg.hop < msg.nhops:
            # the next link is another rank's: the message moves there
            if self._export(msg, dest, t_next, WIRE_HOP) != 0:
                self._fail(ERR_NOMEM, 0, 0, 0)
            _free_slot(self, slot)
            return 1
        if self._export(msg, dest, t_next, WIRE_SENDER) != 0:
            self._fail(ERR_NOMEM, 0, 0, 0)
        return 0

    cdef void _deliver_to_sender(self, Schedule schedule, int64_t slot, int64_t t_ps) noexcept nogil:
        """The sender's side of a delivery made on another rank (WIRE_SENDER): deliver() without payload."""
        cdef Message* msg = &self.msgs[slot]
        msg.hop = msg.nhops
        msg.payload = -1
        _deliver_in_place(self, schedule, slot, t_ps)

    cdef int _add_slot(self) noexcept nogil:
        cdef int64_t capacity
        cdef Message* msgs
        cdef int64_t* free_list
        if self.num_msgs == self.msg_capacity:
            capacity = 2 * self.msg_capacity
            msgs = _alloc_pool(capacity)
            if msgs == NULL:
                return -1
            memcpy(msgs, self.msgs, self.msg_capacity * sizeof(Message))
            if self.delivering:
                _retire_pool(self, self.msgs)  # deliver() is reading a message of it
            else:
                free(self.msgs)
            self.msgs = msgs
            free_list = <int64_t*> realloc(self.free_msgs, capacity * sizeof(int64_t))
            if free_list == NULL:
                return -1
            self.free_msgs = free_list
            self.msg_capacity = capacity
        self.free_msgs[0] = self.num_msgs
        self.num_free_msgs = 1
        self.num_msgs += 1
        return 0

    cdef void _fail(self, int code, int64_t a, int64_t b, int64_t c) noexcept nogil:
        if self.error == ERR_NONE:
            self.error = code
            self.error_arg[0] = a
            self.error_arg[1] = b
            self.error_arg[2] = c

    def _raise_if_failed(self):
        cdef int code = self.error
        a, b, c = self.error_arg[0], self.error_arg[1], self.error_arg[2]
        if code == ERR_NONE:
            return
        if code == ERR_NOMEM:
            raise MemoryError("engine: out of memory for events, messages or payloads")
        if code == ERR_BAD_CHIP:
            raise RuntimeError(f"engine: schedule used chip(s) {a} -> {b} outside [0, {self.router.num_chips})")
        if code == ERR_PAST:
            raise RuntimeError(f"engine: schedule sent at t={a} ps, before the current time {b} ps")
        if code == ERR_SEQ:
            raise RuntimeError(f"engine: chip {a} sent more than 2^{self.seq_bits} messages")
        if code == ERR_BAD_SLICE:
            raise RuntimeError(f"engine: message slice [{a}, {a}+{b}) outside the buffer of {c} elements")
        raise RuntimeError(f"engine: error code {code}")

    # --- C API for schedules ---------------------------------------------------

    cdef int64_t send(self, int64_t src, int64_t dst, int64_t t_ps,
                      int64_t elem_offset, int64_t elem_count, int32_t op,
                      int64_t tag0, int64_t tag1, int64_t tag2, int64_t tag3) noexcept nogil:
        cdef uint64_t n = <uint64_t> self.router.num_chips
        cdef int64_t slot, seq
        cdef Message* msg
        cdef bint has_data = self.data is not None
        if self.error != ERR_NONE:
            return -1
        if (<uint64_t> src >= n) | (<uint64_t> dst >= n):       # (negative ids wrap above n)
            self._fail(ERR_BAD_CHIP, src, dst, 0)
            return -1
        if <uint64_t> (src - self.chip_lo) >= <uint64_t> (self.chip_hi - self.chip_lo):
            return -1               # another rank's chip: its owner sends
        if t_ps < self.now_ps:
            self._fail(ERR_PAST, t_ps, self.now_ps, 0)
            return -1
        if (elem_offset | elem_count) < 0 or (has_data and elem_offset + elem_count > self.data.count):
            self._fail(ERR_BAD_SLICE, elem_offset, elem_count, self.data.count if has_data else -1)
            return -1
        slot = _new_message(self, src, dst, t_ps, tag0, tag1, tag2, tag3)
        if slot < 0:
            return -1
        msg = &self.msgs[slot]
        msg.elem_offset = elem_offset
        msg.elem_count = elem_count
        msg.nbytes = elem_count * self.elem_bytes
        msg.op = op
        msg.nhops = self.router.route(src, dst, msg.links)
        if has_data:
            msg.payload = self.data.snapshot(src - self.chip_lo, elem_offset, elem_count)
            if msg.payload < 0:
                _free_slot(self, slot)
                self._fail(ERR_NOMEM, 0, 0, 0)
                return -1
        if t_ps == self.now_ps and msg.nhops > 0 and _spot_free(self, msg.links[0]):
            # Nothing can reach this link before the message at this instant (see
            # _spot_links): its event would reserve it exactly as this does, later.
            seq = msg.seq
            self.events += 1
            self.reserved_at_send += 1
            t_ps = _hop(self, msg)
            if self.ranks > 1 and self._hand_on(msg, slot, t_ps):
                return seq
        return _queue(self, slot, t_ps)

    cdef int64_t wake(self, int64_t chip, int64_t t_ps,
                      int64_t tag0, int64_t tag1, int64_t tag2, int64_t tag3) noexcept nogil:
        cdef int64_t slot
        cdef Message* msg
        if self.error != ERR_NONE:
            return -1
        if chip < 0 or chip >= self.router.num_chips:
            self._fail(ERR_BAD_CHIP, chip, chip, 0)
            return -1
        if chip < self.chip_lo or chip >= self.chip_hi:
            return -1               # another rank's chip
        if t_ps < self.now_ps:
            self._fail(ERR_PAST, t_ps, self.now_ps, 0)
            return -1
        slot = _new_message(self, chip, chip, t_ps, tag0, tag1, tag2, tag3)
        if slot < 0:
            return -1
        msg = &self.msgs[slot]
        msg.elem_offset = 0
        msg.elem_count = 0
        msg.nbytes = 0
        msg.op = OP_WAKE
        msg.nhops = 0
        return _queue(self, slot, t_ps)

    cdef void call_at_end_of_instant(self, int64_t chip) noexcept nogil:
        cdef int64_t capacity
        cdef int64_t* grown
        if self.error != ERR_NONE:
            return
        if chip < 0 or chip >= self.router.num_chips:
            self._fail(ERR_BAD_CHIP, chip, chip, 0)
            return
        if chip < self.chip_lo or chip >= self.chip_hi:
            return                  # another rank's chip
        if self.num_settling == self.settling_cap:
            capacity = 2 * self.settling_cap if self.settling_cap > 0 else 256
            grown = <int64_t*> realloc(self.settling, capacity * sizeof(int64_t))
            if grown == NULL:
                self._fail(ERR_NOMEM, 0, 0, 0)
                return
            self.settling = grown
            self.settling_cap = capacity
        self.settling[self.num_settling] = chip
        self.num_settling += 1

    cdef void _settle(self, Schedule schedule) noexcept nogil:
        # calls made from end_of_instant join this round (they follow every event too)
        cdef int64_t k = 0
        while k < self.num_settling and self.error == ERR_NONE:
            schedule.end_of_instant(self, self.settling[k], self.now_ps)
            k += 1
        self.num_settling = 0

    cdef int64_t reduce(self, int64_t chip, int64_t t_ps, int64_t nbytes) noexcept nogil:
        cdef int64_t start, end
        if chip < 0 or chip >= self.router.num_chips:
            self._fail(ERR_BAD_CHIP, chip, chip, 0)
            return t_ps
        if chip < self.chip_lo or chip >= self.chip_hi:
            return t_ps             # another rank's chip: only its owner's answer counts
        start = _max(t_ps, self.reduce_free_ps[chip])
        if nbytes != self.reduce_nbytes_cached:
            self.reduce_nbytes_cached = nbytes
            self.reduce_ps_cached = collsim_serialization_ps(nbytes, self.reduce_Bps)
        end = start + self.reduce_ps_cached
        self.reduce_free_ps[chip] = end
        if end > self.reduce_end_ps:
            self.reduce_end_ps = end
        return end

    # --- distributed pieces ----------------------------------------------------

    cdef bint owns_chip(self, int64_t chip) noexcept nogil:
        return self.chip_lo <= chip < self.chip_hi

    cdef int rank_of_node(self, int64_t node) noexcept nogil:
        cdef int64_t big = self.node_base + 1
        cdef int64_t cut = self.node_extra * big
        if node < cut:
            return <int> (node // big)
        return <int> (self.node_extra + (node - cut) // self.node_base)

    cdef int rank_of_link(self, int64_t link) noexcept nogil:
        cdef int g
        cdef int64_t nic, leaf
        if self.router.nic_up_first < 0 or link < self.router.nic_up_first:
            g = self.router.group_of(link)            # scale-up level g: link = first + chip * ports + port
            return self.rank_of_node((link - self.router.lvl_first[g]) // self.router.lvl_ports[g] // self.router.chips_per_node)
        if link < self.router.nic_down_first:
            nic = link - self.router.nic_up_first
        elif not self.router.leaf_trunks or link < self.router.leaf_up_first:
            nic = link - self.router.nic_down_first
        else:
            if link < self.router.leaf_down_first:
                leaf = (link - self.router.leaf_up_first) // self.router.trunks_per_leaf
            else:
                leaf = (link - self.router.leaf_down_first) // self.router.trunks_per_leaf
            nic = leaf * self.router.nics_per_leaf    # a leaf's trunks go with its first NIC
        return self.rank_of_node(nic // self.router.nics_per_node)

    cdef int _export(self, const Message* msg, int dest, int64_t time_ps, int64_t kind) noexcept nogil:
        cdef int64_t payload = -1, size, cap
        cdef char* buf
        cdef WireRecord* rec
        if kind == WIRE_HOP and msg.payload >= 0:
            payload = msg.elem_count * self.elem_bytes
        size = sizeof(WireRecord) + (_pad8(payload) if payload > 0 else 0)
        if self.outbox_len + size > self.outbox_cap:
            cap = 2 * self.outbox_cap if self.outbox_cap > 0 else 1 << 16
            while cap < self.outbox_len + size:
                cap *= 2
            buf = <char*> realloc(self.outbox, cap)
            if buf == NULL:
                return -1
            self.outbox = buf
            self.outbox_cap = cap
        rec = <WireRecord*> (self.outbox + self.outbox_len)
        rec.dest = dest
        rec.time_ps = time_ps
        rec.kind = kind
        rec.payload_nbytes = payload
        rec.msg = msg[0]
        rec.msg.payload = -1
        if payload >= 0:
            if payload > 0:
                memcpy(self.outbox + self.outbox_len + sizeof(WireRecord), self.data.slot_data[msg.payload], payload)
            self.data.release(msg.payload)
        self.outbox_len += size
        self.exported += 1
        return 0

    cdef int _import(self, const WireRecord* rec, const char* payload) noexcept nogil:
        cdef int64_t slot = _alloc_slot(self)
        cdef Message* msg
        if slot < 0:
            return -1
        msg = &self.msgs[slot]
        msg[0] = rec.msg
        msg.payload = -1
        if rec.kind == WIRE_SENDER:
            msg.hop = msg.nhops + 1          # marks the sender's copy of a delivery
        elif rec.payload_nbytes >= 0 and self.data is not None:
            msg.payload = _load_payload(self.data, payload, rec.payload_nbytes)
            if msg.payload < 0:
                return -1
        if _queue(self, slot, rec.time_ps) < 0:
            return -1
        self.imported += 1
        return 0

    # --- Python entry points of the windowed runner (collsim/distributed.py) ---

    def _window_begin(self, Schedule schedule not None):
        """Reset and let the schedule emit its first sends (owned chips only)."""
        self._begin(schedule)

    def _window_run(self, Schedule schedule not None, int64_t t_end_ps):
        """Process every local event before t_end_ps; cross-rank messages go to the outbox."""
        with nogil:
            self._process_until(schedule, t_end_ps)
        self._raise_if_failed()

    def _next_event(self):
        """Time of the earliest local event, INT64_MAX when none."""
        return self.next_event_ps()

    def _take_outbox(self):
        """Empty the outbox: (records grouped by receiving rank, as uint8; bytes per rank; earliest time).

        The earliest time is INT64_MAX when the outbox was empty.
        """
        cdef int64_t[::1] counts = np.zeros(self.ranks, dtype=np.int64)
        cdef int64_t[::1] place = np.zeros(self.ranks, dtype=np.int64)
        cdef int64_t pos = 0, size, earliest = INT64_MAX, total = 0
        cdef int r
        cdef WireRecord* rec
        cdef unsigned char[::1] view
        while pos < self.outbox_len:
            rec = <WireRecord*> (self.outbox + pos)
            size = _record_size(rec)
            counts[rec.dest] += size
            if rec.time_ps < earliest:
                earliest = rec.time_ps
            pos += size
        for r in range(self.ranks):
            place[r] = total
            total += counts[r]
        out = np.empty(total, dtype=np.uint8)
        if total > 0:
            view = out
            pos = 0
            while pos < self.outbox_len:
                rec = <WireRecord*> (self.outbox + pos)
                size = _record_size(rec)
                memcpy(&view[place[rec.dest]], rec, size)
                place[rec.dest] += size
                pos += size
        self.outbox_len = 0
        return out, np.asarray(counts), earliest

    def _give_inbox(self, const unsigned char[::1] records not None):
        """Queue every record of a buffer received from other ranks (any order: keys are total)."""
        cdef int64_t pos = 0, size, n = records.shape[0]
        cdef WireRecord rec
        while pos < n:
            if n - pos < <int64_t> sizeof(WireRecord):
                raise ValueError("engine: truncated record from another rank")
            memcpy(&rec, &records[pos], sizeof(WireRecord))
            size = _record_size(&rec)
            if size > n - pos or not self._addressed_here(&rec):
                raise ValueError("engine: a record from another rank is malformed or not for this rank")
            if rec.payload_nbytes >= 0 and self.data is not None and rec.msg.elem_count * self.elem_bytes != rec.payload_nbytes:
                raise ValueError("engine: payload size does not match its message")
            if self._import(&rec, <const char*> &records[pos] + sizeof(WireRecord)) != 0:
                raise MemoryError("engine: out of memory for received messages")
            pos += size

    cdef bint _addressed_here(self, const WireRecord* rec) noexcept nogil:
        """A received record belongs here: a hop onto a link of this rank, or a sender copy for one of its chips."""
        if rec.msg.src < 0 or rec.msg.src >= self.router.num_chips:
            return False
        if rec.kind == WIRE_SENDER:
            return self.owns_chip(rec.msg.src)
        return (rec.kind == WIRE_HOP and 0 <= rec.msg.hop < rec.msg.nhops <= MAX_HOPS
                and 0 <= rec.msg.links[rec.msg.hop] < self.router.num_links
                and self.rank_of_link(rec.msg.links[rec.msg.hop]) == self.rank)

    @property
    def outbox_nbytes(self):
        """Bytes waiting in the outbox."""
        return self.outbox_len

    def rank_of_link_py(self, int64_t link):
        """Rank owning a directed link (tests)."""
        if not 0 <= link < self.router.num_links:
            raise IndexError(f"link {link} out of range [0, {self.router.num_links})")
        return self.rank_of_link(link)


# --- message pool helpers (plain C calls: the engine's methods go through a vtable) ---


cdef inline Message* _alloc_pool(int64_t capacity) noexcept nogil:
    """Room for capacity messages, 64-byte aligned (a hop reads one whole cache line); NULL when out of memory."""
    return <Message*> collsim_alloc_lines(capacity * sizeof(Message))


# --- one link reservation (plain C: it runs once per link-event) ------------------------

cdef inline int _group_of(Router router, int64_t link) noexcept nogil:
    """Router.group_of without its method call: the group whose id range holds link."""
    cdef int g = 0
    while g < router.num_groups - 1 and link >= router.grp_end[g]:
        g += 1
    return g


cdef inline int64_t _hop(Engine self, Message* msg) noexcept nogil:
    """Reserve msg's next link (DESIGN.md section 4); the time of its next event (head at the next link, or delivery)."""
    cdef int64_t link = msg.links[msg.hop]
    cdef int g = _group_of(self.router, link)
    cdef int64_t lat = self.router.grp_latency_ps[g]
    cdef int64_t start = _max(msg.head_ps, self.link_free_ps[link])
    cdef int64_t end
    if self.ser_nbytes[g] != msg.nbytes:
        self.ser_nbytes[g] = msg.nbytes
        self.ser_ps[g] = collsim_serialization_ps(msg.nbytes, self.router.grp_rate_Bps[g])
    end = _max(start + self.ser_ps[g], msg.tail_ps)
    self.link_free_ps[link] = end
    self.link_events += 1
    msg.tail_ps = end + lat
    msg.hop += 1
    if msg.hop < msg.nhops:
        msg.head_ps = start + lat
        return msg.head_ps
    return msg.tail_ps        # delivery


cdef inline void _retire_pool(Engine self, Message* pool) noexcept nogil:
    """Keep an outgrown pool until the current delivery ends."""
    self.retired_pools[self.num_retired_pools] = pool
    self.num_retired_pools += 1


cdef void _free_retired_pools(Engine self) noexcept nogil:
    while self.num_retired_pools > 0:
        self.num_retired_pools -= 1
        free(self.retired_pools[self.num_retired_pools])


cdef inline int64_t _alloc_slot(Engine self) noexcept nogil:
    """A free slot of the pool (the most recently freed); -1 when out of memory."""
    cdef int64_t in_flight
    if self.num_free_msgs == 0 and self._add_slot() != 0:
        return -1
    self.num_free_msgs -= 1
    # (the message being delivered, if any, holds its slot until deliver returns: not in flight)
    in_flight = self.num_msgs - self.num_free_msgs - self.delivering
    if in_flight > self.peak_in_flight:
        self.peak_in_flight = in_flight
    return self.free_msgs[self.num_free_msgs]


cdef inline void _deliver(Engine self, Schedule schedule, int64_t slot, int64_t t_ps) noexcept nogil:
    """Apply the payload (data fidelity), call schedule.deliver, free the slot."""
    cdef Message* msg = &self.msgs[slot]
    if msg.payload >= 0:
        self.data.apply(msg.payload, msg.dst - self.chip_lo, msg.elem_offset, msg.elem_count, msg.op == OP_REDUCE)
        msg.payload = -1
    _deliver_in_place(self, schedule, slot, t_ps)


cdef inline void _deliver_in_place(Engine self, Schedule schedule, int64_t slot, int64_t t_ps) noexcept nogil:
    """schedule.deliver on the message in its slot, then free the slot.

    The slot is freed after deliver(), so the schedule's sends cannot take it,
    and a pool they outgrow stays readable until then (_add_slot retires it
    instead of freeing it).
    """
    self.delivering = True
    schedule.deliver(self, &self.msgs[slot], t_ps)
    self.delivering = False
    _free_slot(self, slot)
    if self.num_retired_pools > 0:
        _free_retired_pools(self)


cdef inline void _free_slot(Engine self, int64_t slot) noexcept nogil:
    self.free_msgs[self.num_free_msgs] = slot
    self.num_free_msgs += 1


cdef inline int64_t _new_message(Engine self, int64_t src, int64_t dst, int64_t t_ps,
                                 int64_t tag0, int64_t tag1, int64_t tag2, int64_t tag3) noexcept nogil:
    """A pool slot holding src's next message (its sequence number taken), or -1 after a failure."""
    cdef int64_t slot, seq
    cdef Message* msg
    seq = self.next_seq[src]
    if (<uint64_t> seq) >> self.seq_bits:
        self._fail(ERR_SEQ, src, seq, 0)
        return -1
    slot = _alloc_slot(self)
    if slot < 0:
        self._fail(ERR_NOMEM, 0, 0, 0)
        return -1
    self.next_seq[src] = seq + 1
    msg = &self.msgs[slot]
    msg.src = src
    msg.dst = dst
    msg.seq = seq
    msg.head_ps = t_ps
    msg.tail_ps = t_ps
    msg.tag[0] = tag0
    msg.tag[1] = tag1
    msg.tag[2] = tag2
    msg.tag[3] = tag3
    msg.hop = 0
    msg.payload = -1
    return slot


cdef inline int64_t _queue(Engine self, int64_t slot, int64_t t_ps) noexcept nogil:
    """Push the message's next event (at t_ps); returns its seq, or -1 when out of memory."""
    cdef Message* msg = &self.msgs[slot]
    if queue_push(&self.queue, t_ps, (<uint64_t> msg.src << self.seq_bits) | <uint64_t> msg.seq, slot) != 0:
        self._fail(ERR_NOMEM, 0, 0, 0)
        return -1
    _count_queued(self, msg)
    return msg.seq


# --- reserving a first link at send time ---------------------------------------------
#
# A send at the current time t whose first link l nothing else can reach at t is
# reserved at once instead of through an event at t: FIFO order on l (DESIGN.md
# section 4) is then already decided.  What could still be served on l before it at t:
#   * an event queued for l at t (an earlier send at t by the same chip, or a message
#     in transit): we count the events queued for each such link and require none;
#   * an event for l made later in this instant: a message in transit reaches l one
#     link latency after its previous hop, so never at t when every link that can
#     feed l has latency > 0; a send by another chip cannot start on l.
# `_spot_links` picks the links where this holds.  Results are identical either way
# (Engine(reserve_at_send=False) keeps every hop in the queue; tests compare); it
# saves an event, a queue round trip and a cold read of the message per such send.

cdef tuple _spot_links(Router router):
    """[first, end) of the link ids a send may reserve at once.

    Scale-up links leave one chip each, so only that chip starts messages on
    them; messages in transit (torus, multi-level) are counted, and need every
    scale-up latency > 0.  A NIC uplink is a first hop only, and carries one
    chip's sends when that chip has the NIC to itself.  Scale-up ids come first,
    then NIC uplinks.
    """
    cdef int i
    cdef int64_t up_end = router.nic_up_first if router.nic_up_first >= 0 else router.num_links
    cdef bint up_ok = True
    cdef bint nic_ok = router.nic_up_first >= 0 and router.chips_per_nic == 1
    for i in range(router.num_levels):
        if router.latency_ps(router.lvl_first[i]) <= 0:
            up_ok = False
    if up_ok:
        return 0, (router.nic_down_first if nic_ok else up_end)
    if nic_ok:
        return router.nic_up_first, router.nic_down_first
    return 0, 0


cdef inline bint _on_spot_link(Engine self, int64_t link) noexcept nogil:
    return <uint64_t> (link - self.spot_first) < <uint64_t> (self.spot_end - self.spot_first)


cdef inline bint _spot_free(Engine self, int64_t link) noexcept nogil:
    """link may be reserved at send time: a spot link with no event queued for it."""
    return _on_spot_link(self, link) and self.spot_queued[link - self.spot_first] == 0


cdef inline void _count_queued(Engine self, const Message* msg) noexcept nogil:
    """msg's event was queued: when it is a hop onto a spot link, that link has one more waiting."""
    if msg.hop < msg.nhops and _on_spot_link(self, msg.links[msg.hop]):
        self.spot_queued[msg.links[msg.hop] - self.spot_first] += 1


cdef inline void _count_unqueued(Engine self, int64_t link) noexcept nogil:
    if _on_spot_link(self, link):
        self.spot_queued[link - self.spot_first] -= 1


cdef inline int64_t _pad8(int64_t n) noexcept nogil:
    return (n + 7) & ~(<int64_t> 7)


cdef inline int64_t _record_size(const WireRecord* rec) noexcept nogil:
    return sizeof(WireRecord) + (_pad8(rec.payload_nbytes) if rec.payload_nbytes > 0 else 0)


cdef inline int64_t _load_payload(DataPlane data, const char* src, int64_t nbytes) noexcept nogil:
    """A payload slot of ``data`` holding a snapshot that came from another rank; -1 when out of memory."""
    return data.store(src, nbytes)


def rank_nodes(int64_t nodes, int64_t ranks, int64_t rank):
    """Nodes [first, last) of ``rank`` when ``nodes`` are split over ``ranks``: contiguous
    blocks as even as possible, the first ``nodes % ranks`` ranks one node more."""
    if not 1 <= ranks <= nodes or not 0 <= rank < ranks:
        raise ValueError(f"need 0 <= rank < ranks <= nodes, got rank {rank}, ranks {ranks}, nodes {nodes}")
    base, extra = nodes // ranks, nodes % ranks
    first = rank * base + min(rank, extra)
    return first, first + base + (1 if rank < extra else 0)


cdef object _lines_zeros(int64_t n, dtype):
    """np.zeros(n, dtype) in memory from collsim_alloc_lines: the per-link and per-chip
    arrays are read at random, one element per event, so at scale they want huge pages."""
    cdef size_t itemsize = np.dtype(dtype).itemsize
    cdef size_t nbytes = max(n, 1) * itemsize
    cdef void* data = collsim_alloc_lines(nbytes)
    cdef cvarray buffer
    if data == NULL:
        raise MemoryError(f"engine: {n:,} x {itemsize} bytes")
    memset(data, 0, nbytes)
    buffer = cvarray(shape=(max(n, 1),), itemsize=itemsize, format=np.dtype(dtype).char, allocate_buffer=False)
    buffer.data = <char*> data
    buffer.callback_free_data = free
    return np.asarray(buffer).view(dtype)[:n]


cdef int64_t* _pointer(arr):
    """Data pointer of a C-contiguous int64 numpy array (owned by the caller)."""
    cdef int64_t[::1] view = arr
    if view.shape[0] == 0:
        return NULL
    return &view[0]


cdef int32_t* _pointer32(arr):
    """Data pointer of a C-contiguous, non-empty int32 numpy array (owned by the caller)."""
    cdef int32_t[::1] view = arr
    return &view[0]


cdef class ScriptedSchedule(Schedule):
    """Point-to-point sends given as arrays, for tests and benchmarks.

    Message i goes from ``src[i]`` to ``dst[i]`` carrying ``count[i]`` elements
    (``count[i] * elem_bytes`` bytes) from ``offset[i]`` with ``op[i]``.  With
    ``after[i] == -1`` it is sent at ``send_ps[i]``; otherwise when message
    ``after[i]`` is ready at its destination, but not before ``send_ps[i]``.
    A message is ready when delivered, or, with ``reduce_nbytes[i] > 0``,
    when the destination's reduction unit has reduced that many bytes
    (``engine.reduce``).  Dependents of one message are sent in index order.
    ``op[i] == WAKE`` makes entry i a wake-up of chip ``src[i]`` instead
    (``Engine.wake``; needs ``dst[i] == src[i]`` and ``count[i] == 0``): it is
    "delivered" at its send time, without a link.

    After ``Engine.run``: ``delivered_ps[i]``, ``ready_ps[i]``, ``sent_ps[i]``
    (-1 for a message never sent).
    """

    cdef int64_t n
    cdef const int64_t[::1] src
    cdef const int64_t[::1] dst
    cdef const int64_t[::1] count
    cdef const int64_t[::1] send_ps
    cdef const int64_t[::1] offset
    cdef const int64_t[::1] reduce_nbytes
    cdef const int32_t[::1] op
    cdef const int64_t[::1] roots
    cdef const int64_t[::1] child_start      # CSR: dependents of i are child_list[child_start[i]:child_start[i+1]]
    cdef const int64_t[::1] child_list
    cdef int64_t[::1] _delivered
    cdef int64_t[::1] _ready
    cdef int64_t[::1] _sent
    cdef readonly object delivered_ps
    cdef readonly object ready_ps
    cdef readonly object sent_ps

    def __init__(self, src, dst, count, send_ps=None, after=None, offset=None, op=None, reduce_nbytes=None):
        src = np.ascontiguousarray(src, dtype=np.int64)
        n = src.shape[0]

        def column(values, default, dtype=np.int64):
            if values is None:
                return np.full(n, default, dtype=dtype)
            arr = np.ascontiguousarray(values, dtype=dtype)
            if arr.shape != (n,):
                raise ValueError(f"every array must have {n} entries, got shape {arr.shape}")
            return arr

        dst, count = column(dst, 0), column(count, 0)
        send_ps, after, offset = column(send_ps, 0), column(after, -1), column(offset, 0)
        op, reduce_nbytes = column(op, OP_COPY, np.int32), column(reduce_nbytes, 0)
        if np.any(send_ps < 0) or np.any(count < 0) or np.any(offset < 0) or np.any(reduce_nbytes < 0):
            raise ValueError("send_ps, count, offset and reduce_nbytes must be >= 0")
        if np.any((after < -1) | (after >= n)) or np.any(after == np.arange(n)):
            raise ValueError("after[i] must be -1 or the index of another message")
        if np.any((op != OP_COPY) & (op != OP_REDUCE) & (op != OP_WAKE)):
            raise ValueError("op must be OP_COPY (0), OP_REDUCE (1) or OP_WAKE (2)")
        if np.any((op == OP_WAKE) & ((dst != src) | (count != 0))):
            raise ValueError("a wake-up (op 2) needs dst == src and count == 0")
        has_parent = after >= 0
        children = np.nonzero(has_parent)[0]
        order = np.argsort(after[children], kind="stable")   # by parent, then index
        self.child_list = children[order].astype(np.int64)
        self.child_start = np.searchsorted(after[children][order], np.arange(n + 1)).astype(np.int64)
        self.roots = np.nonzero(~has_parent)[0].astype(np.int64)
        self.n = n
        self.src, self.dst, self.count, self.send_ps = src, dst, count, send_ps
        self.offset, self.op, self.reduce_nbytes = offset, op, reduce_nbytes
        self.delivered_ps = np.full(n, -1, dtype=np.int64)
        self.ready_ps = np.full(n, -1, dtype=np.int64)
        self.sent_ps = np.full(n, -1, dtype=np.int64)
        self._delivered, self._ready, self._sent = self.delivered_ps, self.ready_ps, self.sent_ps

    cdef void _send(self, Engine engine, int64_t i, int64_t t_ps) noexcept nogil:
        self._sent[i] = t_ps
        if self.op[i] == OP_WAKE:
            engine.wake(self.src[i], t_ps, i, 0, 0, 0)
        else:
            engine.send(self.src[i], self.dst[i], t_ps, self.offset[i], self.count[i], self.op[i], i, 0, 0, 0)

    cdef void start(self, Engine engine) noexcept nogil:
        cdef int64_t j
        # a rerun starts from scratch
        for j in range(self.n):
            self._delivered[j] = -1
            self._ready[j] = -1
            self._sent[j] = -1
        for j in range(self.roots.shape[0]):
            self._send(engine, self.roots[j], self.send_ps[self.roots[j]])

    cdef void deliver(self, Engine engine, const Message* msg, int64_t t_ps) noexcept nogil:
        cdef int64_t i = msg.tag[0], j, c
        cdef int64_t ready = t_ps
        self._delivered[i] = t_ps
        if self.reduce_nbytes[i] > 0:
            ready = engine.reduce(msg.dst, t_ps, self.reduce_nbytes[i])
        self._ready[i] = ready
        for j in range(self.child_start[i], self.child_start[i + 1]):
            c = self.child_list[j]
            self._send(engine, c, _max(ready, self.send_ps[c]))


COPY = OP_COPY
"""Python value of OP_COPY (ScriptedSchedule's ``op`` array)."""
REDUCE = OP_REDUCE
"""Python value of OP_REDUCE."""
WAKE = OP_WAKE
"""Python value of OP_WAKE (ScriptedSchedule: a wake-up instead of a send)."""
