"""Event queue of the engine: batches of equal times, one chain of events per later time.

Why this shape.  Collectives run in lockstep: the reference workloads pop 70-250
events per distinct time, and 20-35% of all pushes land at the current time (a
chip that receives at t sends at t).  A radix heap over the full 128-bit key
(time, tie) re-bucketed those batches through the tie bits one level at a time
and spent 60% of the engine's instructions doing it.  Here the key is split:

* every event later than the origin time is appended to the **chain of its
  exact time**: blocks of 256 events from one pool, reused most recently freed
  first, so memory follows the events pending and the blocks in use stay in
  cache.  An open-addressing hash table (linear probing, at most half full)
  finds a time's chain, and a binary min-heap over the distinct pending times
  (a few hundred to a few thousand: the events share them) says which chain
  comes next;
* the chains of the last two times pushed are remembered: lockstep pushes
  repeat a time (a hop's next link one latency on, a delivery one transfer on),
  so most pushes skip the table;
* when nothing at or before the origin is left, the earliest chain becomes the
  **now batch** (its time the new origin), copied once and sorted by tie (it
  usually arrives sorted: the events' creators ran in tie order; otherwise a
  radix sort on the bytes of the tie that differ);
* the batch is served from its head; an event pushed at the origin time with a
  tie above the batch's last is appended to it, any other push at or before the
  origin goes to the **side heap**, a 4-ary min-heap on (time, tie) that is
  usually tiny (most such sends are served right after the event that made
  them).

An event is thus appended once and copied once before it is served.  The
previous design, a radix heap over times in base 4,096 (Ahuja, Mehlhorn, Orlin,
Tarjan 1990), moved nearly every event down one level before serving it (a
bucket holds a range of times): at 73,728 chips the exact-time chains took the
run from 6.20 to 5.96 s, and the engine state no longer carries 24,576 bucket
headers (590 KB).

``top`` holds the minimum of everything (the engine reads it in place); pop
refills it from min(batch head, side top), then from the chains.  The order
served is exactly "smallest pending key first", as with any priority queue:
results do not depend on the structure.
"""
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, realloc, free, abort
from libc.stdio cimport fprintf, stderr
from libc.string cimport memset

cdef extern from *:
    void __builtin_prefetch(const void* address) nogil


cdef enum:
    _INSERTION_SORT_MAX = 32     # below this a batch is insertion-sorted, not radix-sorted


# --- growable arrays -----------------------------------------------------------------

cdef int _reserve(EventQueue* queue, EventArray* a, int64_t n) noexcept nogil:
    """Room for n events in a (contents kept); 0, or -1 when out of memory."""
    cdef int64_t capacity
    cdef Event* items
    if n <= a.capacity:
        return 0
    capacity = a.capacity if a.capacity >= 16 else 16
    while capacity < n:
        capacity *= 2
    if a.size == 0:
        # nothing to keep: avoid realloc's copy of stale contents
        free(a.items)
        a.items = NULL
        queue.capacity -= a.capacity
        a.capacity = 0
    items = <Event*> realloc(a.items, capacity * sizeof(Event))
    if items == NULL:
        return -1
    queue.capacity += capacity - a.capacity
    a.items = items
    a.capacity = capacity
    return 0


cdef inline int _append(EventQueue* queue, EventArray* a, const Event* ev) noexcept nogil:
    if a.size == a.capacity and _reserve(queue, a, a.size + 1) != 0:
        return -1
    a.items[a.size] = ev[0]
    a.size += 1
    return 0


cdef void _out_of_memory() noexcept nogil:
    # Only reachable while serving (pop / replace), which has no error path (the
    # engine's loop cannot undo a half-served event): stop loudly rather than lose events.
    fprintf(stderr, b"collsim: out of memory in the event queue\n")
    abort()


# --- the side heap: 4-ary, children of i are 4i+1..4i+4 --------------------------------

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


