"""Ring collectives in C: the self-timed event schedule and the symmetric-ring model.

See collectives/ring.py for the algorithm, the formulas and when the two agree.

Schedule
--------
Position p of the ring (chip ``order[p]``) starts by sending, for each
channel in channel order, the piece of its step-0 block to its neighbour in
the channel's direction.  On arrival of step g:

* a reduce step (g < reduce_steps): the chip's reduction unit reduces the
  piece (``engine.reduce``), then the chip sends step g + 1 of the same piece
  at the completion time (the engine's makespan covers the reduction that
  ends a reduce-scatter chain);
* a copy step: the chip forwards step g + 1 at once (unless g was the last).

A piece that is empty is never sent, and since every message of a chain
carries the same piece, the whole chain is skipped.

With several channels a chip reduces its arrivals in order of arrival time,
then channel.  The engine delivers equal-time messages in source-chip order,
so an arrival at t is held and reduced at the end of the instant t
(``Engine.call_at_end_of_instant``: after every delivery at t, before
anything later, and no event); the reduction still starts at t, so no time
is lost.  (A strict
(step, channel) order would be deterministic too, but it couples the
channels: on a multi-node ring the two directions cross the slow NIC hops at
different steps, and each would wait for the other.)

Sends of one channel leave a chip in step order: a copy that arrives while
an earlier step of the same channel is still being reduced waits for it.

State is O(chips x channels): the ring order and its inverse, the instant
each chip last asked to settle, and per (chip, channel) the last send and
one held arrival.
"""
import numpy as np

from libc.stdint cimport int64_t, INT64_MAX
from libc.stdlib cimport calloc, malloc, free

from collsim.engine.core cimport OP_COPY, OP_REDUCE
from collsim.engine.intmath cimport int_max as _max, wrap_once as _wrap

KIND_CODES = {
    "all_reduce": RING_ALL_REDUCE,
    "reduce_scatter": RING_REDUCE_SCATTER,
    "all_gather": RING_ALL_GATHER,
}
"""Collective name -> the ``kind`` code RingSchedule takes."""


