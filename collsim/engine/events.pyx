"""Event queue of the engine: a radix heap with an explicit top (see events.pxd).

Why a radix heap.  The engine's keys (time, tie) are integers and almost never
go below the last key taken out: a message's next event is later than the
current one.  A radix heap (Ahuja, Mehlhorn, Orlin, Tarjan 1990) keeps events
in 129 buckets by the highest bit in which their key differs from the origin
(the last key taken out of the buckets); a push is an append, and taking the
minimum scans only the first non-empty bucket, re-bucketing its events into
lower buckets around the new origin.  Every access is sequential, so a queue of
millions of events (a million-chip run) costs a few passes over memory per
event instead of a cache miss per level of a comparison heap, which spent more
than half the engine's time at that scale.

Keys below the origin do occur: a chip delivering at time t sends at time t,
and its tie may be smaller than that of the event last taken out.  They go to
`early`, a small 4-ary min-heap; its keys are all below the origin, hence
below every bucketed key, so it is served first.  items[0] holds the minimum
of everything (the engine reads it in place); pop refills it.

The order served is exactly "smallest pending key first", as with any
priority queue: results do not depend on the structure.
"""
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, realloc, free, abort
from libc.stdio cimport fprintf, stderr

cdef extern from "eventkey.h" nogil:
    int collsim_key_before(int64_t time_a, uint64_t tie_a, int64_t time_b, uint64_t tie_b)
    int collsim_key_bucket(int64_t time, uint64_t tie, int64_t last_time, uint64_t last_tie)
    int collsim_lowest_bit(uint64_t w)


cdef inline bint _before(const Event* a, const Event* b) noexcept nogil:
    """Strict order (time, src, seq): never memory addresses."""
    return collsim_key_before(a.time_ps, a.tie, b.time_ps, b.tie)


# --- growable arrays -----------------------------------------------------------------

cdef int _reserve(EventHeap* heap, EventBucket* b) noexcept nogil:
    """Room for one more event in b; 0, or -1 when out of memory."""
    cdef int64_t capacity
    cdef Event* items
    if b.size < b.capacity:
        return 0
    capacity = 2 * b.capacity if b.capacity >= 8 else 16
    items = <Event*> realloc(b.items, capacity * sizeof(Event))
    if items == NULL:
        return -1
    heap.capacity += capacity - b.capacity
    b.items = items
    b.capacity = capacity
    return 0


cdef void _out_of_memory() noexcept nogil:
    # Only reachable while re-bucketing inside pop, which has no error path (the
    # engine's loop cannot undo a half-served event): stop loudly rather than lose events.
    fprintf(stderr, b"collsim: out of memory in the event queue\n")
    abort()


# --- the early heap: 4-ary, children of i are 4i+1..4i+4 ------------------------------

cdef inline int64_t _min_child(const Event* items, int64_t first, int64_t n) noexcept nogil:
    """Index of the smallest of the children first..min(first+3, n-1) (first < n)."""
    cdef int64_t a, b
    if first + 3 < n:
        a = first + _before(&items[first + 1], &items[first])
        b = first + 2 + _before(&items[first + 3], &items[first + 2])
        return b if _before(&items[b], &items[a]) else a
    a = first
    for b in range(first + 1, n):
        if _before(&items[b], &items[a]):
            a = b
    return a


cdef void _early_push(EventBucket* h, const Event* ev) noexcept nogil:
    """Sift a hole up from the end, drop ev into it (room reserved by the caller)."""
    cdef int64_t i = h.size, parent
    cdef Event* items = h.items
    h.size += 1
    while i > 0:
        parent = (i - 1) >> 2
        if not _before(ev, &items[parent]):
            break
        items[i] = items[parent]
        i = parent
    items[i] = ev[0]


cdef void _early_pop(EventBucket* h, Event* out) noexcept nogil:
    cdef Event* items = h.items
    cdef Event last
    cdef int64_t i = 0, child = 1, n
    out[0] = items[0]
    h.size -= 1
    n = h.size
    if n == 0:
        return
    last = items[n]
    while child < n:
        child = _min_child(items, child, n)
        if not _before(&items[child], &last):
            break
        items[i] = items[child]
        i = child
        child = 4 * i + 1
    items[i] = last


# --- the buckets -----------------------------------------------------------------------

cdef inline int _bucket_of(const EventHeap* heap, const Event* ev) noexcept nogil:
    return collsim_key_bucket(ev.time_ps, ev.tie, heap.last_time_ps, heap.last_tie)


cdef int _insert_rest(EventHeap* heap, const Event* ev) noexcept nogil:
    """Put ev (not the top) into a bucket or the early heap; 0, or -1 when out of memory."""
    cdef int b
    cdef EventBucket* bucket
    if collsim_key_before(ev.time_ps, ev.tie, heap.last_time_ps, heap.last_tie):
        if _reserve(heap, &heap.early) != 0:
            return -1
        _early_push(&heap.early, ev)
        return 0
    b = _bucket_of(heap, ev)
    bucket = &heap.bucket[b]
    if _reserve(heap, bucket) != 0:
        return -1
    bucket.items[bucket.size] = ev[0]
    bucket.size += 1
    heap.nonempty[b >> 6] |= (<uint64_t> 1) << (b & 63)
    return 0


cdef int _first_nonempty(const EventHeap* heap) noexcept nogil:
    """Lowest non-empty bucket (some bucket must be non-empty)."""
    if heap.nonempty[0]:
        return collsim_lowest_bit(heap.nonempty[0])
    if heap.nonempty[1]:
        return 64 + collsim_lowest_bit(heap.nonempty[1])
    return 128 + collsim_lowest_bit(heap.nonempty[2])


cdef void _take_rest(EventHeap* heap, Event* out) noexcept nogil:
    """Remove the smallest event held outside the top into *out (one must exist)."""
    cdef int b, j
    cdef int64_t k, m, n
    cdef EventBucket* bucket
    cdef EventBucket* dest
    cdef Event* items
    if heap.early.size > 0:
        _early_pop(&heap.early, out)
        return
    b = _first_nonempty(heap)
    bucket = &heap.bucket[b]
    items = bucket.items
    n = bucket.size
    if b > 0:
        # the bucket's minimum becomes the origin; the others move to lower buckets
        m = 0
        for k in range(1, n):
            if _before(&items[k], &items[m]):
                m = k
        heap.last_time_ps = items[m].time_ps
        heap.last_tie = items[m].tie
        out[0] = items[m]
        for k in range(n):
            if k == m:
                continue
            j = _bucket_of(heap, &items[k])       # < b, and > 0 (keys are unique)
            dest = &heap.bucket[j]
            if _reserve(heap, dest) != 0:
                _out_of_memory()
            dest.items[dest.size] = items[k]
            dest.size += 1
            heap.nonempty[j >> 6] |= (<uint64_t> 1) << (j & 63)
        bucket.size = 0
        heap.nonempty[b >> 6] &= ~((<uint64_t> 1) << (b & 63))
        return
    # bucket 0 holds the one key equal to the origin
    out[0] = items[0]
    bucket.size = 0
    heap.nonempty[0] &= ~(<uint64_t> 1)


# --- the interface (events.pxd) ----------------------------------------------------------

cdef int heap_init(EventHeap* heap, int64_t capacity) noexcept nogil:
    """`capacity` is only a hint: the buckets grow as needed."""
    cdef int b
    heap.items = <Event*> malloc(sizeof(Event))
    heap.capacity = 1 if heap.items != NULL else 0
    for b in range(COLLSIM_KEY_BUCKETS):
        heap.bucket[b].items = NULL
        heap.bucket[b].size = 0
        heap.bucket[b].capacity = 0
    heap.early.items = NULL
    heap.early.size = 0
    heap.early.capacity = 0
    heap_clear(heap)
    return 0 if heap.items != NULL else -1


cdef void heap_clear(EventHeap* heap) noexcept nogil:
    cdef int b
    heap.size = 0
    for b in range(COLLSIM_KEY_BUCKETS):
        heap.bucket[b].size = 0
    heap.early.size = 0
    heap.nonempty[0] = heap.nonempty[1] = heap.nonempty[2] = 0
    heap.last_time_ps = 0        # times are >= 0: every key is >= the origin (0, 0)
    heap.last_tie = 0