cdef int _side_push(EventQueue* queue, const Event* ev) noexcept nogil:
    """Sift a hole up from the end, drop ev into it; 0, or -1 when out of memory."""
    cdef EventArray* h = &queue.side
    cdef int64_t i, parent
    if h.size == h.capacity and _reserve(queue, h, h.size + 1) != 0:
        return -1
    i = h.size
    h.size += 1
    while i > 0:
        parent = (i - 1) >> 2
        if not _before(ev, &h.items[parent]):
            break
        h.items[i] = h.items[parent]
        i = parent
    h.items[i] = ev[0]
    return 0


cdef void _side_pop(EventQueue* queue, Event* out) noexcept nogil:
    cdef EventArray* h = &queue.side
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


# --- sorting a batch by tie ------------------------------------------------------------

cdef void _insertion_sort(Event* items, int64_t n) noexcept nogil:
    cdef int64_t i, k
    cdef Event ev
    for i in range(1, n):
        ev = items[i]
        k = i
        while k > 0 and items[k - 1].tie > ev.tie:
            items[k] = items[k - 1]
            k -= 1
        items[k] = ev


cdef int _sort_now(EventQueue* queue) noexcept nogil:
    """Sort the batch by tie (its times are equal): LSD radix sort on the bytes that differ.

    Returns 0, or -1 when out of memory for the scratch buffer.
    """
    cdef EventArray* now = &queue.now
    cdef int64_t n = now.size, i, total
    cdef uint64_t differ = 0, first
    cdef int64_t count[256]
    cdef int shift, d
    cdef Event* src
    cdef Event* dst
    cdef Event* tmp
    cdef int64_t capacity
    if n <= _INSERTION_SORT_MAX:
        _insertion_sort(now.items, n)
        return 0
    if _reserve(queue, &queue.scratch, n) != 0:
        return -1
    first = now.items[0].tie
    for i in range(n):
        differ |= now.items[i].tie ^ first
    src = now.items
    dst = queue.scratch.items
    for shift in range(0, 64, 8):
        if ((differ >> shift) & 0xFF) == 0:
            continue
        memset(count, 0, sizeof(count))
        for i in range(n):
            count[(src[i].tie >> shift) & 0xFF] += 1
        total = 0
        for d in range(256):
            total += count[d]
            count[d] = total - count[d]
        for i in range(n):
            d = (src[i].tie >> shift) & 0xFF
            dst[count[d]] = src[i]
            count[d] += 1
        tmp = src
        src = dst
        dst = tmp
    if src != now.items:
        # the sorted run ended in the scratch buffer: swap the two arrays' storage
        tmp = now.items
        now.items = src
        queue.scratch.items = tmp
        capacity = now.capacity
        now.capacity = queue.scratch.capacity
        queue.scratch.capacity = capacity
    return 0


# --- chains: the events of one later time, in pool blocks ----------------------------------

# The tail of every empty chain: it looks full, so an append tests one thing (is the
# tail full?) and the rare cases (empty chain, full block) share the slow path.
# Never written: its count stays COLLSIM_BLOCK_EVENTS.
cdef EventBlock _full_sentinel
_full_sentinel.count = COLLSIM_BLOCK_EVENTS


cdef EventBlock* _new_block(EventQueue* queue) noexcept nogil:
    """An empty block from the pool (allocated when the pool is dry); NULL when out of memory."""
    cdef EventBlock* block = queue.free_blocks
    if block != NULL:
        queue.free_blocks = block.next
    else:
        block = <EventBlock*> malloc(sizeof(EventBlock))
        if block == NULL:
            return NULL
        block.allocated = queue.all_blocks
        queue.all_blocks = block
        queue.capacity += COLLSIM_BLOCK_EVENTS
    block.next = NULL
    block.count = 0
    return block


cdef inline void _release_blocks(EventQueue* queue, EventChain* chain) noexcept nogil:
    """Give a chain's blocks back to the pool, first in line for reuse."""
    if chain.head != NULL:
        chain.tail.next = queue.free_blocks
        queue.free_blocks = chain.head
    chain.head = NULL
    chain.tail = &_full_sentinel


cdef int _chain_push_slow(EventQueue* queue, EventChain* chain, const Event* ev) noexcept nogil:
    """_chain_push when the chain's tail is full (or the chain empty): append a block first."""
    cdef EventBlock* block = _new_block(queue)
    if block == NULL:
        return -1
    if chain.head == NULL:
        chain.head = block
    else:
        chain.tail.next = block
    chain.tail = block
    block.items[0] = ev[0]
    block.count = 1
    return 0


# --- the later times: a hash table from time to chain, a min-heap of times -----------------

cdef inline int64_t _home(const EventQueue* queue, int64_t time_ps) noexcept nogil:
    """A time's first table entry (Fibonacci hashing: lockstep times differ in few bits)."""
    return <int64_t> ((<uint64_t> time_ps * <uint64_t> 0x9E3779B97F4A7C15) >> (64 - queue.table_bits))


cdef int64_t _find_entry(const EventQueue* queue, int64_t time_ps) noexcept nogil:
    """The table entry holding time_ps, or the empty entry where it would go."""
    cdef int64_t mask = (<int64_t> 1 << queue.table_bits) - 1
    cdef int64_t i = _home(queue, time_ps)
    while queue.table[i].chain >= 0 and queue.table[i].time_ps != time_ps:
        i = (i + 1) & mask
    return i


cdef int _grow_table(EventQueue* queue) noexcept nogil:
    """Double the table (re-inserting every chained time); 0, or -1 when out of memory."""
    cdef int64_t bits = queue.table_bits + 1 if queue.table != NULL else 10
    cdef PendingTime* old = queue.table
    cdef PendingTime* table = <PendingTime*> malloc((<int64_t> 1 << bits) * sizeof(PendingTime))
    cdef int64_t k
    if table == NULL:
        return -1
    memset(table, 0xFF, (<int64_t> 1 << bits) * sizeof(PendingTime))   # every chain -1
    queue.table = table
    queue.table_bits = bits
    for k in range(queue.num_times):
        table[_find_entry(queue, queue.times[k].time_ps)] = queue.times[k]
    free(old)
    return 0


cdef void _remove_entry(EventQueue* queue, int64_t i) noexcept nogil:
    """Empty table entry i, moving later entries of its probe run back (no tombstones)."""
    cdef int64_t mask = (<int64_t> 1 << queue.table_bits) - 1
    cdef int64_t j = i, home
    while True:
        j = (j + 1) & mask
        if queue.table[j].chain < 0:
            break
        home = _home(queue, queue.table[j].time_ps)
        # entry j may fill the hole at i when its home is not cyclically in (i, j]
        if (i < j and (home <= i or home > j)) or (j < i and home <= i and home > j):
            queue.table[i] = queue.table[j]
            i = j
    queue.table[i].chain = -1


cdef inline int64_t _doubled(int64_t capacity) noexcept nogil:
    """The next capacity of the queue's growable bookkeeping arrays."""
    return 2 * capacity if capacity > 0 else 256


cdef int _grow(void** items, int64_t capacity, size_t item_bytes) noexcept nogil:
    """Reallocate *items for _doubled(capacity) items (contents kept); 0, or -1 when out of memory."""
    cdef void* grown = realloc(items[0], _doubled(capacity) * item_bytes)
    if grown == NULL:
        return -1
    items[0] = grown
    return 0


cdef int _times_push(EventQueue* queue, int64_t time_ps, int64_t chain) noexcept nogil:
    """Add a distinct time to the heap; 0, or -1 when out of memory."""
    cdef int64_t i, parent
    if queue.num_times == queue.times_capacity:
        if _grow(<void**> &queue.times, queue.times_capacity, sizeof(PendingTime)) != 0:
            return -1
        queue.times_capacity = _doubled(queue.times_capacity)
    i = queue.num_times
    queue.num_times += 1
    while i > 0:
        parent = (i - 1) >> 1
        if queue.times[parent].time_ps < time_ps:
            break
        queue.times[i] = queue.times[parent]
        i = parent
    queue.times[i].time_ps = time_ps
    queue.times[i].chain = chain
    return 0


