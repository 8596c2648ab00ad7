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
fidelity) and calls ``schedule.deliver``.  ser_k(b) = ceil(b * 1e12 / rate_k)
ps in 128-bit integer arithmetic (``timing.h``), equal to
``collsim.units.serialization_ps``.  A chip's reduction unit is a FIFO server
too (``reduce``).

Events live in a 4-ary min-heap of C structs (``events.pyx``) keyed (time,
src chip, per-source seq), the last two packed into one word
``src << seq_bits | seq``: a message has one pending event at a time and
(src, seq) is unique, so the order is total and runs are bit-for-bit
repeatable.  A hop replaces the message's event at the top of the heap (one
sift instead of a pop and a push).  Messages
live in a growable C pool with a free list, so memory follows what is in
flight, never the whole schedule.  Per chip: the reduction unit's free time and
the next sequence number.  Nothing in the loop touches a Python object; it runs
``with nogil``.

Schedules react to deliveries by calling ``send`` / ``reduce`` from inside
``deliver`` (re-entrant pushes into the heap are fine; ``deliver`` receives a
copy of the message, so the pool may grow meanwhile).  Errors raised by a
schedule's misuse inside nogil code (sending in the past, bad chip, slice out
of the buffer, out of memory) are recorded in ``error`` and the loop stops;
``run`` then raises.

Hook for the distributed runner (DESIGN.md section 7, not implemented here)
-------------------------------------------------------------------------
``run`` is ``_begin(schedule)`` + ``_process_until(schedule, INT64_MAX)``.  A
conservative windowed runner, with ranks owning contiguous blocks of whole
nodes, reuses the same pieces::

    engine._begin(schedule)
    while (t0 := allreduce_min(engine.next_event_ps())) < INT64_MAX:
        engine._process_until(schedule, t0 + lookahead)  # min latency of a cross-rank link
        exchange outboxes; push received messages (their next event is >= t0 + lookahead)

