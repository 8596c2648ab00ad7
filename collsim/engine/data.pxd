# Data plane of `data` fidelity: every chip's buffer plus a pool of payload
# snapshots for messages in flight.  The engine calls snapshot() in send() and
# apply() at delivery, both nogil, no Python object per message.
from libc.stdint cimport int64_t

cdef enum:
    DTYPE_FLOAT32 = 0
    DTYPE_FLOAT16 = 1
    DTYPE_INT32 = 2

cdef class DataPlane:
    cdef readonly int64_t chips
    cdef readonly int64_t count            # elements per chip
    cdef readonly int64_t elem_bytes
    cdef readonly object dtype             # numpy dtype
    cdef readonly object buffers           # (chips, count) numpy array, C-contiguous
    cdef readonly int64_t peak_slots       # most payloads in flight at once
    cdef int dtype_code
    cdef char* base                        # buffers' data
    # payload pool: slot s owns slot_data[s] (slot_capacity[s] bytes), reused via a free list
    cdef char** slot_data
    cdef int64_t* slot_capacity
    cdef int64_t num_slots                 # slots ever created (== array capacity used)
    cdef int64_t slot_array_capacity
    cdef int64_t* free_slots
    cdef int64_t num_free

    # Copy elements [offset, offset+n) of chip's buffer into a new slot; returns
    # the slot, or -1 when out of memory.
    cdef int64_t snapshot(self, int64_t chip, int64_t offset, int64_t n) noexcept nogil
    cdef int64_t store(self, const char* src, int64_t nbytes) noexcept nogil
    # Apply a slot's n elements at chip's [offset, offset+n): overwrite
    # (reduce == 0) or add in the dtype's arithmetic (reduce != 0); then free the slot.
    cdef void apply(self, int64_t slot, int64_t chip, int64_t offset, int64_t n, int reduce) noexcept nogil
    # Return a slot to the pool without applying it.
    cdef void release(self, int64_t slot) noexcept nogil
    cdef void reset_pool(self) noexcept nogil
    cdef int _grow_slots(self) noexcept nogil
    cdef char* _at(self, int64_t chip, int64_t offset) noexcept nogil
