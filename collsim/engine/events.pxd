# Event queue of the engine: a 4-ary min-heap of C structs in one growable
# array, ordered by (time_ps, tie) with tie = (src << seq_bits) | seq, i.e. by
# (time, source chip, per-source sequence number).  (src, seq) names a message
# uniquely and a message has at most one pending event, so the order is total
# and the run is deterministic.  Plain C functions on a struct, in the style of
# sklearn/utils/_heap: this file declares, events.pyx implements.
from libc.stdint cimport int64_t, uint64_t

ctypedef struct Event:
    int64_t time_ps
    uint64_t tie          # (src << seq_bits) | seq: the tie-break, packed
    int64_t slot          # message slot in the engine's pool

ctypedef struct EventHeap:
    Event* items
    int64_t size
    int64_t capacity

# Allocate room for `capacity` events; returns 0, or -1 when out of memory.
cdef int heap_init(EventHeap* heap, int64_t capacity) noexcept nogil
cdef void heap_clear(EventHeap* heap) noexcept nogil
cdef void heap_free(EventHeap* heap) noexcept nogil
# Insert an event (grows the array); returns 0, or -1 when out of memory.
cdef int heap_push(EventHeap* heap, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil
# Remove the smallest event into *out.  The heap must not be empty.
cdef void heap_pop(EventHeap* heap, Event* out) noexcept nogil
# Replace the smallest event by a new one (pop + push in one sift; never
# allocates).  The heap must not be empty.  The engine uses it when a message
# moves on to its next hop.
cdef void heap_replace_top(EventHeap* heap, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil
