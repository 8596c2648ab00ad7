"""The Cython Router against the Python reference Cluster.route, and hand-checked paths."""
import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collsim.errors import ConfigError
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology
from topologies.routing import Router

MAX_HOPS = 16
CHIP = ChipSpec(reduce_Bps=10**9, launch_overhead_ps=0)


def make_cluster(levels, nodes, nics_per_node=1, nic=LinkSpec(25 * 10**9, 15_000), oversubscription=1.0,
                 nics_per_leaf=32, spine_latency_ps=0):
    so = ScaleOut(nics_per_node, nic, oversubscription, nics_per_leaf, spine_latency_ps)
    return Cluster(Topology("test", CHIP, tuple(levels), so), nodes)


def assert_same_routes(cluster, pairs):
    router = Router(cluster)
    for src, dst in pairs:
        assert router.route_py(src, dst) == cluster.route(src, dst), (src, dst)


# --- random clusters --------------------------------------------------------------

@st.composite
def levels_strategy(draw):
    levels = []
    for i in range(draw(st.integers(1, 3))):
        fabric = draw(st.sampled_from([Fabric.ring, Fabric.torus, Fabric.switch, Fabric.direct]))
        link = LinkSpec(draw(st.integers(1, 10**12)), draw(st.integers(0, 10**7)),
                        draw(st.sampled_from([1.0, 0.8, 0.93])))
        if fabric is Fabric.torus:
            dims = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3)))
            size = 1
            for k in dims:
                size *= k
            levels.append(Level(f"l{i}", size, fabric, link, dims))
        else:
            size = draw(st.integers(1, 6 if fabric is Fabric.ring else 5))
            levels.append(Level(f"l{i}", size, fabric, link))
    return levels


@st.composite
def cluster_strategy(draw):
    levels = draw(levels_strategy())
    per_node = 1
    for level in levels:
        per_node *= level.size
    divisors = [d for d in range(1, per_node + 1) if per_node % d == 0]
    nics = draw(st.sampled_from(divisors))
    nodes = draw(st.integers(1, 5))
    return make_cluster(
        levels, nodes, nics_per_node=nics,
        nic=LinkSpec(draw(st.integers(1, 10**11)), draw(st.integers(0, 10**8)), draw(st.sampled_from([1.0, 0.9]))),
        oversubscription=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0, 8.0])),
        nics_per_leaf=draw(st.integers(1, 6)),
        spine_latency_ps=draw(st.integers(0, 10**7)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster_strategy(), st.randoms(use_true_random=False))
