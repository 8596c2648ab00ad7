"""Cython router: the C port of ``topologies.model.Cluster.route``.

``Router(cluster)`` flattens the cluster model into a few fixed-size C arrays
(level sizes, fabric codes, torus dims, ports, link-group offsets and specs,
scale-out parameters) and computes paths arithmetically, in C, without the GIL.
There is no per-chip or per-link table: memory is O(levels), so a
1,048,608-chip cluster costs the same few hundred bytes as a 16-chip one.

Link ids and paths are identical to the Python reference (the tests compare
them over random clusters):

* chips are numbered mixed-radix, innermost level fastest, so moving a chip's
  coordinate c_i by d moves its id by d * stride_i (stride_i = chips per unit
  of level i-1);
* a scale-up link id is ``first_i + chip * ports_i + port``;
* within a node, levels are corrected innermost first; a torus level corrects
  its dims in order, shortest direction, ties to the positive direction;
* chips of different nodes go NIC up, (leaf up, leaf down when the fat tree is
  oversubscribed and the NICs sit under different leaves), NIC down.
"""
from libc.stdint cimport int64_t, uint64_t

from collsim.errors import ConfigError
from topologies.model import Fabric

_FABRIC_CODE = {
    Fabric.ring: FABRIC_RING,
    Fabric.torus: FABRIC_TORUS,
    Fabric.switch: FABRIC_SWITCH,
    Fabric.direct: FABRIC_DIRECT,
}


cdef inline int64_t _torus_step(int64_t x, int64_t y, int64_t k) noexcept nogil:
    """Signed shortest move from x to y on a ring of k; ties go positive."""
    cdef int64_t forward = y - x          # 0 <= x, y < k: no division needed
    if forward < 0:
        forward += k
    if forward <= k - forward:
        return forward
    return forward - k


def _dim_ports(k):
    return 0 if k == 1 else (1 if k == 2 else 2)


