# Event queue of the engine, ordered by (time_ps, tie) with tie = (src << seq_bits) | seq,
# i.e. by (time, source chip, per-source sequence number).  (src, seq) names a message
# uniquely and a message has at most one pending event, so the order is total and the
# run is deterministic.  Plain C functions on a struct, in the style of
# sklearn/utils/_heap: this file declares, events.pyx implements.
#
# `top` always holds the smallest pending event; the engine reads it in place.  `size`
# counts every pending event (top included).  Behind the top (see events.pyx):
#   * `now`:    the batch: the events at the origin time (the time of the last chain
#               emptied), sorted by tie, served from `now_head`;
#   * `side`:   events pushed at or before the origin time while `now` is being served
#               (a chip delivering at t sends at t): a 4-ary min-heap on (time, tie);
#   * `chains`: events later than the origin, one chain of fixed-size blocks per
#               distinct time (blocks from a pool shared by all chains), found by time
#               through an open-addressing hash table; a binary min-heap over the
#               distinct times says which chain is next.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "eventkey.h" nogil:
    enum: COLLSIM_BLOCK_EVENTS    # events per pool block
    int collsim_key_before(int64_t time_a, uint64_t tie_a, int64_t time_b, uint64_t tie_b)

ctypedef struct Event:
    int64_t time_ps
    uint64_t tie          # (src << seq_bits) | seq: the tie-break, packed
    int64_t slot          # message slot in the engine's pool

ctypedef struct EventArray:
    Event* items
    int64_t size
    int64_t capacity

ctypedef struct EventBlock:
    EventBlock* next      # next block of the same chain, or of the free list
    EventBlock* allocated # every block ever allocated, for queue_free
    int64_t count
    Event items[COLLSIM_BLOCK_EVENTS]

ctypedef struct EventChain:
    EventBlock* head      # NULL when the chain is empty
    EventBlock* tail      # last block; when empty, a shared full sentinel (one test per append)
    int64_t time_ps       # the time of every event in the chain

ctypedef struct PendingTime:
    int64_t time_ps
    int64_t chain         # index in `chains`

ctypedef struct EventQueue:
    Event top             # the smallest pending event (valid when size > 0)
    int64_t size          # pending events, top included
    int64_t capacity      # events the queue's arrays and blocks hold room for (memory accounting)
    int64_t origin_ps     # every event in `now` has this time; every chained one is later
    EventArray now        # the batch, sorted by tie: items[now_head:size] are pending
    int64_t now_head
    EventArray side       # 4-ary min-heap on (time, tie); every time <= origin_ps
    EventArray scratch    # radix-sort buffer for `now`
    EventChain* chains    # chain records; those not in use are on `free_chains`
    int64_t* free_chains
    int64_t num_free_chains
    int64_t chains_made   # records ever handed out since the last clear
    int64_t chain_capacity
    PendingTime* table    # open addressing, linear probing: (time, chain) per entry, chain -1 empty
    int64_t table_bits    # the table has 2 ** table_bits entries, at most half of them used
    PendingTime* times    # binary min-heap of the distinct chained times
    int64_t num_times
    int64_t times_capacity
    int64_t hint_ps       # the last chained time pushed (-1: none) ...
    int64_t hint_chain    # ... and its chain: lockstep pushes repeat a time, skip the table
    int64_t hint2_ps      # the time pushed before it, and its chain
    int64_t hint2_chain
    EventBlock* free_blocks    # the pool: most recently freed first (still in cache)
    EventBlock* all_blocks

# Set up an empty queue; returns 0, or -1 when out of memory.
cdef int queue_init(EventQueue* queue) noexcept nogil
cdef void queue_clear(EventQueue* queue) noexcept nogil
cdef void queue_free(EventQueue* queue) noexcept nogil
# Slow paths of the inline operations below (events.pyx).
cdef void _out_of_memory() noexcept nogil
cdef int _chain_push_slow(EventQueue* queue, EventChain* chain, const Event* ev) noexcept nogil
cdef int _push_later_slow(EventQueue* queue, const Event* ev) noexcept nogil
cdef int _insert_slow(EventQueue* queue, const Event* ev) noexcept nogil
cdef void _side_pop(EventQueue* queue, Event* out) noexcept nogil
cdef void _refill(EventQueue* queue) noexcept nogil