cdef PendingTime _times_pop(EventQueue* queue) noexcept nogil:
    """Remove the earliest time from the heap (it must not be empty)."""
    cdef PendingTime first = queue.times[0], last
    cdef int64_t i = 0, child = 1, n
    queue.num_times -= 1
    n = queue.num_times
    if n > 0:
        last = queue.times[n]
        while child < n:
            if child + 1 < n and queue.times[child + 1].time_ps < queue.times[child].time_ps:
                child += 1
            if last.time_ps < queue.times[child].time_ps:
                break
            queue.times[i] = queue.times[child]
            i = child
            child = 2 * i + 1
        queue.times[i] = last
    return first


cdef int64_t _new_chain(EventQueue* queue, int64_t time_ps) noexcept nogil:
    """A chain record for a new later time; its index, or -1 when out of memory."""
    cdef int64_t c
    if queue.num_free_chains > 0:
        queue.num_free_chains -= 1
        c = queue.free_chains[queue.num_free_chains]
    else:
        if queue.chains_made == queue.chain_capacity:
            if (_grow(<void**> &queue.chains, queue.chain_capacity, sizeof(EventChain)) != 0
                    or _grow(<void**> &queue.free_chains, queue.chain_capacity, sizeof(int64_t)) != 0):
                return -1
            queue.chain_capacity = _doubled(queue.chain_capacity)
        c = queue.chains_made
        queue.chains_made += 1
    queue.chains[c].head = NULL
    queue.chains[c].tail = &_full_sentinel
    queue.chains[c].time_ps = time_ps
    return c


cdef int _push_later_slow(EventQueue* queue, const Event* ev) noexcept nogil:
    """_push_later for a time other than the last one pushed: find or make its chain."""
    cdef int64_t i, c
    if 2 * (queue.num_times + 1) > (<int64_t> 1 << queue.table_bits) and _grow_table(queue) != 0:
        return -1
    i = _find_entry(queue, ev.time_ps)
    c = queue.table[i].chain
    if c < 0:
        c = _new_chain(queue, ev.time_ps)
        if c < 0 or _times_push(queue, ev.time_ps, c) != 0:
            return -1
        queue.table[i].time_ps = ev.time_ps
        queue.table[i].chain = c
    # the previous hint becomes the second: pushes alternate between a few times
    queue.hint2_ps = queue.hint_ps
    queue.hint2_chain = queue.hint_chain
    queue.hint_ps = ev.time_ps
    queue.hint_chain = c
    return _chain_push(queue, &queue.chains[c], ev)


cdef inline void _reserve_now(EventQueue* queue, int64_t n) noexcept nogil:
    """Room for n more events in the batch (refill has no error path)."""
    if queue.now.size + n > queue.now.capacity and _reserve(queue, &queue.now, queue.now.size + n) != 0:
        _out_of_memory()


