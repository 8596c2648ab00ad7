# C-level interface of the router: the Cython port of topologies.model.Cluster.route.
# Paths and link ids are identical to the Python reference (tests pin that).
from libc.stdint cimport int64_t, int32_t, uint64_t, uint32_t

# Division by divisors fixed at construction, by multiplication (chip ids < 2^32).
from collsim.engine.fastdiv cimport (collsim_fastdiv_t, collsim_fastdiv_make, collsim_fastdiv_div,
                                     collsim_fastdiv_mod)

cdef enum:
    MAX_HOPS = 16          # longest path any supported topology produces

# A directed link id.  32 bits keep a message's path in one cache line with its
# timing (the engine's Message); Router refuses clusters with 2^31 links or more.
ctypedef int32_t LinkId

# Capacity of the flattened model (fixed C arrays inside Router: memory O(levels)).
cdef enum:
    MAX_LEVELS = 8         # scale-up levels per node
    MAX_DIMS = 8           # torus dimensions per level
    MAX_GROUPS = 12        # link groups: one per level + nic_up/down + leaf_up/down

cdef enum:
    FABRIC_RING = 0
    FABRIC_TORUS = 1
    FABRIC_SWITCH = 2
    FABRIC_DIRECT = 3

# One dimension of a ring/torus level (a ring is one dim of extent size).
ctypedef struct TorusDim:
    int64_t k                  # extent
    int64_t link_step          # link id change for +1 along the dim (coordinate stride x chip stride x ports)
    int64_t port_pos           # port of the positive direction
    int64_t port_neg           # port of the negative direction (port_pos when k == 2)
    collsim_fastdiv_t div      # division by k

cdef class Router:
    cdef readonly int64_t num_chips
    cdef readonly int64_t num_links
    cdef readonly int64_t chips_per_node

    # --- added: the flattened cluster model (set once in __init__) ---------
    cdef readonly int num_levels
    cdef readonly int max_hops              # longest path this cluster can produce
    cdef int64_t lvl_size[MAX_LEVELS]
    cdef collsim_fastdiv_t lvl_size_div[MAX_LEVELS]
    cdef int64_t lvl_stride[MAX_LEVELS]     # chips per unit of level i-1 (1 for level 0)
    cdef int lvl_fabric[MAX_LEVELS]
    cdef int64_t lvl_ports[MAX_LEVELS]
    cdef int64_t lvl_first[MAX_LEVELS]      # first link id of the level's group
    cdef int64_t lvl_link_stride[MAX_LEVELS]   # lvl_stride * lvl_ports: link id step per unit of c_i
    cdef int lvl_ndims[MAX_LEVELS]          # ring: 1 dim of extent size; torus: dims
    cdef TorusDim lvl_torus[MAX_LEVELS][MAX_DIMS]
    # scale-out
    cdef int has_scale_out                  # nodes > 1
    cdef int leaf_trunks                    # oversubscribed and more than one leaf
    cdef int64_t nics_per_node
    cdef int64_t chips_per_nic
    cdef int64_t nics_per_leaf
    cdef int64_t trunks_per_leaf
    cdef collsim_fastdiv_t chips_per_nic_div
    cdef collsim_fastdiv_t chips_per_node_div
    cdef collsim_fastdiv_t nics_per_leaf_div
    cdef collsim_fastdiv_t trunks_per_leaf_div
    cdef int64_t nic_up_first
    cdef int64_t nic_down_first
    cdef int64_t leaf_up_first
    cdef int64_t leaf_down_first
    # link groups, in id order: group g holds ids [grp_end[g-1], grp_end[g]) (from 0), one rate/latency
    cdef int num_groups
    cdef int64_t grp_end[MAX_GROUPS]
    cdef int64_t grp_rate_Bps[MAX_GROUPS]
    cdef int64_t grp_latency_ps[MAX_GROUPS]

    # Fill links[0:n] with the directed link ids from src to dst; return n.
    cdef int route(self, int64_t src, int64_t dst, LinkId* links) noexcept nogil
    # Effective serialization rate (bytes/s, bandwidth x efficiency) and latency (ps) of a link.
    cdef int64_t rate_Bps(self, int64_t link) noexcept nogil
    cdef int64_t latency_ps(self, int64_t link) noexcept nogil

    # --- added helpers -----------------------------------------------------
    # Index of the link group holding `link` (groups are contiguous id ranges).
    cdef int group_of(self, int64_t link) noexcept nogil