cdef class RingSchedule(Schedule):
    """``RingSchedule(order, count, channels, bidirectional, kind)``.

    ``order``: the ring (position -> chip, a permutation of 0..n-1);
    ``count``: elements per chip after ``effective_count``; ``channels``:
    parallel rings requested (only min(channels, largest block) carry data);
    ``kind``: RING_ALL_REDUCE (0), RING_REDUCE_SCATTER (1), RING_ALL_GATHER (2).
    """

    def __init__(self, order, int64_t count, int64_t channels, bint bidirectional, int kind):
        order_arr = np.ascontiguousarray(order, dtype=np.int64)
        cdef int64_t n = order_arr.shape[0]
        if n < 1:
            raise ValueError("the ring needs at least one chip")
        if count < 0 or channels < 1:
            raise ValueError(f"count must be >= 0 and channels >= 1, got {count} and {channels}")
        if kind not in (RING_ALL_REDUCE, RING_REDUCE_SCATTER, RING_ALL_GATHER):
            raise ValueError(f"unknown ring collective code {kind}")
        if order_arr.min() < 0 or order_arr.max() >= n or np.unique(order_arr).shape[0] != n:
            raise ValueError("order must be a permutation of 0..n-1")
        position_arr = np.empty(n, dtype=np.int64)
        position_arr[order_arr] = np.arange(n, dtype=np.int64)
        largest_block = (count + n - 1) // n   # C division (cdivision): no negative floor trick
        active = max(1, min(channels, largest_block))
        self.n = n
        self.count = count
        self.channels = active
        self.kind = kind
        self.block_base = count // n
        self.block_extra = count % n
        self.piece_q[0] = self.block_base // active
        self.piece_rem[0] = self.block_base % active
        self.piece_q[1] = (self.block_base + 1) // active
        self.piece_rem[1] = (self.block_base + 1) % active
        self.sigma = 0 if kind == RING_ALL_GATHER else 1
        self.steps = 2 * (n - 1) if kind == RING_ALL_REDUCE else n - 1
        self.reduce_steps = 0 if kind == RING_ALL_GATHER else n - 1
        self.order = order_arr
        self.position = position_arr
        self.direction = np.array([-1 if (bidirectional and c % 2 == 1) else 1 for c in range(active)], dtype=np.int64)
        free(self.lanes)  # (a second __init__ replaces them)
        self.lanes = <Lane*> calloc(n * active, sizeof(Lane))
        if self.lanes == NULL:
            raise MemoryError(f"ring schedule: {n * active:,} lanes")
        self.settle_ps = np.full(n, -1, dtype=np.int64)

    def __cinit__(self):
        self.lanes = NULL

    def __dealloc__(self):
        free(self.lanes)

    cdef inline int64_t _block_at(self, int64_t p, int64_t c, int64_t g) noexcept nogil:
        """Block (chip id) whose piece step g of channel c carries out of position p."""
        # g + sigma <= steps + 1 <= 2n - 1: one subtraction brings it into [0, n)
        cdef int64_t back = g + self.sigma
        if back >= self.n:
            back -= self.n
        return self.order[_wrap(p - self.direction[c] * back, self.n)]

    cdef inline void _piece(self, int64_t block, int64_t c, int64_t* offset, int64_t* count) noexcept nogil:
        """Channel c's slice of block ``block``: split_counts(count, n), then split_counts(|block|, C)."""
        cdef int64_t base = self.block_base, extra = self.block_extra
        cdef bint larger = block < extra
        cdef int64_t start = block * base + (block if larger else extra)
        cdef int64_t q = self.piece_q[larger], rem = self.piece_rem[larger]
        count[0] = q + (1 if c < rem else 0)
        offset[0] = start + c * q + (c if c < rem else rem)

    cdef void _send_step(self, Engine engine, int64_t p, int64_t c, int64_t g, int64_t t_ps) noexcept nogil:
        cdef int64_t block = self._block_at(p, c, g)
        cdef int64_t offset, count, chip = self.order[p]
        cdef Lane* lane = &self.lanes[chip * self.channels + c]
        self._piece(block, c, &offset, &count)
        if count == 0:
            return
        t_ps = _max(t_ps, lane.last_send_ps)   # in step order (equal times: seq keeps the order)
        lane.last_send_ps = t_ps
        engine.send(chip, self.order[_wrap(p + self.direction[c], self.n)], t_ps, offset, count,
                    OP_REDUCE if g < self.reduce_steps else OP_COPY, g, c, block, 0)

    cdef void _reduce_and_forward(self, Engine engine, int64_t p, int64_t c, int64_t g, int64_t t_ps) noexcept nogil:
        # the piece that arrived with step g is the one step g + 1 carries on
        cdef int64_t block = self._block_at(p, c, g + 1)
        cdef int64_t offset, count, chip = self.order[p]
        self._piece(block, c, &offset, &count)
        cdef int64_t done_ps = engine.reduce(chip, t_ps, count * engine.elem_bytes)
        if g + 1 < self.steps:
            self._send_step(engine, p, c, g + 1, done_ps)

    cdef void _hold(self, Engine engine, int64_t p, int64_t c, int64_t g, int64_t t_ps) noexcept nogil:
        """Keep channel c's step-g arrival at t until the end of the instant t."""
        cdef int64_t chip = self.order[p]
        cdef Lane* lane = &self.lanes[chip * self.channels + c]
        # a channel's arrivals are >= 1 ps apart (each holds its link >= 1 ps),
        # and the instant ends before the next: one arrival is held at most
        lane.held_ps = t_ps
        lane.held_step = g
        if self.settle_ps[chip] != t_ps:
            self.settle_ps[chip] = t_ps
            engine.call_at_end_of_instant(chip)

    cdef void end_of_instant(self, Engine engine, int64_t chip, int64_t t_ps) noexcept nogil:
        """Reduce, channel by channel, everything that arrived at t_ps."""
        cdef int64_t c, arrived_ps
        cdef int64_t p = self.position[chip]
        cdef Lane* lane
        for c in range(self.channels):
            lane = &self.lanes[chip * self.channels + c]
            arrived_ps = lane.held_ps
            if arrived_ps < 0:
                continue
            lane.held_ps = -1
            self._reduce_and_forward(engine, p, c, lane.held_step, arrived_ps)

    cdef void start(self, Engine engine) noexcept nogil:
        cdef int64_t p, c
        for p in range(self.n):
            self.settle_ps[p] = -1
        for p in range(self.n * self.channels):
            self.lanes[p].last_send_ps = 0
            self.lanes[p].held_ps = -1
        for p in range(self.n):
            for c in range(self.channels):
                self._send_step(engine, p, c, 0, 0)

    cdef void deliver(self, Engine engine, const Message* msg, int64_t t_ps) noexcept nogil:
        cdef int64_t g = msg.tag[0], c = msg.tag[1]
        cdef int64_t p = self.position[msg.dst]
        if g < self.reduce_steps:
            if self.channels == 1:
                self._reduce_and_forward(engine, p, 0, g, t_ps)
            else:
                self._hold(engine, p, c, g, t_ps)
        elif g + 1 < self.steps:
            self._send_step(engine, p, c, g + 1, t_ps)


