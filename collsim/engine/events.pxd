# Event queue of the engine, ordered by (time_ps, tie) with tie = (src << seq_bits) | seq,
# i.e. by (time, source chip, per-source sequence number).  (src, seq) names a message
# uniquely and a message has at most one pending event, so the order is total and the
# run is deterministic.  Plain C functions on a struct, in the style of
# sklearn/utils/_heap: this file declares, events.pyx implements.
#
# The queue is a radix heap over the 128-bit key (time, tie) (see events.pyx): items[0]
# always holds the smallest pending event, the engine reads it in place; `size` counts
# every pending event (items[0] included).  The name EventHeap is kept for the engine.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "eventkey.h":
    enum: COLLSIM_KEY_BUCKETS     # 129 radix buckets

ctypedef struct Event:
    int64_t time_ps
    uint64_t tie          # (src << seq_bits) | seq: the tie-break, packed
    int64_t slot          # message slot in the engine's pool

ctypedef struct EventBucket:
    Event* items
    int64_t size
    int64_t capacity

ctypedef struct EventHeap:
    Event* items          # items[0]: the smallest pending event (valid when size > 0)
    int64_t size          # pending events, items[0] included
    int64_t capacity      # events the queue's arrays hold room for (memory accounting)
    # --- added: the radix heap behind items[0] ---------------------------------------
    int64_t last_time_ps  # origin: every key in the buckets is >= (last_time_ps, last_tie)
    uint64_t last_tie
    EventBucket bucket[COLLSIM_KEY_BUCKETS]   # bucket b: keys whose highest bit differing from the origin is b-1
    uint64_t nonempty[3]  # bit b set <=> bucket b is not empty
    EventBucket early     # keys below the origin (sent at the current time by a lower chip): 4-ary min-heap

# Allocate room for `capacity` events; returns 0, or -1 when out of memory.
cdef int heap_init(EventHeap* heap, int64_t capacity) noexcept nogil
cdef void heap_clear(EventHeap* heap) noexcept nogil
cdef void heap_free(EventHeap* heap) noexcept nogil
# Insert an event (grows the arrays); returns 0, or -1 when out of memory.
cdef int heap_push(EventHeap* heap, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil
# Remove the smallest event into *out.  The heap must not be empty.
cdef void heap_pop(EventHeap* heap, Event* out) noexcept nogil
# Replace the smallest event by a new one (pop + push).  The heap must not be empty.
# The engine uses it when a message moves on to its next hop.
cdef void heap_replace_top(EventHeap* heap, int64_t time_ps, uint64_t tie, int64_t slot) noexcept nogil