cdef void heap_free(EventHeap* heap) noexcept nogil:
    cdef int b
    free(heap.items)
    heap.items = NULL
    for b in range(COLLSIM_KEY_BUCKETS):
        free(heap.bucket[b].items)
        heap.bucket[b].items = NULL
        heap.bucket[b].size = 0
        heap.bucket[b].capacity = 0
    free(heap.early.items)
    heap.early.items = NULL
    heap.early.size = 0
    heap.early.capacity = 0
    heap.size = 0
    heap.capacity = 0


cdef int heap_push(EventHeap* heap, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil:
    cdef Event ev
    ev.time_ps = time_ps
    ev.tie = tie
    ev.slot = slot
    if heap.size == 0:
        heap.items[0] = ev
    elif _before(&ev, &heap.items[0]):
        # the new event is the minimum: the old top joins the rest
        if _insert_rest(heap, &heap.items[0]) != 0:
            return -1
        heap.items[0] = ev
    elif _insert_rest(heap, &ev) != 0:
        return -1
    heap.size += 1
    return 0


cdef void heap_pop(EventHeap* heap, Event* out) noexcept nogil:
    out[0] = heap.items[0]
    heap.size -= 1
    if heap.size > 0:
        _take_rest(heap, &heap.items[0])


cdef void heap_replace_top(EventHeap* heap, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil:
    cdef Event ev
    ev.time_ps = time_ps
    ev.tie = tie
    ev.slot = slot
    if heap.size == 1:
        heap.items[0] = ev
        return
    # below the origin with an empty early heap, ev precedes every other pending event
    if heap.early.size == 0 and collsim_key_before(time_ps, tie, heap.last_time_ps, heap.last_tie):
        heap.items[0] = ev
        return
    if _insert_rest(heap, &ev) != 0:
        _out_of_memory()
    _take_rest(heap, &heap.items[0])


# --- test helpers -----------------------------------------------------------------------------

def _heap_trace(times, ties, replace_times=()):
    """Test helper: push events i = (times[i], ties[i]); then for each t in
    replace_times replace the top event by (t, its tie) (a message's next hop);
    then pop everything.  Returns the popped (time, tie, slot) triples in order."""
    cdef EventHeap heap
    cdef Event ev
    cdef int64_t i
    if heap_init(&heap, 4) != 0:
        raise MemoryError()
    try:
        for i in range(len(times)):
            if heap_push(&heap, times[i], ties[i], i) != 0:
                raise MemoryError()
        for t in replace_times:
            heap_replace_top(&heap, t, heap.items[0].tie, heap.items[0].slot)
        out = []
        while heap.size > 0:
            heap_pop(&heap, &ev)
            out.append((ev.time_ps, ev.tie, ev.slot))
        return out
    finally:
        heap_free(&heap)


def _queue_ops(ops):
    """Test helper: apply ops in order to a fresh queue and return what it served.

    ("push", time, tie) inserts an event (slot = its push index); ("pop",) removes
    the smallest; ("replace", time) replaces the smallest by (time, its tie, its
    slot).  Returns the (time, tie, slot) of each pop and each replaced top, in order.
    """
    cdef EventHeap heap
    cdef Event ev
    cdef int64_t pushed = 0
    if heap_init(&heap, 4) != 0:
        raise MemoryError()
    try:
        out = []
        for op in ops:
            if op[0] == "push":
                if heap_push(&heap, op[1], op[2], pushed) != 0:
                    raise MemoryError()
                pushed += 1
            elif op[0] == "pop":
                heap_pop(&heap, &ev)
                out.append((ev.time_ps, ev.tie, ev.slot))
            else:
                ev = heap.items[0]
                out.append((ev.time_ps, ev.tie, ev.slot))
                heap_replace_top(&heap, op[1], ev.tie, ev.slot)
        return out
    finally:
        heap_free(&heap)
