"""Cython router: the C port of ``topologies.model.Cluster.route``.

``Router(cluster)`` flattens the cluster model into a few fixed-size C arrays
(level sizes, fabric codes, torus dims, ports, link-group offsets and specs,
scale-out parameters) and computes paths arithmetically, in C, without the GIL.
There is no per-chip or per-link table: memory is O(levels), so a
1,048,608-chip cluster costs the same few kilobytes as a 16-chip one.

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


def _dim_ports(k):
    return 0 if k == 1 else (1 if k == 2 else 2)


cdef inline int _route_level(Router r, int i, int64_t here, int64_t cur, int64_t target,
                             LinkId* links, int n) noexcept nogil:
    """Links of scale-up level i taking chip `here` (c_i == cur) to c_i == target; appends at links[n:]."""
    cdef int64_t base = r.lvl_first[i] + here * r.lvl_ports[i]    # link id of here's port 0
    cdef int fabric = r.lvl_fabric[i]
    if fabric == FABRIC_SWITCH:
        links[n] = base                                               # uplink, port 0
        links[n + 1] = base + (target - cur) * r.lvl_link_stride[i] + 1  # downlink at the target, port 1
        return n + 2
    if fabric == FABRIC_DIRECT:
        links[n] = base + (target if target < cur else target - 1)
        return n + 1
    return _route_torus(r, i, base, <uint64_t> cur, <uint64_t> target, links, n)


cdef inline int _route_torus(Router r, int i, int64_t base, uint64_t cu, uint64_t tu,
                             LinkId* links, int n) noexcept nogil:
    """Ring/torus level i: dimension order, shortest direction, ties positive.

    `base` is the link id of the current chip's port 0.  The last dim needs no
    division (what is left of the coordinate is its value), and once the
    remaining dims of cu and tu agree the walk stops.  Inline: out of line, the
    one-hop torus sends of a ring paid a call and six register saves each.
    """
    cdef const TorusDim* dim = &r.lvl_torus[i][0]
    cdef const TorusDim* last
    cdef int64_t k, x, y, fwd, hops, link, step, wrap
    cdef uint64_t cq, tq
    cdef int j
    if r.lvl_ndims[i] == 0:
        return n                            # no dims, no ports (as the reference's empty loop)
    last = dim + (r.lvl_ndims[i] - 1)
    while True:
        k = dim.k
        if dim != last:
            cq = collsim_fastdiv_div(cu, dim.div)
            tq = collsim_fastdiv_div(tu, dim.div)
            x = <int64_t> (cu - cq * <uint64_t> k)
            y = <int64_t> (tu - tq * <uint64_t> k)
        else:
            cq = tq = 0
            x = <int64_t> cu
            y = <int64_t> tu
        if x != y:
            fwd = y - x                     # 0 <= x, y < k: no division needed
            if fwd < 0:
                fwd += k
            # walk from x: link ids move by +-link_step per hop, and by -+(k-1) link_step
            # when the coordinate wraps; `wrap` counts the hops before it does
            if fwd <= k - fwd:              # positive direction (ties too)
                hops = fwd
                link = base + dim.port_pos
                step = dim.link_step
                wrap = k - 1 - x
            else:
                hops = k - fwd
                link = base + dim.port_neg
                step = -dim.link_step
                wrap = x
            for j in range(hops):
                links[n] = link
                n += 1
                link += step if j != wrap else step - k * step
            base += (y - x) * dim.link_step
        if cq == tq:
            return n
        cu = cq
        tu = tq
        dim += 1


cdef inline int _route_scale_out(Router r, int64_t src, int64_t dst, LinkId* links) noexcept nogil:
    """NIC to NIC between chips of different nodes."""
    # chips_per_node = nics_per_node * chips_per_nic, so a chip's global NIC is chip / chips_per_nic
    cdef uint64_t a = collsim_fastdiv_div(<uint64_t> src, r.chips_per_nic_div)
    cdef uint64_t b = collsim_fastdiv_div(<uint64_t> dst, r.chips_per_nic_div)
    cdef uint64_t leaf_a, leaf_b
    cdef int n = 1
    links[0] = r.nic_up_first + <int64_t> a
    if r.leaf_trunks:
        leaf_a = collsim_fastdiv_div(a, r.nics_per_leaf_div)
        leaf_b = collsim_fastdiv_div(b, r.nics_per_leaf_div)
        if leaf_a != leaf_b:
            # NIC j of a leaf uses trunk j mod trunks
            links[1] = r.leaf_up_first + <int64_t> leaf_a * r.trunks_per_leaf + <int64_t> collsim_fastdiv_mod(
                a - leaf_a * <uint64_t> r.nics_per_leaf, r.trunks_per_leaf_div)
            links[2] = r.leaf_down_first + <int64_t> leaf_b * r.trunks_per_leaf + <int64_t> collsim_fastdiv_mod(
                b - leaf_b * <uint64_t> r.nics_per_leaf, r.trunks_per_leaf_div)
            n = 3
    links[n] = r.nic_down_first + <int64_t> b
    return n + 1


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
            self.lvl_link_stride[i] = stride * level.ports
            dims = tuple(level.torus_dims) if level.fabric in (Fabric.ring, Fabric.torus) else ()
            if len(dims) > MAX_DIMS:
                raise ConfigError(f"topology.levels.{level.name}.dims", f"at most {MAX_DIMS} torus dimensions, got {len(dims)}")
            prod, port = 1, 0
            for d, k in enumerate(dims):
                self.lvl_torus[i][d].k = k
                self.lvl_torus[i][d].div = collsim_fastdiv_make(k)
                self.lvl_torus[i][d].link_step = prod * stride * level.ports
                self.lvl_torus[i][d].port_pos = port
                self.lvl_torus[i][d].port_neg = port + 1 if k > 2 else port   # extent 2: one port
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
                    within += self.lvl_torus[i][d].k // 2
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
        cdef uint64_t s = <uint64_t> src, d = <uint64_t> dst, s_up, d_up
        cdef uint64_t node_s, node_d
        cdef int64_t here = src, a, b
        cdef int i, top = self.num_levels - 1, n = 0
        if src == dst:
            return 0
        node_s = collsim_fastdiv_div(s, self.chips_per_node_div)
        node_d = collsim_fastdiv_div(d, self.chips_per_node_div)
        if node_s != node_d:
            return _route_scale_out(self, src, dst, links)
        # Mixed-radix coordinates, innermost level first: one quotient per chip
        # and level (the remainder is a multiply-subtract).  Once the units
        # above level i agree, so do all higher levels: the path is complete.
        for i in range(top):
            s_up = collsim_fastdiv_div(s, self.lvl_size_div[i])
            d_up = collsim_fastdiv_div(d, self.lvl_size_div[i])
            a = <int64_t> (s - s_up * <uint64_t> self.lvl_size[i])
            b = <int64_t> (d - d_up * <uint64_t> self.lvl_size[i])
            if a != b:
                n = _route_level(self, i, here, a, b, links, n)
                here += (b - a) * self.lvl_stride[i]
            if s_up == d_up:
                return n
            s = s_up
            d = d_up
        # outermost level: s and d are node * size + coordinate, and the node is known
        a = <int64_t> (s - node_s * <uint64_t> self.lvl_size[top])
        b = <int64_t> (d - node_d * <uint64_t> self.lvl_size[top])
        return _route_level(self, top, here, a, b, links, n)

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
