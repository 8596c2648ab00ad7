"""The data plane (DESIGN.md section 6, fidelity ``data``).

``DataPlane(chips, count, dtype)`` holds every chip's buffer as one contiguous
``(chips, count)`` numpy array (``.buffers``: schedules and verifiers
initialise and check it in place) and a pool of payload snapshots.

``snapshot`` copies a source slice at send time, so what arrives is the value
at the moment of sending, not at delivery.  ``apply`` writes it at the
destination (copy) or adds it element by element in the dtype's own
arithmetic (float16 rounds after every addition exactly like numpy float16;
int32 wraps like numpy), then returns the slot to a free list.  Pool slots
keep their allocation for reuse, so memory follows the payloads in flight.
"""
import os

import numpy as np

from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

from collsim.errors import ConfigError

cdef extern from "dataops.h" nogil:
    void collsim_add_f32(void* dst, const void* src, int64_t n)
    void collsim_add_f16(void* dst, const void* src, int64_t n)
    void collsim_add_i32(void* dst, const void* src, int64_t n)

_DTYPE_CODES = {"float32": DTYPE_FLOAT32, "float16": DTYPE_FLOAT16, "int32": DTYPE_INT32}
MEMORY_FRACTION = 0.4
"""Largest share of physical memory the buffers (x2 for payloads in flight) may take."""