cdef enum:
    _SEND = 0
    _ARRIVE = 1
    _DONE = 2


ctypedef struct _Model:
    # the problem
    int64_t steps
    int64_t reduce_steps
    int64_t alpha_ps
    int64_t channels
    const int64_t* s_ps
    const int64_t* r_ps
    const int64_t* link_group
    # the state: per channel its next event (time, step, kind) and finish time;
    # per link group and for the reduction unit, when they are free
    int64_t* t
    int64_t* g
    int64_t* kind
    int64_t* finish
    int64_t link_free[2]
    int64_t reduce_free


cdef inline int64_t _next_channel(_Model* m) noexcept nogil:
    """The channel whose event comes next: earliest time, ties to the lower channel; -1 when all are done."""
    cdef int64_t c, best = -1
    for c in range(m.channels):
        if m.kind[c] != _DONE and (best < 0 or m.t[c] < m.t[best]):
            best = c
    return best


cdef int64_t _step(_Model* m, int64_t c) noexcept nogil:
    """Process channel c's next event; return a code of every comparison it made."""
    cdef int64_t now = m.t[c], grp, start, ready
    cdef int64_t code = c * 16 + m.kind[c] * 8
    if m.kind[c] == _SEND:
        grp = m.link_group[c]
        if now >= m.link_free[grp]:
            code += 4
        start = _max(now, m.link_free[grp])
        m.link_free[grp] = start + m.s_ps[c]
        m.t[c] = start + m.s_ps[c] + m.alpha_ps
        m.kind[c] = _ARRIVE
        return code
    ready = now
    if m.g[c] < m.reduce_steps:
        code += 4
        if now >= m.reduce_free:
            code += 2
        m.reduce_free = _max(now, m.reduce_free) + m.r_ps[c]
        ready = m.reduce_free
    if m.g[c] + 1 < m.steps:
        code += 1
        m.g[c] += 1
        m.t[c] = ready
        m.kind[c] = _SEND
    else:
        m.finish[c] = ready
        m.kind[c] = _DONE
    return code


cdef int64_t _period(_Model* m, int64_t* codes, int64_t capacity) noexcept nogil:
    """Process events up to channel 0's next send (or the end).  Returns how many,
    with their codes in codes[0:capacity]; -1 if there were more than capacity."""
    cdef int64_t c, count = 0
    while True:
        c = _next_channel(m)
        if c < 0 or (count > 0 and c == 0 and m.kind[0] == _SEND):
            return count
        if count >= capacity:
            _step(m, c)
            return -1
        codes[count] = _step(m, c)
        count += 1