cdef class Router:
    """Flattened cluster model with a nogil ``route``; see the module docstring."""

    def __init__(self, cluster):
        levels = cluster.levels
        if len(levels) > MAX_LEVELS:
            raise ConfigError("topology.levels", f"at most {MAX_LEVELS} scale-up levels are supported, got {len(levels)}")
        if cluster.chips >= 2**32:
            raise ConfigError("cluster.nodes", f"at most 2^32 - 1 chips are supported, got {cluster.chips}")
        if cluster.num_links >= 2**31:
            raise ConfigError("cluster.nodes", f"at most 2^31 - 1 directed links are supported, got {cluster.num_links}")
        self.num_chips = cluster.chips
        self.num_links = cluster.num_links
        self.chips_per_node = cluster.topology.chips_per_node
        self.chips_per_node_div = collsim_fastdiv_make(self.chips_per_node)
        self.num_levels = len(levels)
        groups = cluster.link_groups
        if len(groups) > MAX_GROUPS:
            raise ConfigError("topology", f"too many link groups ({len(groups)} > {MAX_GROUPS})")
        self._flatten_levels(cluster)
        self._flatten_scale_out(cluster)
        self.num_groups = len(groups)
        for g, group in enumerate(groups):
            self.grp_end[g] = group.first + group.count
            self.grp_rate_Bps[g] = group.spec.rate_Bps
            self.grp_latency_ps[g] = group.spec.latency_ps
            if group.spec.rate_Bps <= 0:
                raise ConfigError("topology", f"link group {group.name} has a non-positive rate")
        self.max_hops = self._longest_path(cluster)
        if self.max_hops > MAX_HOPS:
            raise ConfigError(
                "topology",
                f"paths of up to {self.max_hops} links exceed the engine's limit of {MAX_HOPS} "
                "(use a torus instead of a long ring, or more levels)",
            )

    def _flatten_levels(self, cluster):
        cdef int i, d
        stride = 1
        for i, level in enumerate(cluster.levels):
            self.lvl_size[i] = level.size
            self.lvl_size_div[i] = collsim_fastdiv_make(level.size)
            self.lvl_stride[i] = stride
            self.lvl_fabric[i] = _FABRIC_CODE[level.fabric]
            self.lvl_ports[i] = level.ports
            self.lvl_first[i] = cluster.link_groups[i].first
            dims = tuple(level.torus_dims) if level.fabric in (Fabric.ring, Fabric.torus) else ()
            if len(dims) > MAX_DIMS:
                raise ConfigError(f"topology.levels.{level.name}.dims", f"at most {MAX_DIMS} torus dimensions, got {len(dims)}")
            prod, port = 1, 0
            for d, k in enumerate(dims):
                self.lvl_dim[i][d] = k
                self.lvl_dim_div[i][d] = collsim_fastdiv_make(k)
                self.lvl_dim_stride[i][d] = prod
                self.lvl_dim_port[i][d] = port
                prod *= k
                port += _dim_ports(k)
            if dims and prod != level.size:
                raise ConfigError(f"topology.levels.{level.name}.dims", f"product of dims {dims} must equal size {level.size}")
            self.lvl_ndims[i] = len(dims)
            stride *= level.size

    def _flatten_scale_out(self, cluster):
        so = cluster.topology.scale_out
        self.has_scale_out = cluster.nodes > 1
        self.leaf_trunks = 0
        self.nics_per_node = so.nics_per_node
        self.chips_per_nic = cluster.topology.chips_per_nic
        self.nics_per_leaf = so.nics_per_leaf
        self.trunks_per_leaf = so.trunks_per_leaf
        self.chips_per_nic_div = collsim_fastdiv_make(max(1, self.chips_per_nic))
        # NIC ids are < 2^32, so clamping a divisor there leaves every quotient and remainder unchanged
        self.nics_per_leaf_div = collsim_fastdiv_make(min(so.nics_per_leaf, 2**32 - 1))
        self.trunks_per_leaf_div = collsim_fastdiv_make(min(so.trunks_per_leaf, 2**32 - 1))
        self.nic_up_first = self.nic_down_first = self.leaf_up_first = self.leaf_down_first = -1
        if not self.has_scale_out:
            return
        if self.chips_per_nic < 1 or self.chips_per_node % so.nics_per_node:
            raise ConfigError("topology.scale_out.nics_per_node", f"{so.nics_per_node} NICs do not divide {self.chips_per_node} chips per node")
        self.nic_up_first = cluster.group_named("nic_up").first
        self.nic_down_first = cluster.group_named("nic_down").first
        if so.blocking and cluster.leaves > 1:
            self.leaf_trunks = 1
            self.leaf_up_first = cluster.group_named("leaf_up").first
            self.leaf_down_first = cluster.group_named("leaf_down").first

    def _longest_path(self, cluster):
        """Most links any (src, dst) path crosses: bounded by MAX_HOPS."""
        cdef int i, d
        within = 0
        for i in range(self.num_levels):
            if self.lvl_size[i] == 1:
                continue
            if self.lvl_fabric[i] == FABRIC_SWITCH:
                within += 2
            elif self.lvl_fabric[i] == FABRIC_DIRECT:
                within += 1
            else:
                for d in range(self.lvl_ndims[i]):
                    within += self.lvl_dim[i][d] // 2
        across = (4 if self.leaf_trunks else 2) if self.has_scale_out else 0
        return max(within, across)

    # --- C level -------------------------------------------------------------

    cdef int group_of(self, int64_t link) noexcept nogil:
        cdef int g
        for g in range(self.num_groups):
            if link < self.grp_end[g]:
                return g
        return self.num_groups - 1

    cdef int64_t rate_Bps(self, int64_t link) noexcept nogil:
        return self.grp_rate_Bps[self.group_of(link)]

    cdef int64_t latency_ps(self, int64_t link) noexcept nogil:
        return self.grp_latency_ps[self.group_of(link)]

    cdef int route(self, int64_t src, int64_t dst, LinkId* links) noexcept nogil:
        cdef uint64_t s = <uint64_t> src, d = <uint64_t> dst
        cdef uint64_t node_s, node_d
        cdef int64_t here = src, a, b
        cdef int i, n = 0
        if src == dst:
            return 0
        node_s = collsim_fastdiv_div(s, self.chips_per_node_div)
        node_d = collsim_fastdiv_div(d, self.chips_per_node_div)
        if node_s != node_d:
            return self._route_scale_out(src, dst, node_s, node_d, links)
        # mixed-radix coordinates, level by level; once the rest of the two ids
        # agree, so do all higher levels (a send inside a low level stops early)
        for i in range(self.num_levels):
            a = collsim_fastdiv_mod(s, self.lvl_size_div[i])
            s = collsim_fastdiv_div(s, self.lvl_size_div[i])
            b = collsim_fastdiv_mod(d, self.lvl_size_div[i])
            d = collsim_fastdiv_div(d, self.lvl_size_div[i])
            if a != b:
                n = self._route_level(i, here, a, b, links, n)
                here += (b - a) * self.lvl_stride[i]
            if s == d:
                break
        return n

    cdef int _route_level(self, int i, int64_t here, int64_t cur, int64_t target, LinkId* links, int n) noexcept nogil:
        cdef int64_t stride = self.lvl_stride[i]
        cdef int64_t ports = self.lvl_ports[i]
        cdef int64_t first = self.lvl_first[i]
        cdef uint64_t cu = <uint64_t> cur, tu = <uint64_t> target
        cdef int64_t k, x, y, step, port, move, hop_stride
        cdef int d, s
        if self.lvl_fabric[i] == FABRIC_SWITCH:
            links[n] = first + here * ports          # uplink, port 0
            here += (target - cur) * stride
            links[n + 1] = first + here * ports + 1  # downlink, port 1
            return n + 2
        if self.lvl_fabric[i] == FABRIC_DIRECT:
            port = target if target < cur else target - 1
            links[n] = first + here * ports + port
            return n + 1
        for d in range(self.lvl_ndims[i]):
            k = self.lvl_dim[i][d]
            x = collsim_fastdiv_mod(cu, self.lvl_dim_div[i][d])
            cu = collsim_fastdiv_div(cu, self.lvl_dim_div[i][d])
            y = collsim_fastdiv_mod(tu, self.lvl_dim_div[i][d])
            tu = collsim_fastdiv_div(tu, self.lvl_dim_div[i][d])
            step = _torus_step(x, y, k)
            if step == 0:
                continue
            port = self.lvl_dim_port[i][d]
            if step < 0 and k != 2:
                port += 1
            hop_stride = self.lvl_dim_stride[i][d] * stride
            for s in range(step if step > 0 else -step):
                links[n] = first + here * ports + port
                n += 1
                # one step along dim d, wrapping around the ring of k
                if step > 0:
                    move = 1 if x + 1 < k else 1 - k
                else:
                    move = -1 if x > 0 else k - 1
                x += move
                here += move * hop_stride
        return n

    cdef int _route_scale_out(self, int64_t src, int64_t dst, int64_t node_src, int64_t node_dst,
                              LinkId* links) noexcept nogil:
        cdef int64_t a = node_src * self.nics_per_node + <int64_t> collsim_fastdiv_div(
            <uint64_t> (src - node_src * self.chips_per_node), self.chips_per_nic_div)
        cdef int64_t b = node_dst * self.nics_per_node + <int64_t> collsim_fastdiv_div(
            <uint64_t> (dst - node_dst * self.chips_per_node), self.chips_per_nic_div)
        cdef int64_t leaf_a, leaf_b
        cdef int n = 0
        links[n] = self.nic_up_first + a
        n += 1
        if self.leaf_trunks:
            leaf_a = collsim_fastdiv_div(<uint64_t> a, self.nics_per_leaf_div)
            leaf_b = collsim_fastdiv_div(<uint64_t> b, self.nics_per_leaf_div)
            if leaf_a != leaf_b:
                # NIC j of a leaf uses trunk j mod trunks
                links[n] = self.leaf_up_first + leaf_a * self.trunks_per_leaf + <int64_t> collsim_fastdiv_mod(
                    collsim_fastdiv_mod(<uint64_t> a, self.nics_per_leaf_div), self.trunks_per_leaf_div)
                links[n + 1] = self.leaf_down_first + leaf_b * self.trunks_per_leaf + <int64_t> collsim_fastdiv_mod(
                    collsim_fastdiv_mod(<uint64_t> b, self.nics_per_leaf_div), self.trunks_per_leaf_div)
                n += 2
        links[n] = self.nic_down_first + b
        return n + 1

    # --- Python helpers (tests, tools) ---------------------------------------

    def route_py(self, int64_t src, int64_t dst):
        """Directed link ids from src to dst, as a list (same as Cluster.route)."""
        cdef LinkId links[MAX_HOPS]
        cdef int n, j
        self._check_chip(src)
        self._check_chip(dst)
        with nogil:
            n = self.route(src, dst, links)
        return [links[j] for j in range(n)]

    def rate_Bps_py(self, int64_t link):
        self._check_link(link)
        return self.rate_Bps(link)

    def latency_ps_py(self, int64_t link):
        self._check_link(link)
        return self.latency_ps(link)

    def _check_chip(self, int64_t chip):
        if not 0 <= chip < self.num_chips:
            raise IndexError(f"chip {chip} out of range [0, {self.num_chips})")

    def _check_link(self, int64_t link):
        if not 0 <= link < self.num_links:
            raise IndexError(f"link {link} out of range [0, {self.num_links})")