def test_router_matches_reference_on_random_clusters(cluster, rnd):
    longest_within = sum(
        0 if lv.size == 1 else 2 if lv.fabric is Fabric.switch else 1 if lv.fabric is Fabric.direct
        else sum(k // 2 for k in lv.torus_dims)
        for lv in cluster.levels)
    if longest_within > MAX_HOPS:
        with pytest.raises(ConfigError) as err:
            Router(cluster)
        assert err.value.field == "topology"
        return
    router = Router(cluster)
    assert router.num_chips == cluster.chips
    assert router.num_links == cluster.num_links
    assert router.chips_per_node == cluster.topology.chips_per_node
    n = cluster.chips
    if n * n <= 6000:
        pairs = itertools.product(range(n), repeat=2)
    else:
        pairs = [(rnd.randrange(n), rnd.randrange(n)) for _ in range(3000)]
    longest = 0
    for src, dst in pairs:
        path = router.route_py(src, dst)
        assert path == cluster.route(src, dst), (src, dst)
        longest = max(longest, len(path))
    assert longest <= router.max_hops <= MAX_HOPS
    # every link's rate and latency come from its group's LinkSpec
    for group in cluster.link_groups:
        for link in {group.first, group.first + group.count - 1} if group.count else ():
            assert router.rate_Bps_py(link) == group.spec.rate_Bps
            assert router.latency_ps_py(link) == group.spec.latency_ps


def test_torus_dims_of_extent_one_two_and_odd():
    link = LinkSpec(10**9, 1000)
    for dims in [(1, 4), (2, 3), (3, 2, 1), (5,), (2, 2, 2), (1, 1, 7), (3, 5)]:
        size = 1
        for k in dims:
            size *= k
        cluster = make_cluster([Level("t", size, Fabric.torus, link, dims)], nodes=2, nics_per_node=1)
        assert_same_routes(cluster, itertools.product(range(cluster.chips), repeat=2))


def test_scale_out_oversubscribed_many_leaves():
    link = LinkSpec(10**9, 1000)
    cluster = make_cluster([Level("r", 4, Fabric.ring, link)], nodes=9, nics_per_node=2,
                           oversubscription=3.0, nics_per_leaf=5, spine_latency_ps=777)
    assert_same_routes(cluster, itertools.product(range(cluster.chips), repeat=2))


# --- hand-checked paths -----------------------------------------------------------

def torus_4x4(nodes=1, **scale_out):
    return make_cluster([Level("torus", 16, Fabric.torus, LinkSpec(96 * 10**9, 1_500_000), (4, 4))], nodes, **scale_out)


def test_4x4_torus_paths_by_hand():
    # ports per chip: 0 = +x, 1 = -x, 2 = +y, 3 = -y; link = chip * 4 + port; chip = x + 4y
    router = Router(torus_4x4())
    assert router.num_links == 64
    assert router.route_py(0, 0) == []
    assert router.route_py(0, 5) == [0, 6]          # +x from 0 to 1, then +y from 1 to 5
    assert router.route_py(0, 3) == [1]             # x 0 -> 3 is one step the negative way
    assert router.route_py(0, 2) == [0, 4]          # distance 2 ties: positive, 0 -> 1 -> 2
    assert router.route_py(15, 0) == [60, 50]       # (3,3): +x wraps to 12, +y wraps to 0
    assert router.route_py(5, 13) == [22, 38]       # y 1 -> 3: positive tie, 5 -> 9 -> 13


def test_4x4_torus_tie_goes_positive_by_hand():
    router = Router(torus_4x4())
    # chip 10 = (2,2) -> chip 4 = (0,1): x distance 2 (tie -> +x): 10 -> 11 -> 8, then y 2 -> 1 (-y): 8 -> 4
    assert router.route_py(10, 4) == [10 * 4 + 0, 11 * 4 + 0, 8 * 4 + 3]


def test_trn3_like_switch_switch_direct_by_hand():
    # sled of 4 on a switch, 18 sleds on a switch, 2 racks joined by direct links; one NIC per chip
    levels = [Level("sled", 4, Fabric.switch, LinkSpec(256 * 10**9, 1_000_000)),
              Level("rack", 18, Fabric.switch, LinkSpec(320 * 10**9, 1_000_000)),
              Level("pair", 2, Fabric.direct, LinkSpec(128 * 10**9, 1_000_000))]
    cluster = make_cluster(levels, nodes=2, nics_per_node=144)
    router = Router(cluster)
    # groups: sled [0, 576), rack [576, 1152), pair [1152, 1440), nic_up [1440, 1728), nic_down [1728, 2016)
    assert router.num_links == 2016
    # chip 0 -> chip 143 = (3, 17, 1): sled up at 0 (0*2+0), down at 3 (3*2+1);
    # rack up at 3 (576+3*2), down at 3+17*4=71 (576+71*2+1); direct at 71, port 0 (1152+71)
    assert router.route_py(0, 143) == [0, 7, 582, 719, 1223]
    # chip 143 -> chip 0: same levels innermost first, from the other side
    # sled: up at 143 (286), down at 140 (281); rack: up at 140 (576+280), down at 140-68=72 (576+145);
    # direct at 72 towards pair 0: port 0 (1152+72)
    assert router.route_py(143, 0) == [286, 281, 856, 721, 1224]
    # different nodes: NIC to NIC (nic of chip c is c), chip 149 = node 1, nic 149
    assert router.route_py(0, 149) == [1440, 1728 + 149]
    assert router.latency_ps_py(1440) == 15_000 - 7_500 and router.latency_ps_py(1728) == 7_500


def test_trn3_sized_cluster_of_1048608_chips():
    levels = [Level("sled", 4, Fabric.switch, LinkSpec(256 * 10**9, 1_000_000)),
              Level("rack", 18, Fabric.switch, LinkSpec(320 * 10**9, 1_000_000)),
              Level("pair", 2, Fabric.direct, LinkSpec(128 * 10**9, 1_000_000))]
    cluster = make_cluster(levels, nodes=7282, nics_per_node=144, oversubscription=2.0, nics_per_leaf=64)
    router = Router(cluster)
    assert router.num_chips == 1_048_608
    assert router.num_links == cluster.num_links
    rnd = random.Random(7)
    pairs = [(rnd.randrange(cluster.chips), rnd.randrange(cluster.chips)) for _ in range(2000)]
    pairs += [(0, cluster.chips - 1), (cluster.chips - 1, 0), (cluster.chips - 144, cluster.chips - 1)]
    assert_same_routes(cluster, pairs)


def test_nic_sharing_two_chips_per_nic_by_hand():
    # trn1-like: 4x4 torus, 8 NICs per node (chips 2j, 2j+1 share NIC j), 3 nodes
    cluster = torus_4x4(nodes=3, nics_per_node=8)
    router = Router(cluster)
    # torus [0, 192), nic_up [192, 216), nic_down [216, 240)
    assert router.num_links == 240
    # chip 5 -> NIC 2; chip 27 = node 1, local 11 -> NIC 8 + 5 = 13
    assert router.route_py(5, 27) == [192 + 2, 216 + 13]
    assert router.route_py(4, 27) == [192 + 2, 216 + 13]     # chip 4 shares NIC 2
    assert router.route_py(27, 4) == [192 + 13, 216 + 2]
    assert router.route_py(5, 7) == [20, 24]                  # same node: torus, +x twice


def test_oversubscribed_leaves_by_hand():
    # 8 NICs per node, 4 NICs per leaf, oversubscription 2 -> 2 trunks per leaf; 24 NICs, 6 leaves
    cluster = torus_4x4(nodes=3, nics_per_node=8, oversubscription=2.0, nics_per_leaf=4, spine_latency_ps=2_001)
    router = Router(cluster)
    # nic_up [192, 216), nic_down [216, 240), leaf_up [240, 252), leaf_down [252, 264)
    assert router.num_links == 264
    # chip 5: NIC 2, leaf 0, trunk 2 % 2 = 0; chip 27: NIC 13, leaf 3, trunk (13 % 4) % 2 = 1
    assert router.route_py(5, 27) == [194, 240 + 0, 252 + 3 * 2 + 1, 216 + 13]
    # chip 0: NIC 0 leaf 0 -> chip 32: NIC 16 leaf 4, trunk 0
    assert router.route_py(0, 32) == [192, 240, 252 + 8, 216 + 16]
    # NICs under one leaf skip the trunks: with 16 NICs per leaf, a leaf spans two nodes
    wide = torus_4x4(nodes=4, nics_per_node=8, oversubscription=2.0, nics_per_leaf=16)
    wide_router = Router(wide)
    # nic_up [256, 288), nic_down [288, 320); chip 0 (NIC 0) -> chip 16 (NIC 8): both on leaf 0
    assert wide_router.route_py(0, 16) == [256, 288 + 8]
    assert wide_router.route_py(0, 32) == wide.route(0, 32) and len(wide_router.route_py(0, 32)) == 4
    # spine latency splits like the NIC's: up gets the larger half
    assert router.latency_ps_py(240) == 1_001 and router.latency_ps_py(252) == 1_000


def test_rates_include_efficiency():
    cluster = make_cluster([Level("r", 4, Fabric.ring, LinkSpec(100 * 10**9, 2_000, 0.85))], nodes=2,
                           nics_per_node=2, nic=LinkSpec(25 * 10**9, 15_001, 0.9))
    router = Router(cluster)
    # ring [0, 16), nic_up [16, 20), nic_down [20, 24)
    assert router.rate_Bps_py(0) == 85 * 10**9 and router.latency_ps_py(15) == 2_000
    assert router.rate_Bps_py(16) == 22_500_000_000 and router.latency_ps_py(16) == 7_501
    assert router.rate_Bps_py(23) == 22_500_000_000 and router.latency_ps_py(23) == 7_500
    with pytest.raises(IndexError):
        router.rate_Bps_py(24)
    with pytest.raises(IndexError):
        router.route_py(0, 8)


def test_path_longer_than_max_hops_is_refused():
    link = LinkSpec(10**9, 1000)
    Router(make_cluster([Level("r", 33, Fabric.ring, link)], nodes=1))          # 16 hops: fine
    with pytest.raises(ConfigError) as err:
        Router(make_cluster([Level("r", 34, Fabric.ring, link)], nodes=1))      # 17 hops
    assert err.value.field == "topology" and "16" in err.value.message


# --- every pair of small clusters of every fabric ------------------------------------

def _level(i, fabric, size_or_dims):
    name, link = f"l{i}", LinkSpec((i + 1) * 10**9, 1000 + i)      # a distinct spec per level
    if fabric is Fabric.torus:
        size = 1
        for k in size_or_dims:
            size *= k
        return Level(name, size, fabric, link, tuple(size_or_dims))
    return Level(name, size_or_dims, fabric, link)


R, T, S, D = Fabric.ring, Fabric.torus, Fabric.switch, Fabric.direct
EXHAUSTIVE = {
    # name: (levels as (fabric, size or dims), nodes, nics_per_node, oversubscription, nics_per_leaf)
    "ring2": ([(R, 2)], 2, 1, 1.0, 32),
    "ring3": ([(R, 3)], 3, 3, 1.0, 32),
    "ring6_trunks": ([(R, 6)], 3, 2, 2.0, 2),
    "torus2x3": ([(T, (2, 3))], 2, 6, 1.0, 32),
    "torus4x4": ([(T, (4, 4))], 2, 8, 1.0, 32),
    "torus3x5": ([(T, (3, 5))], 1, 1, 1.0, 32),
    "torus2x2x2_trunks": ([(T, (2, 2, 2))], 4, 4, 2.0, 3),
    "torus5x2x1x3": ([(T, (5, 2, 1, 3))], 1, 1, 1.0, 32),
    "switch5": ([(S, 5)], 3, 5, 1.0, 32),
    "direct4_trunks": ([(D, 4)], 4, 2, 3.0, 3),
    "direct2": ([(D, 2)], 2, 1, 1.0, 32),
    "trn3_like_trunks": ([(S, 4), (S, 3), (D, 2)], 3, 24, 2.0, 16),
    "torus_ring_switch": ([(T, (3, 2)), (R, 4), (S, 2)], 2, 12, 1.0, 32),
    "ring_direct_torus_trunks": ([(R, 3), (D, 3), (T, (2, 3))], 2, 9, 1.5, 5),
    "size_one_levels_trunks": ([(R, 1), (T, (1, 4)), (S, 1), (D, 3)], 3, 3, 8.0, 2),
    "switch_ring2_direct": ([(S, 2), (R, 2), (D, 5)], 2, 4, 1.0, 32),
}


@pytest.mark.parametrize("name", sorted(EXHAUSTIVE))
def test_router_matches_reference_on_every_pair(name):
    spec, nodes, nics, oversubscription, nics_per_leaf = EXHAUSTIVE[name]
    levels = [_level(i, fabric, arg) for i, (fabric, arg) in enumerate(spec)]
    cluster = make_cluster(levels, nodes, nics_per_node=nics, oversubscription=oversubscription,
                           nics_per_leaf=nics_per_leaf)
    # the "_trunks" clusters do route through leaf trunks, the others do not
    assert ("leaf_up" in [g.name for g in cluster.link_groups]) == name.endswith("_trunks")
    router = Router(cluster)
    for src, dst in itertools.product(range(cluster.chips), repeat=2):
        assert router.route_py(src, dst) == cluster.route(src, dst), (src, dst)
    # group_of: every link id, against the groups' ranges
    for group in cluster.link_groups:
        for link in range(group.first, group.first + group.count):
            assert router.rate_Bps_py(link) == group.spec.rate_Bps
            assert router.latency_ps_py(link) == group.spec.latency_ps