cdef void _refill(EventQueue* queue) noexcept nogil:
    """Batch and side heap are empty: the earliest chained time becomes the origin and its chain the batch."""
    cdef PendingTime next_time = _times_pop(queue)
    cdef EventChain* chain = &queue.chains[next_time.chain]
    cdef EventArray* now = &queue.now
    cdef EventBlock* block = chain.head
    cdef Event* ev
    cdef Event* dst
    cdef int64_t k, count
    cdef uint64_t last_tie = 0
    cdef bint out_of_order = False
    _remove_entry(queue, _find_entry(queue, next_time.time_ps))
    queue.origin_ps = next_time.time_ps
    queue.hint_ps = -1              # pushes at the new origin join the batch, not a chain
    queue.hint2_ps = -1
    now.size = 0
    queue.now_head = 0
    while block != NULL:
        # blocks are scattered in memory: fetch the next one's head while copying this one
        if block.next != NULL:
            __builtin_prefetch(block.next)
            __builtin_prefetch(<char*> block.next + 64)
            __builtin_prefetch(<char*> block.next + 128)
            __builtin_prefetch(<char*> block.next + 192)
        count = block.count
        _reserve_now(queue, count)
        dst = now.items + now.size
        for k in range(count):
            ev = &block.items[k]
            out_of_order |= ev.tie < last_tie
            last_tie = ev.tie
            dst[k] = ev[0]
        now.size += count
        block = block.next
    _release_blocks(queue, chain)
    queue.free_chains[queue.num_free_chains] = next_time.chain
    queue.num_free_chains += 1
    if out_of_order and _sort_now(queue) != 0:
        _out_of_memory()


cdef int _insert_slow(EventQueue* queue, const Event* ev) noexcept nogil:
    """_insert_rest for ev at or before the origin: the batch or the side heap."""
    cdef EventArray* now = &queue.now
    if ev.time_ps == queue.origin_ps:
        if queue.now_head == now.size:
            # the batch is used up: start it again with ev
            now.size = 0
            queue.now_head = 0
            return _append(queue, now, ev)
        if ev.tie > now.items[now.size - 1].tie:
            return _append(queue, now, ev)
    return _side_push(queue, ev)


# --- the interface (events.pxd) ----------------------------------------------------------

cdef int queue_init(EventQueue* queue) noexcept nogil:
    memset(queue, 0, sizeof(EventQueue))     # the table and arrays come with the first push
    queue.hint_ps = -1
    queue.hint2_ps = -1
    return 0


cdef void queue_clear(EventQueue* queue) noexcept nogil:
    cdef int64_t k
    for k in range(queue.num_times):
        _release_blocks(queue, &queue.chains[queue.times[k].chain])
    if queue.table != NULL:
        memset(queue.table, 0xFF, (<int64_t> 1 << queue.table_bits) * sizeof(PendingTime))
    queue.num_times = 0
    queue.num_free_chains = 0
    queue.chains_made = 0
    queue.size = 0
    queue.now.size = 0
    queue.now_head = 0
    queue.side.size = 0
    queue.origin_ps = 0          # times are >= 0: every event is at or after the origin
    queue.hint_ps = -1
    queue.hint2_ps = -1


cdef void queue_free(EventQueue* queue) noexcept nogil:
    cdef EventBlock* block = queue.all_blocks
    cdef EventBlock* next_block
    while block != NULL:
        next_block = block.allocated
        free(block)
        block = next_block
    free(queue.now.items)
    free(queue.side.items)
    free(queue.scratch.items)
    free(queue.chains)
    free(queue.free_chains)
    free(queue.table)
    free(queue.times)
    queue_init(queue)


# --- test helper --------------------------------------------------------------------------

def _queue_ops(ops):
    """Test helper: apply ops in order to a fresh queue and return what it served.

    ("push", time, tie) inserts an event (slot = its push index); ("pop",) removes
    the smallest; ("replace", time) replaces the smallest by (time, its tie, its
    slot).  Returns the (time, tie, slot) of each pop and each replaced top, in order.
    """
    cdef EventQueue queue
    cdef Event ev
    cdef int64_t pushed = 0
    if queue_init(&queue) != 0:
        raise MemoryError()
    try:
        out = []
        for op in ops:
            if op[0] == "push":
                if queue_push(&queue, op[1], op[2], pushed) != 0:
                    raise MemoryError()
                pushed += 1
            elif op[0] == "pop":
                queue_pop(&queue, &ev)
                out.append((ev.time_ps, ev.tie, ev.slot))
            else:
                ev = queue.top
                out.append((ev.time_ps, ev.tie, ev.slot))
                queue_replace_top(&queue, op[1], ev.tie, ev.slot)
        return out
    finally:
        queue_free(&queue)
