# C-level interface of the router: the Cython port of topologies.model.Cluster.route.
# Paths and link ids are identical to the Python reference (tests pin that).
from libc.stdint cimport int64_t

cdef enum:
    MAX_HOPS = 16          # longest path any supported topology produces

cdef class Router:
    cdef readonly int64_t num_chips
    cdef readonly int64_t num_links
    cdef readonly int64_t chips_per_node

    # Fill links[0:n] with the directed link ids from src to dst; return n.
    cdef int route(self, int64_t src, int64_t dst, int64_t* links) noexcept nogil
    # Effective serialization rate (bytes/s, bandwidth x efficiency) and latency (ps) of a link.
    cdef int64_t rate_Bps(self, int64_t link) noexcept nogil
    cdef int64_t latency_ps(self, int64_t link) noexcept nogil