# The operations the engine runs once or twice per event are inline here, so that
# they compile into the engine's loop (a call across modules goes through a
# function pointer and inlines nothing); their rare cases call the slow paths.
#
# queue_push: insert an event (grows the arrays); returns 0, or -1 when out of memory.
# queue_pop: remove the smallest event (the top) into *out.  The queue must not be empty.
# queue_replace_top: replace the top by a new event (pop + push in one step); the queue
# must not be empty.  The engine uses it when a message moves on to its next hop.

cdef inline Event _event(int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil:
    cdef Event ev
    ev.time_ps = time_ps
    ev.tie = tie
    ev.slot = slot
    return ev


cdef inline bint _before(const Event* a, const Event* b) noexcept nogil:
    """Strict order (time, src, seq): never memory addresses."""
    return collsim_key_before(a.time_ps, a.tie, b.time_ps, b.tie)


cdef inline int _chain_push(EventQueue* queue, EventChain* chain, const Event* ev) noexcept nogil:
    cdef EventBlock* block = chain.tail
    cdef int64_t n = block.count
    if n == COLLSIM_BLOCK_EVENTS:
        return _chain_push_slow(queue, chain, ev)
    block.items[n] = ev[0]
    block.count = n + 1
    return 0


cdef inline int _push_later(EventQueue* queue, const Event* ev) noexcept nogil:
    """ev is later than the origin: append it to its time's chain; 0, or -1 when out of memory.

    Lockstep pushes repeat a time: the chain of the last time pushed is at hand.
    """
    if ev.time_ps == queue.hint_ps:
        return _chain_push(queue, &queue.chains[queue.hint_chain], ev)
    if ev.time_ps == queue.hint2_ps:
        return _chain_push(queue, &queue.chains[queue.hint2_chain], ev)
    return _push_later_slow(queue, ev)


cdef inline int _insert_rest(EventQueue* queue, const Event* ev) noexcept nogil:
    """Put ev (not the top) behind the top; 0, or -1 when out of memory."""
    if ev.time_ps > queue.origin_ps:
        return _push_later(queue, ev)
    return _insert_slow(queue, ev)


cdef inline void _take_rest(EventQueue* queue, Event* out) noexcept nogil:
    """Remove the smallest event held behind the top into *out (one must exist)."""
    cdef Event* head
    if queue.now_head == queue.now.size:
        if queue.side.size > 0:
            _side_pop(queue, out)
            return
        _refill(queue)
    head = &queue.now.items[queue.now_head]
    if queue.side.size > 0 and _before(&queue.side.items[0], head):
        _side_pop(queue, out)
        return
    out[0] = head[0]
    queue.now_head += 1


cdef inline int queue_push(EventQueue* queue, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil:
    cdef Event ev = _event(time_ps, tie, slot)
    if queue.size == 0:
        queue.top = ev
    elif _before(&ev, &queue.top):
        # the new event is the minimum: the old top joins the rest
        if _insert_rest(queue, &queue.top) != 0:
            return -1
        queue.top = ev
    elif _insert_rest(queue, &ev) != 0:
        return -1
    queue.size += 1
    return 0


cdef inline void queue_pop(EventQueue* queue, Event* out) noexcept nogil:
    out[0] = queue.top
    queue.size -= 1
    if queue.size > 0:
        _take_rest(queue, &queue.top)


cdef inline void queue_replace_top(EventQueue* queue, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil:
    cdef Event ev = _event(time_ps, tie, slot)
    if queue.size == 1:
        queue.top = ev
        return
    if _insert_rest(queue, &ev) != 0:
        _out_of_memory()
    _take_rest(queue, &queue.top)


# Slot of the event k places behind the next one in the batch (k >= 0), or -1: a hint
# for prefetching the messages that are about to be served (the pool is large and
# its slots are touched in no particular order).
cdef inline int64_t queue_upcoming_slot(const EventQueue* queue, int64_t k) noexcept nogil:
    cdef int64_t i = queue.now_head + k
    return queue.now.items[i].slot if i < queue.now.size else -1
