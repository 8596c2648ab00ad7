# Small integer helpers shared by the engine and the schedules: inline, nogil, no division.
from libc.stdint cimport int64_t


cdef inline int64_t int_max(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


cdef inline int64_t int_min(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


cdef inline int64_t wrap_once(int64_t x, int64_t n) noexcept nogil:
    """x mod n in [0, n) for x in [-n, 2n), without a division.

    Ring positions and part indices (in [0, n)) moved by at most n need one
    conditional add or subtract, not a 64-bit ``%``.
    """
    if x < 0:
        return x + n
    if x >= n:
        return x - n
    return x