cdef void _save(_Model* m, int64_t* out) noexcept nogil:
    """State as a vector: t, g, kind per channel, then link_free[0..1], reduce_free."""
    cdef int64_t c, C = m.channels
    for c in range(C):
        out[c] = m.t[c]
        out[C + c] = m.g[c]
        out[2 * C + c] = m.kind[c]
    out[3 * C] = m.link_free[0]
    out[3 * C + 1] = m.link_free[1]
    out[3 * C + 2] = m.reduce_free


cdef void _restore(_Model* m, const int64_t* v) noexcept nogil:
    cdef int64_t c, C = m.channels
    for c in range(C):
        m.t[c] = v[c]
        m.g[c] = v[C + c]
        m.kind[c] = v[2 * C + c]
    m.link_free[0] = v[3 * C]
    m.link_free[1] = v[3 * C + 1]
    m.reduce_free = v[3 * C + 2]


cdef void _advance(_Model* m, const int64_t* delta, int64_t k) noexcept nogil:
    """Add k periods of the per-component increments ``delta`` (kinds do not change)."""
    cdef int64_t c, C = m.channels
    for c in range(C):
        if m.kind[c] != _DONE:
            m.t[c] += k * delta[c]
            m.g[c] += k * delta[C + c]
    m.link_free[0] += k * delta[3 * C]
    m.link_free[1] += k * delta[3 * C + 1]
    m.reduce_free += k * delta[3 * C + 2]


cdef bint _same(const int64_t* a, const int64_t* b, int64_t n) noexcept nogil:
    cdef int64_t i
    for i in range(n):
        if a[i] != b[i]:
            return False
    return True


cdef bint _all_zero(const int64_t* a, int64_t n) noexcept nogil:
    cdef int64_t i
    for i in range(n):
        if a[i] != 0:
            return False
    return True


