# Division by divisors fixed at construction, by multiplication (fastdiv.h: values < 2^32).
# Declared once here for the router and the schedules.
from libc.stdint cimport uint64_t, uint32_t

cdef extern from "fastdiv.h" nogil:
    ctypedef struct collsim_fastdiv_t:
        uint64_t magic
        uint64_t divisor
    collsim_fastdiv_t collsim_fastdiv_make(uint32_t d)
    uint64_t collsim_fastdiv_div(uint64_t n, collsim_fastdiv_t f)
    uint64_t collsim_fastdiv_mod(uint64_t n, collsim_fastdiv_t f)