def physical_memory_bytes():
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(chips, count, dtype, memory_bytes=None):
    """Refuse (ConfigError) buffers of chips x count ``dtype`` elements that cannot be held.

    The buffers and, at worst, as much again in payloads in flight must take at most
    MEMORY_FRACTION of ``memory_bytes`` (default: this machine's physical memory).
    Returns the numpy dtype.  The command calls it for the largest size before it
    prints anything, so a size that does not fit never leaves a partial table.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _DTYPE_CODES:
        raise ConfigError("dtype", f"data fidelity supports {', '.join(_DTYPE_CODES)}; got {dtype!r}")
    if chips < 1 or count < 0:
        raise ConfigError("sizes.max", f"need chips >= 1 and count >= 0, got chips={chips}, count={count}")
    limit = MEMORY_FRACTION * (physical_memory_bytes() if memory_bytes is None else memory_bytes)
    need = int(chips) * int(count) * dt.itemsize * 2     # Python ints: no overflow
    if need > limit:
        raise ConfigError(
            "sizes.max",
            f"data fidelity needs {need / 1e9:.2f} GB ({chips} chips x {count} {dt.name} x 2 for "
            f"payloads in flight), more than {MEMORY_FRACTION:.0%} of physical memory "
            f"({limit / 1e9:.2f} GB); use a smaller size, fewer chips or fidelity=event",
        )
    return dt


cdef class DataPlane:
    """Buffers of ``chips`` x ``count`` elements of ``dtype`` plus a payload pool."""

    def __init__(self, int64_t chips, int64_t count, dtype, memory_bytes=None):
        cdef unsigned char[::1] raw
        dt = check_fits(chips, count, dtype, memory_bytes)
        self.chips = chips
        self.count = count
        self.elem_bytes = dt.itemsize
        self.dtype = dt
        self.dtype_code = _DTYPE_CODES[dt.name]
        self.buffers = np.zeros((chips, count), dtype=dt)
        raw = self.buffers.reshape(-1).view(np.uint8)
        self.base = <char*> &raw[0] if raw.shape[0] > 0 else NULL
        self.slot_data = NULL
        self.slot_capacity = NULL
        self.free_slots = NULL
        self.num_slots = 0
        self.slot_array_capacity = 0
        self.num_free = 0
        self.peak_slots = 0

    def __dealloc__(self):
        cdef int64_t s
        for s in range(self.num_slots):
            free(self.slot_data[s])
        free(self.slot_data)
        free(self.slot_capacity)
        free(self.free_slots)

    # --- pool ----------------------------------------------------------------

    cdef int _grow_slots(self) noexcept nogil:
        """Add one slot (empty allocation) to the pool; returns 0 or -1."""
        cdef int64_t capacity = 2 * self.slot_array_capacity if self.slot_array_capacity > 0 else 64
        cdef char** data
        cdef int64_t* caps
        cdef int64_t* free_list
        if self.num_slots == self.slot_array_capacity:
            data = <char**> realloc(self.slot_data, capacity * sizeof(char*))
            if data == NULL:
                return -1
            self.slot_data = data
            caps = <int64_t*> realloc(self.slot_capacity, capacity * sizeof(int64_t))
            if caps == NULL:
                return -1
            self.slot_capacity = caps
            free_list = <int64_t*> realloc(self.free_slots, capacity * sizeof(int64_t))
            if free_list == NULL:
                return -1
            self.free_slots = free_list
            self.slot_array_capacity = capacity
        self.slot_data[self.num_slots] = NULL
        self.slot_capacity[self.num_slots] = 0
        self.free_slots[self.num_free] = self.num_slots
        self.num_free += 1
        self.num_slots += 1
        return 0

    cdef int64_t snapshot(self, int64_t chip, int64_t offset, int64_t n) noexcept nogil:
        return self.store(self._at(chip, offset), n * self.elem_bytes)

    cdef int64_t store(self, const char* src, int64_t nbytes) noexcept nogil:
        """A pool slot holding a copy of src[0:nbytes]; -1 when out of memory.

        The one place slots are taken: snapshot() for local sends, and the MPI
        runner for payloads that arrive from another rank."""
        cdef int64_t slot
        cdef char* buf
        if self.num_free == 0 and self._grow_slots() != 0:
            return -1
        self.num_free -= 1
        slot = self.free_slots[self.num_free]
        if self.slot_capacity[slot] < nbytes:
            buf = <char*> realloc(self.slot_data[slot], nbytes)
            if buf == NULL:
                self.free_slots[self.num_free] = slot
                self.num_free += 1
                return -1
            self.slot_data[slot] = buf
            self.slot_capacity[slot] = nbytes
        if nbytes > 0:
            memcpy(self.slot_data[slot], src, nbytes)
        if self.num_slots - self.num_free > self.peak_slots:
            self.peak_slots = self.num_slots - self.num_free
        return slot

    cdef char* _at(self, int64_t chip, int64_t offset) noexcept nogil:
        return self.base + (chip * self.count + offset) * self.elem_bytes

    cdef void apply(self, int64_t slot, int64_t chip, int64_t offset, int64_t n, int reduce) noexcept nogil:
        cdef char* dst
        if n > 0:
            dst = self._at(chip, offset)
            if not reduce:
                memcpy(dst, self.slot_data[slot], n * self.elem_bytes)
            elif self.dtype_code == DTYPE_FLOAT32:
                collsim_add_f32(dst, self.slot_data[slot], n)
            elif self.dtype_code == DTYPE_FLOAT16:
                collsim_add_f16(dst, self.slot_data[slot], n)
            else:
                collsim_add_i32(dst, self.slot_data[slot], n)
        self.release(slot)

    cdef void release(self, int64_t slot) noexcept nogil:
        self.free_slots[self.num_free] = slot
        self.num_free += 1

    cdef void reset_pool(self) noexcept nogil:
        """Forget every payload in flight (a new run starts); allocations are kept."""
        cdef int64_t s
        self.num_free = 0
        self.peak_slots = 0
        for s in range(self.num_slots - 1, -1, -1):
            self.free_slots[self.num_free] = s
            self.num_free += 1

    # --- Python helpers (tests) ------------------------------------------------

    @property
    def in_flight(self):
        """Payload slots currently holding a snapshot."""
        return self.num_slots - self.num_free

    def snapshot_py(self, int64_t chip, int64_t offset, int64_t n):
        self._check_slice(chip, offset, n)
        cdef int64_t slot = self.snapshot(chip, offset, n)
        if slot < 0:
            raise MemoryError("data plane: payload pool exhausted")
        return slot

    def apply_py(self, int64_t slot, int64_t chip, int64_t offset, int64_t n, bint reduce):
        self._check_slice(chip, offset, n)
        if not 0 <= slot < self.num_slots:
            raise IndexError(f"slot {slot} out of range")
        self.apply(slot, chip, offset, n, reduce)

    def _check_slice(self, int64_t chip, int64_t offset, int64_t n):
        if not 0 <= chip < self.chips:
            raise IndexError(f"chip {chip} out of range [0, {self.chips})")
        if offset < 0 or n < 0 or offset + n > self.count:
            raise IndexError(f"slice [{offset}, {offset + n}) outside [0, {self.count})")