cdef int64_t _jump_bound(_Model* m, const int64_t* delta) noexcept nogil:
    """Most periods every channel can skip and still run one more period in its current phase."""
    cdef int64_t c, dg, end, k = INT64_MAX
    for c in range(m.channels):
        dg = delta[m.channels + c]
        if m.kind[c] == _DONE or dg <= 0:
            continue
        end = m.reduce_steps if m.g[c] < m.reduce_steps else m.steps
        k = min(k, (end - 1 - m.g[c]) // dg - 1)
    return k


cdef int64_t symmetric_ring_ps(int64_t steps, int64_t reduce_steps, int64_t alpha_ps,
                               const int64_t* s_ps, const int64_t* r_ps, const int64_t* link_group,
                               int64_t channels) noexcept nogil:
    """Makespan of the symmetric ring (collectives/ring.py); -1 when out of memory.

    Every chip does the same thing at the same time, so one chip stands for
    all: the step-g piece a channel receives was sent by its neighbour when
    this chip sent its own step g.  Each channel is then one chain of events
    (send, arrive, send, ...) and the chains meet only at the chip's links
    (FIFO in send order) and its reduction unit (FIFO by arrival, ties by
    channel), the engine's rules.  Events are taken in (time, channel) order.

    Shortcut.  Cut the run into periods, from one send of channel 0 to the
    next.  While every comparison a period makes (which event is next, which
    side of each max wins) comes out the same, a period adds the same
    increment to every state variable: the state is affine in the number of
    periods.  So when two consecutive periods have equal increments and
    comparisons, jump K periods ahead and simulate one more: if it still
    matches, every comparison held all along (an affine margin with the same
    sign at both ends keeps it in between) and the jump is exact; otherwise
    undo it and try K / 2.  Channels with unequal pieces drift apart at a
    constant rate and are handled the same way.  A run costs a few periods
    per phase plus O(log n) checks instead of 2(n-1) steps.
    """
    cdef int64_t C = channels
    cdef int64_t vec = 3 * C + 3                  # state vector length
    cdef int64_t capacity = 64 * C + 64           # codes per period
    cdef int64_t* buf = <int64_t*> malloc((4 * C + 6 * vec + 3 * capacity) * sizeof(int64_t))
    if buf == NULL:
        return -1
    cdef _Model m
    m.steps = steps
    m.reduce_steps = reduce_steps
    m.alpha_ps = alpha_ps
    m.channels = C
    m.s_ps = s_ps
    m.r_ps = r_ps
    m.link_group = link_group
    m.t = buf
    m.g = buf + C
    m.kind = buf + 2 * C
    m.finish = buf + 3 * C
    cdef int64_t* start = buf + 4 * C             # state at the start of the current period
    cdef int64_t* delta = start + vec              # its increment
    cdef int64_t* prev_delta = delta + vec         # the previous period's increment
    cdef int64_t* jumped = prev_delta + vec        # state before a jump attempt
    cdef int64_t* check = jumped + vec
    cdef int64_t* check_delta = check + vec
    cdef int64_t* codes = check_delta + vec
    cdef int64_t* prev_codes = codes + capacity
    cdef int64_t* check_codes = prev_codes + capacity
    cdef int64_t n_codes, n_prev = -1, n_check, c, i, k, result = 0
    m.link_free[0] = m.link_free[1] = 0
    m.reduce_free = 0
    for c in range(C):
        m.t[c] = 0
        m.g[c] = 0
        m.kind[c] = _SEND if steps > 0 else _DONE
        m.finish[c] = 0
    while _next_channel(&m) >= 0:
        _save(&m, start)
        n_codes = _period(&m, codes, capacity)
        _save(&m, delta)
        for i in range(vec):
            delta[i] -= start[i]
        # same comparisons, same increments, and every channel back in the same kind of event
        if (n_codes > 0 and n_codes == n_prev and _same(codes, prev_codes, n_codes)
                and _same(delta, prev_delta, vec) and _all_zero(delta + 2 * C, C)):
            k = _jump_bound(&m, delta)
            while k >= 1:
                _save(&m, jumped)
                _advance(&m, delta, k)
                _save(&m, check)
                n_check = _period(&m, check_codes, capacity)
                _save(&m, check_delta)
                for i in range(vec):
                    check_delta[i] -= check[i]
                if n_check == n_codes and _same(check_codes, codes, n_codes) and _same(check_delta, delta, vec):
                    break
                _restore(&m, jumped)
                k //= 2
        n_prev = n_codes
        for i in range(vec):
            prev_delta[i] = delta[i]
        if n_codes > 0:
            for i in range(n_codes):
                prev_codes[i] = codes[i]
    for c in range(C):
        result = _max(result, m.finish[c])
    free(buf)
    return result


def symmetric_ring_time_ps(int64_t steps, int64_t reduce_steps, int64_t alpha_ps, s_ps, r_ps, link_group):
    """Python entry to ``symmetric_ring_ps`` (per-channel arrays of equal length)."""
    cdef const int64_t[::1] s = np.ascontiguousarray(s_ps, dtype=np.int64)
    cdef const int64_t[::1] r = np.ascontiguousarray(r_ps, dtype=np.int64)
    cdef const int64_t[::1] grp = np.ascontiguousarray(link_group, dtype=np.int64)
    cdef int64_t channels = s.shape[0]
    cdef int64_t result
    if channels < 1 or r.shape[0] != channels or grp.shape[0] != channels:
        raise ValueError("s_ps, r_ps and link_group need one entry per channel (at least one)")
    if steps < 0 or not 0 <= reduce_steps <= steps:
        raise ValueError(f"need 0 <= reduce_steps <= steps, got {reduce_steps} and {steps}")
    for c in range(channels):
        if grp[c] not in (0, 1):
            raise ValueError("link_group entries must be 0 or 1")
    with nogil:
        result = symmetric_ring_ps(steps, reduce_steps, alpha_ps, &s[0], &r[0], &grp[0], channels)
    if result < 0:
        raise MemoryError("ring model")
    return result