The one place a message can cross ranks is ``_hop``: it returns the time of
the message's next event, and ``_process_until`` re-queues the message with
the same tie (src, seq).  When the link it will reserve next
(``msg.links[msg.hop]``) belongs to another rank, a windowed runner moves the
message into an outbox instead; the owner re-inserts it with the same
(time, src, seq) key, so the event order and every result are identical for
any number of ranks.  Per-source sequence numbers are per chip, so they do
not depend on the rank count either.
"""
import numpy as np

from libc.stdint cimport int64_t, int32_t, uint64_t, INT64_MAX
from libc.stdlib cimport malloc, realloc, free

from collsim.engine.events cimport (Event, heap_init, heap_clear, heap_free, heap_push, heap_pop,
                                    heap_replace_top)
from collsim.errors import ConfigError

cdef extern from "timing.h" nogil:
    int64_t collsim_serialization_ps(int64_t nbytes, int64_t rate_Bps)

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


cdef inline int64_t _max(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


cdef class Schedule:
    """Base class of event schedules: override ``start`` and ``deliver`` (cdef, nogil)."""

    cdef void start(self, Engine engine) noexcept nogil:
        pass

    cdef void deliver(self, Engine engine, const Message* msg, int64_t t_ps) noexcept nogil:
        pass


cdef class Engine:
    """``Engine(router, reduce_Bps, elem_bytes, data=None)``; ``run(schedule)`` -> makespan ps."""

    def __cinit__(self):
        self.msgs = NULL
        self.free_msgs = NULL
        self.heap.items = NULL
        self.heap.size = 0
        self.heap.capacity = 0

    def __init__(self, Router router not None, reduce_Bps, elem_bytes, DataPlane data=None):
        if int(reduce_Bps) <= 0:
            raise ConfigError("topology.chip.reduce_bandwidth", f"must be > 0 bytes/s, got {reduce_Bps!r}")
        if int(elem_bytes) <= 0:
            raise ConfigError("dtype", f"element size must be >= 1 byte, got {elem_bytes!r}")
        if data is not None:
            if data.chips != router.num_chips:
                raise ValueError(f"data plane has {data.chips} chips, the cluster {router.num_chips}")
            if data.elem_bytes != elem_bytes:
                raise ValueError(f"data plane elements are {data.elem_bytes} bytes, engine expects {elem_bytes}")
        self.router = router
        # the event tie-break packs (src, seq) into 64 bits: src takes what the chip count needs
        self.seq_bits = 64 - max(1, int(router.num_chips - 1).bit_length())
        self.reduce_Bps = reduce_Bps
        self.elem_bytes = elem_bytes
        self.data = data
        # the only O(links) and O(chips) state: 8 bytes per link, 16 per chip
        self._link_free_arr = np.zeros(router.num_links, dtype=np.int64)
        self._reduce_free_arr = np.zeros(router.num_chips, dtype=np.int64)
        self._next_seq_arr = np.zeros(router.num_chips, dtype=np.int64)
        self.link_free_ps = _pointer(self._link_free_arr)
        self.reduce_free_ps = _pointer(self._reduce_free_arr)
        self.next_seq = _pointer(self._next_seq_arr)
        if heap_init(&self.heap, 1024) != 0:
            raise MemoryError("engine: event heap")
        self.msg_capacity = 1024
        self.msgs = <Message*> malloc(self.msg_capacity * sizeof(Message))
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
        heap_free(&self.heap)
        free(self.msgs)
        free(self.free_msgs)

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
        """Bytes held by the engine's own arrays (links, chips, heap, message pool)."""
        return (self._link_free_arr.nbytes + self._reduce_free_arr.nbytes + self._next_seq_arr.nbytes
                + self.heap.capacity * sizeof(Event) + self.msg_capacity * (sizeof(Message) + sizeof(int64_t)))

    # --- run pieces ------------------------------------------------------------

    cdef int _begin(self, Schedule schedule) except -1:
        self._link_free_arr.fill(0)
        self._reduce_free_arr.fill(0)
        self._next_seq_arr.fill(0)
        heap_clear(&self.heap)
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
        self.now_ps = 0
        self.peak_in_flight = 0
        self.error = ERR_NONE
        with nogil:
            schedule.start(self)
        self._raise_if_failed()
        return 0

    cdef int64_t next_event_ps(self) noexcept nogil:
        return self.heap.items[0].time_ps if self.heap.size > 0 else INT64_MAX

    cdef int64_t _process_until(self, Schedule schedule, int64_t t_end_ps) noexcept nogil:
        cdef Event ev
        cdef Event* top
        cdef Message* msg
        cdef int64_t done = 0
        while self.heap.size > 0 and self.error == ERR_NONE:
            top = &self.heap.items[0]
            if top.time_ps >= t_end_ps:
                break
            self.now_ps = top.time_ps
            self.events += 1
            done += 1
            msg = &self.msgs[top.slot]
            if msg.hop < msg.nhops:
                # the message's next event replaces this one: one sift, no push
                heap_replace_top(&self.heap, self._hop(msg), top.tie, top.slot)
            else:
                heap_pop(&self.heap, &ev)
                self._deliver(schedule, ev.slot, ev.time_ps)
        return done

    cdef int64_t _hop(self, Message* msg) noexcept nogil:
        cdef int64_t link = msg.links[msg.hop]
        cdef int g = self.router.group_of(link)
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

    cdef void _deliver(self, Schedule schedule, int64_t slot, int64_t t_ps) noexcept nogil:
        # Work on a copy: the slot is recycled before deliver() so that the
        # schedule's own sends may reuse it (or grow the pool) safely.
        cdef Message msg = self.msgs[slot]
        self.free_msgs[self.num_free_msgs] = slot
        self.num_free_msgs += 1
        if msg.payload >= 0:
            self.data.apply(msg.payload, msg.dst, msg.elem_offset, msg.elem_count, msg.op == OP_REDUCE)
            msg.payload = -1
        schedule.deliver(self, &msg, t_ps)

    cdef int64_t _alloc_message(self) noexcept nogil:
        cdef int64_t capacity
        cdef Message* msgs
        cdef int64_t* free_list
        if self.num_free_msgs == 0:
            if self.num_msgs == self.msg_capacity:
                capacity = 2 * self.msg_capacity
                msgs = <Message*> realloc(self.msgs, capacity * sizeof(Message))
                if msgs == NULL:
                    return -1
                self.msgs = msgs
                free_list = <int64_t*> realloc(self.free_msgs, capacity * sizeof(int64_t))
                if free_list == NULL:
                    return -1
                self.free_msgs = free_list
                self.msg_capacity = capacity
            self.free_msgs[0] = self.num_msgs
            self.num_free_msgs = 1
            self.num_msgs += 1
        self.num_free_msgs -= 1
        if self.num_msgs - self.num_free_msgs > self.peak_in_flight:
            self.peak_in_flight = self.num_msgs - self.num_free_msgs
        return self.free_msgs[self.num_free_msgs]

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
        cdef int64_t n = self.router.num_chips
        cdef int64_t slot, seq
        cdef Message* msg
        if self.error != ERR_NONE:
            return -1
        if src < 0 or src >= n or dst < 0 or dst >= n:
            self._fail(ERR_BAD_CHIP, src, dst, 0)
            return -1
        if t_ps < self.now_ps:
            self._fail(ERR_PAST, t_ps, self.now_ps, 0)
            return -1
        if elem_offset < 0 or elem_count < 0 or (self.data is not None and elem_offset + elem_count > self.data.count):
            self._fail(ERR_BAD_SLICE, elem_offset, elem_count, self.data.count if self.data is not None else -1)
            return -1
        slot = self._alloc_message()
        if slot < 0:
            self._fail(ERR_NOMEM, 0, 0, 0)
            return -1
        seq = self.next_seq[src]
        if (<uint64_t> seq) >> self.seq_bits:
            self._fail(ERR_SEQ, src, seq, 0)
            return -1
        self.next_seq[src] = seq + 1
        msg = &self.msgs[slot]
        msg.src = src
        msg.dst = dst
        msg.elem_offset = elem_offset
        msg.elem_count = elem_count
        msg.nbytes = elem_count * self.elem_bytes
        msg.seq = seq
        msg.head_ps = t_ps
        msg.tail_ps = t_ps
        msg.tag[0] = tag0
        msg.tag[1] = tag1
        msg.tag[2] = tag2
        msg.tag[3] = tag3
        msg.op = op
        msg.hop = 0
        msg.nhops = self.router.route(src, dst, msg.links)
        msg.payload = -1
        if self.data is not None:
            msg.payload = self.data.snapshot(src, elem_offset, elem_count)
            if msg.payload < 0:
                self._fail(ERR_NOMEM, 0, 0, 0)
                return -1
        if heap_push(&self.heap, t_ps, (<uint64_t> src << self.seq_bits) | <uint64_t> seq, slot) != 0:
            self._fail(ERR_NOMEM, 0, 0, 0)
            return -1
        return seq

    cdef int64_t reduce(self, int64_t chip, int64_t t_ps, int64_t nbytes) noexcept nogil:
        cdef int64_t start, end
        if chip < 0 or chip >= self.router.num_chips:
            self._fail(ERR_BAD_CHIP, chip, chip, 0)
            return t_ps
        start = _max(t_ps, self.reduce_free_ps[chip])
        if nbytes != self.reduce_nbytes_cached:
            self.reduce_nbytes_cached = nbytes
            self.reduce_ps_cached = collsim_serialization_ps(nbytes, self.reduce_Bps)
        end = start + self.reduce_ps_cached
        self.reduce_free_ps[chip] = end
        return end


cdef int64_t* _pointer(arr):
    """Data pointer of a C-contiguous int64 numpy array (owned by the caller)."""
    cdef int64_t[::1] view = arr
    if view.shape[0] == 0:
        return NULL
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
        if np.any((op != OP_COPY) & (op != OP_REDUCE)):
            raise ValueError("op must be OP_COPY (0) or OP_REDUCE (1)")
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
