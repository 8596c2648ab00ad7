"""4-ary min-heap of engine events (see events.pxd)."""
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, realloc, free

cdef extern from "eventkey.h" nogil:
    int collsim_key_before(int64_t time_a, uint64_t tie_a, int64_t time_b, uint64_t tie_b)


cdef inline bint _before(const Event* a, const Event* b) noexcept nogil:
    """Strict order (time, src, seq): never memory addresses."""
    return collsim_key_before(a.time_ps, a.tie, b.time_ps, b.tie)


cdef int heap_init(EventHeap* heap, int64_t capacity) noexcept nogil:
    if capacity < 16:
        capacity = 16
    heap.items = <Event*> malloc(capacity * sizeof(Event))
    heap.size = 0
    heap.capacity = capacity if heap.items != NULL else 0
    return 0 if heap.items != NULL else -1


cdef void heap_clear(EventHeap* heap) noexcept nogil:
    heap.size = 0


cdef void heap_free(EventHeap* heap) noexcept nogil:
    free(heap.items)
    heap.items = NULL
    heap.size = 0
    heap.capacity = 0


cdef int _grow(EventHeap* heap) noexcept nogil:
    cdef int64_t capacity = 2 * heap.capacity if heap.capacity > 0 else 16
    cdef Event* items = <Event*> realloc(heap.items, capacity * sizeof(Event))
    if items == NULL:
        return -1
    heap.items = items
    heap.capacity = capacity
    return 0


# The heap is 4-ary: children of i are 4i+1..4i+4, parent of i is (i-1)/4.
# Half the depth of a binary heap; a sift is a chain of dependent loads, so
# fewer levels is what makes it faster (the four children share cache lines).

cdef int heap_push(EventHeap* heap, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil:
    cdef Event ev
    cdef int64_t i, parent
    cdef Event* items
    if heap.size == heap.capacity and _grow(heap) != 0:
        return -1
    ev.time_ps = time_ps
    ev.tie = tie
    ev.slot = slot
    items = heap.items
    # sift the hole up, then drop the new event into it
    i = heap.size
    heap.size += 1
    while i > 0:
        parent = (i - 1) >> 2
        if not _before(&ev, &items[parent]):
            break
        items[i] = items[parent]
        i = parent
    items[i] = ev
    return 0


cdef inline int64_t _min_child(const Event* items, int64_t first, int64_t n) noexcept nogil:
    """Index of the smallest of the children first..min(first+3, n-1) (first < n)."""
    cdef int64_t a, b
    if first + 3 < n:
        # all four: two independent comparisons, then the winners (no branches)
        a = first + _before(&items[first + 1], &items[first])
        b = first + 2 + _before(&items[first + 3], &items[first + 2])
        return b if _before(&items[b], &items[a]) else a
    a = first
    for b in range(first + 1, n):
        if _before(&items[b], &items[a]):
            a = b
    return a


cdef void _sift_from_root(Event* items, int64_t n, const Event* ev) noexcept nogil:
    """Place *ev in the hole at the root of items[0:n]: move the hole down
    along the smallest child while that child precedes ev.  (Measured: a
    bottom-up walk to the leaves was slower here, because the event that
    replaces the root, a message's next hop, is often early.)"""
    cdef int64_t i = 0, child = 1
    while child < n:
        child = _min_child(items, child, n)
        if not _before(&items[child], ev):
            break
        items[i] = items[child]
        i = child
        child = 4 * i + 1
    items[i] = ev[0]


cdef void heap_pop(EventHeap* heap, Event* out) noexcept nogil:
    cdef Event last
    out[0] = heap.items[0]
    heap.size -= 1
    if heap.size == 0:
        return
    last = heap.items[heap.size]
    _sift_from_root(heap.items, heap.size, &last)


cdef void heap_replace_top(EventHeap* heap, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil:
    cdef Event ev
    ev.time_ps = time_ps
    ev.tie = tie
    ev.slot = slot
    _sift_from_root(heap.items, heap.size, &ev)


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
