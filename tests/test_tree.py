"""Double binary tree: shape, closed forms by hand, event == analytic where the model is exact,
a contention case worked out by hand, and data fidelity for every collective and dtype."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectives._tree import TreeShape, dtree
from collectives.base import AlgorithmParams, Collective, effective_count
from collectives.event import simulate
from collectives.tree import TreeModel, analytic_time_ps, chain_order, make_schedule, tree_shape
from collsim.engine.core import Engine
from collsim.errors import ConfigError
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology
from topologies.routing import Router

AR, RS, AG = Collective.all_reduce, Collective.reduce_scatter, Collective.all_gather

L = 1_000          # ps, latency of every scale-up link in the hand-checked cases
BW = 10**9         # B/s: one byte takes 1,000 ps
FAST = 10**12      # B/s reduction: one byte takes 1 ps
E4 = 4             # float32


# --- clusters built from the model's dataclasses ---------------------------------------------


def cluster(levels, nodes=1, reduce_Bps=FAST, launch_ps=0, nics=None, nic=None, oversubscription=1.0,
            nics_per_leaf=32):
    per_node = math.prod(level.size for level in levels)
    scale_out = ScaleOut(nics or per_node, nic or LinkSpec(BW, 3_000), oversubscription, nics_per_leaf, 500)
    return Cluster(Topology("test", ChipSpec(reduce_Bps, launch_ps), tuple(levels), scale_out), nodes)


def switch(n, latency_ps=L, bw=BW):
    return Level("sw", n, Fabric.switch, LinkSpec(bw, latency_ps))


def ring(n, latency_ps=L):
    return Level("ring", n, Fabric.ring, LinkSpec(BW, latency_ps))


def torus(dims, latency_ps=L):
    return Level("torus", math.prod(dims), Fabric.torus, LinkSpec(BW, latency_ps), tuple(dims))


def params(chunks=1, window=4):
    return AlgorithmParams(chunks=chunks, in_flight=window)


def event_ps(cl, collective, count, p, elem_bytes=E4):
    return simulate(cl, collective, "tree", count, "float32", elem_bytes, p, verify=False).time_ps


def analytic_ps(cl, collective, count, p, elem_bytes=E4):
    return analytic_time_ps(cl, collective, count, elem_bytes, p)


def ser(nbytes, rate_Bps=BW):
    """The formula: ceil(b * 1e12 / rate) ps."""
    return -(-nbytes * 10**12 // rate_Bps)


# --- tree shape ----------------------------------------------------------------------------


def test_double_binary_tree_on_8_ranks_by_hand():
    # tree 0: 0 - 4 - {2, 6}, 2 - {1, 3}, 6 - {5, 7}; tree 1 is its mirror r -> 7 - r
    assert [dtree(8, 0, r)[0] for r in range(8)] == [-1, 2, 4, 2, 0, 6, 4, 6]
    assert [dtree(8, 0, r)[1] for r in range(8)] == [[4], [], [1, 3], [], [2, 6], [], [5, 7], []]
    assert [dtree(8, 1, r)[0] for r in range(8)] == [1, 3, 1, 7, 5, 3, 5, -1]
    assert dtree(8, 1, 7)[1] == [3] and dtree(8, 1, 3)[1] == [5, 1] and dtree(8, 1, 1)[1] == [2, 0]
    # subtrees are rank ranges
    assert dtree(8, 0, 4)[2] == [(1, 7)] and dtree(8, 0, 6)[2] == [(5, 7)] and dtree(8, 1, 5)[2] == [(4, 6)]
    # odd N: tree 1 is tree 0 shifted by one rank, so 0's subtree in tree 1 wraps around
    assert [dtree(5, 0, r)[0] for r in range(5)] == [-1, 2, 4, 2, 0]
    assert [dtree(5, 1, r)[0] for r in range(5)] == [1, -1, 3, 0, 3]
    assert dtree(5, 1, 1)[0] == -1 and dtree(5, 1, 1)[1] == [0]
    assert dtree(5, 1, 0)[1] == [3] and dtree(5, 1, 0)[2] == [(0, 0), (2, 4)]


def _descendants(children, x):
    out, stack = set(), [x]
    while stack:
        y = stack.pop()
        out.add(y)
        stack.extend(children(y))
    return out


@pytest.mark.parametrize("N", list(range(1, 40)) + [64, 100, 127, 128, 129])
def test_double_binary_tree_is_two_complementary_spanning_trees(N):
    interior = []
    for t in (0, 1):
        parent = {r: dtree(N, t, r)[0] for r in range(N)}
        children = {r: dtree(N, t, r)[1] for r in range(N)}
        roots = [r for r in range(N) if parent[r] < 0]
        assert len(roots) == 1
        assert len(children[roots[0]]) == (1 if N > 1 else 0)  # NCCL: the root has one child
        for r in range(N):
            assert len(children[r]) <= 2
            for c in children[r]:
                assert parent[c] == r
            assert {x for lo, hi in dtree(N, t, r)[2] for x in range(lo, hi + 1)} == _descendants(children.get, r)
        assert _descendants(children.get, roots[0]) == set(range(N))
        depth = max(len(_path_to_root(parent, r)) for r in range(N))
        assert depth <= max(1, math.ceil(math.log2(N)) + 1)
        interior.append({r for r in range(N) if children[r]})
    both = interior[0] & interior[1]
    assert both == (set() if N % 2 == 0 or N == 1 else {0})


def _path_to_root(parent, r):
    path = [r]
    while parent[path[-1]] >= 0:
        path.append(parent[path[-1]])
    return path


def test_chain_order_walks_physical_neighbours():
    assert chain_order(cluster([torus((2, 3))])).tolist() == [0, 1, 3, 2, 4, 5]
    for levels, hops in (([torus((4, 4))], 1), ([ring(5)], 1), ([torus((4, 4)), ring(4)], 1),
                         ([torus((3, 3)), torus((2, 2))], 1), ([switch(6)], 2), ([switch(4), switch(3)], 2)):
        cl = cluster(levels)
        order = chain_order(cl)
        assert sorted(order.tolist()) == list(range(cl.chips))
        for a, b in zip(order[:-1], order[1:]):
            assert len(cl.route(int(a), int(b))) == hops


def test_multi_node_trees_are_chains_joined_at_same_local_position():
    cl = cluster([torus((2, 2))], nodes=3)  # chain 0, 1, 3, 2 in every node
    shape = tree_shape(cl)
    assert shape.chain.tolist() == [0, 1, 3, 2]
    # tree 0: chains flow to local chip 0; heads 0, 4, 8 form the 3-node tree 0 (0 - 2 - 1)
    assert [shape.parent(0, x) for x in range(4)] == [-1, 0, 3, 1]
    assert shape.children(0, 0) == [1, 8] and shape.children(0, 8) == [9, 4] and shape.parent(0, 4) == 8
    # tree 1: chains flow to local chip 2 (the chain's end); node-level tree shifted by one
    assert [shape.parent(1, x) for x in range(4, 8)] == [5, 7, -1, 6]
    heads1 = [a * 4 + 2 for a in range(3)]
    assert shape.parent(1, heads1[1]) == -1            # virtual rank 0 of the shifted tree is node 1
    assert shape.children(1, heads1[1]) == [7, heads1[0]]
    for t in (0, 1):
        for x in range(cl.chips):
            p = shape.parent(t, x)
            if p >= 0 and p // 4 == x // 4:
                assert len(cl.route(x, p)) == 1        # chain hops are one torus link
            elif p >= 0:
                assert x % 4 == p % 4                   # heads at the same local position
            children = lambda y: shape.children(t, y)
            runs = shape.subtree_runs(t, x)
            assert {y for lo, hi in runs for y in range(lo, hi + 1)} == _descendants(children, x)


def test_tree_shape_refuses_bad_input():
    with pytest.raises(ValueError):
        TreeShape(8, 3)
    with pytest.raises(ValueError):
        TreeShape(8, 2, np.array([0, 1, 1, 3]))
    with pytest.raises(ConfigError):
        make_schedule(cluster([switch(4)]), AR, 100, 4, AlgorithmParams(chunks=0))


# --- closed forms, by hand -----------------------------------------------------------------------


def test_switch_all_reduce_one_chunk_by_hand():
    launch = 5_000
    # n = 4, count 1000 float32: halves of 500 elements = 2000 B
    s, r = 2_000_000, 2_000
    cl = cluster([switch(4)], launch_ps=launch)
    # up: leaves 1 and 3 share chip 2's downlink (2L + 2s), reduce, 2 -> 0 (2L + s), reduce;
    # down: 0 -> 2 (2L + s), then 2 -> 1, 3 share chip 2's uplink (2L + 2s)
    expected = launch + 8 * L + 6 * s + 2 * r
    assert analytic_ps(cl, AR, 1000, params()) == expected
    assert event_ps(cl, AR, 1000, params()) == expected
    # n = 8: one more level with two children each way
    cl8 = cluster([switch(8)])
    assert analytic_ps(cl8, AR, 1000, params()) == 12 * L + 10 * s + 3 * r
    assert event_ps(cl8, AR, 1000, params()) == 12 * L + 10 * s + 3 * r
    # n = 2: 1 -> 0, reduce, 0 -> 1 (and the mirror tree at the same time on the other links)
    cl2 = cluster([switch(2)])
    assert analytic_ps(cl2, AR, 1000, params()) == 4 * L + 2 * s + r
    assert event_ps(cl2, AR, 1000, params()) == 4 * L + 2 * s + r


def test_switch_reduce_scatter_and_all_gather_one_chunk_by_hand():
    cl = cluster([switch(4)])
    # 4 blocks of 1000 elements (4000 B); half = 2 blocks (8000 B).  Tree 0 (0 - 2 - {1, 3})
    # carries blocks 0, 1; tree 1 (3 - 1 - {2, 0}) blocks 2, 3.
    s_h, s_b, r_h = 8_000_000, 4_000_000, 8_000
    # reduce-scatter: reduce the half up as all-reduce (4L + 3 s_h + 2 r_h), then scatter:
    # root -> 2 only block 1 (2L + s_b), 2 -> 1 block 1 (2L + s_b), 2 -> 3 nothing
    assert analytic_ps(cl, RS, 4000, params()) == 8 * L + 3 * s_h + 2 * s_b + 2 * r_h
    assert event_ps(cl, RS, 4000, params()) == 8 * L + 3 * s_h + 2 * s_b + 2 * r_h
    # all-gather: 1 -> 2 block 1 (3 has nothing in half 0), 2 -> 0 block 1, no reduction;
    # broadcast the half down: 0 -> 2 (2L + s_h), 2 -> 1, 3 on 2's uplink (2L + 2 s_h)
    assert analytic_ps(cl, AG, 4000, params()) == 8 * L + 2 * s_b + 3 * s_h
    assert event_ps(cl, AG, 4000, params()) == 8 * L + 2 * s_b + 3 * s_h
    # two chips: each root already holds its own block after the reduction; nothing goes down,
    # and the reduction's end still counts
    cl2 = cluster([switch(2)])
    assert analytic_ps(cl2, RS, 2000, params()) == 2 * L + 4_000_000 + 4_000
    assert event_ps(cl2, RS, 2000, params()) == 2 * L + 4_000_000 + 4_000


def test_two_nodes_chain_and_nic_by_hand():
    # 2 nodes x ring of 4; NIC hop 3000 ps at 1 GB/s.  Chains of 3 one-link hops, one NIC hop.
    cl = cluster([ring(4)], nodes=2)
    s = s_nic = 8_000_000          # 2000 elements per half
    r = 8_000
    # up: node 1's chain (3 hops, 2 reductions), its head reduces, NIC to node 0's head,
    # which reduces; down: NIC, then node 1's chain (node 0's chain finishes earlier)
    expected = 2 * 3 * (L + s) + 2 * (3_000 + s_nic) + 4 * r
    for collective in (AR,):
        assert analytic_ps(cl, collective, 4000, params()) == expected
        assert event_ps(cl, collective, 4000, params()) == expected


def test_pipelined_formula_by_hand():
    cl = cluster([switch(4)])
    s, r = 500_000, 500   # 4 chunks of 125 elements
    fill = 8 * L + 6 * s + 2 * r
    # every interior chip's switch port carries 4 chunks per index: P = 4s
    assert analytic_ps(cl, AR, 1000, params(chunks=4)) == fill + 3 * 4 * s
    # window 1 and a slow hop: a chip's next chunk waits for the previous one's arrival
    slow = cluster([switch(2, latency_ps=3_000_000)])
    s2 = 1_000_000  # 250 elements
    fill2 = 4 * 3_000_000 + 2 * s2 + 1_000
    assert analytic_ps(slow, AR, 2000, params(chunks=4, window=1)) == fill2 + 3 * (2 * 3_000_000 + s2)
    assert analytic_ps(slow, AR, 2000, params(chunks=4, window=4)) == fill2 + 3 * 2 * s2


def test_period_parts_by_hand():
    # 2 nodes x ring of 4: chain links carry 2 chunks per index and direction, each head's own
    # NIC 1, chain interiors reduce in both trees
    model = TreeModel(cluster([ring(4)], nodes=2, reduce_Bps=10**8), AR, 4000, E4, params(chunks=4))
    s = 2_000_000                         # 500 elements
    assert model.link_period_ps() == 2 * s
    assert model.reduce_period_ps() == 2 * ser(2_000, 10**8)
    assert model.period_ps() == 2 * ser(2_000, 10**8)
    # odd n on one switch: rank 0 is interior in both trees
    assert TreeModel(cluster([switch(5)], reduce_Bps=10**8), AR, 1000, E4, params(4)).reduce_period_ps() == 2 * ser(500, 10**8)
    assert TreeModel(cluster([switch(8)], reduce_Bps=10**8), AR, 1000, E4, params(4)).reduce_period_ps() == ser(500, 10**8)


def test_both_trees_share_a_chips_ports_by_hand():
    """A chip interior in one tree (1 up + 2 down per chunk index) is a leaf in the other
    (1 up): its switch port carries 4 chunks per index each way; with two chips, 2."""
    s = 500_000   # 4 chunks of 125 elements
    assert TreeModel(cluster([switch(8)]), AR, 1000, E4, params(4)).link_period_ps() == 4 * s
    assert TreeModel(cluster([switch(2)]), AR, 1000, E4, params(4)).link_period_ps() == 2 * s
    # 5 nodes (tree 1 shifted): node 2 has 3 tree edges in tree 0 and 1 in tree 1, node 3 the
    # reverse.  One NIC per node serves both trees' heads: 4 chunks per index; a NIC per head: 3.
    # (The chain of 2 chips through the switch carries 2.)
    shared = cluster([switch(2)], nodes=5, nics=1, nic=LinkSpec(BW, 3_000))
    own = cluster([switch(2)], nodes=5, nics=2, nic=LinkSpec(BW, 3_000))
    assert TreeModel(shared, AR, 1000, E4, params(4)).link_period_ps() == 4 * s
    assert TreeModel(own, AR, 1000, E4, params(4)).link_period_ps() == 3 * s


def test_nothing_to_do_costs_launch_only():
    cl = cluster([switch(4)], launch_ps=7_000)
    assert analytic_ps(cl, AR, 0, params()) == 7_000
    assert analytic_ps(cl, RS, 3, params()) == 7_000          # 3 // 4 * 4 = 0 elements move
    assert analytic_ps(cluster([switch(1)], launch_ps=7_000), AR, 100, params()) == 7_000
    # the schedule itself copes with an empty buffer and with one chip
    for cl_, count in ((cl, 0), (cluster([switch(1)]), 50)):
        engine = Engine(Router(cl_), FAST, E4)
        assert engine.run(make_schedule(cl_, AR, count, E4, params())) == 0


# --- event == analytic ----------------------------------------------------------------------------


SETTINGS = [dict(latency_ps=1_000, reduce_Bps=2 * 10**8), dict(latency_ps=700_000, reduce_Bps=FAST),
            dict(latency_ps=3_000, reduce_Bps=10**9)]


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("collective", list(Collective))
def test_one_chunk_on_one_switch_is_exact(setting, collective):
    for n in range(2, 16):
        cl = cluster([switch(n, setting["latency_ps"])], reduce_Bps=setting["reduce_Bps"])
        for count in (250 * n, 500 * n + 2):
            if effective_count(collective, count, n) % 2:
                continue  # equal halves only (see the docstring)
            assert event_ps(cl, collective, count, params()) == analytic_ps(cl, collective, count, params()), (n, count)


@pytest.mark.parametrize("collective", list(Collective))
def test_one_chunk_across_nodes_is_exact(collective):
    cases = [
        cluster([ring(4)], nodes=2),
        cluster([torus((2, 2))], nodes=4, nic=LinkSpec(BW, 20_000)),
        cluster([switch(2)], nodes=5, nics=1, nic=LinkSpec(2 * BW, 3_000)),   # both trees' heads share a NIC
        cluster([switch(1)], nodes=8),
        cluster([torus((2, 2))]),
    ]
    for cl in cases:
        count = 500 * cl.chips
        assert event_ps(cl, collective, count, params()) == analytic_ps(cl, collective, count, params())


def test_pipelined_two_chips_reduction_bound_is_exact():
    # 250-element chunks: s = 1e6 ps, r = 4e6 ps >= 2s; T = 4L + 2s + k r
    for nodes, levels in ((1, [switch(2)]), (2, [switch(1)])):
        cl = cluster(levels, nodes=nodes, reduce_Bps=25 * 10**7, nic=LinkSpec(BW, 2 * L))
        for k in range(1, 6):
            expected = 4 * L + 2 * 1_000_000 + k * 4_000_000
            assert analytic_ps(cl, AR, 500 * k, params(chunks=k, window=k)) == expected
            assert event_ps(cl, AR, 500 * k, params(chunks=k, window=k)) == expected


def test_contention_ring_of_four_by_hand():
    """Ring of 4, one chunk: tree 0's 2 -> 0 and tree 1's 1 -> 3 both cross link 2 -> 3.

    Up: the leaves' messages are one hop each on distinct links (L + s), each parent reduces
    (r), so both second-level messages leave at tau = L + s + r.  2 -> 0 takes 2 -> 3 at tau and
    arrives at tau + 2L + s; 1 -> 3's head reaches 2 -> 3 at tau + L, waits until tau + s and
    arrives at tau + L + 2s.  Root 3 then reduces and sends 3 -> 1 (2 hops, 2L + s) and 1
    forwards one hop (L + s) to its children on separate links:
    tau + L + 2s + r + 2L + s + L + s = 5L + 5s + 2r.
    The model sees no sharing, so tree 1 mirrors tree 0: tau + 2L + s + r + 2L + s + L + s
    = 6L + 4s + 2r."""
    cl = cluster([ring(4)])
    s, r = 4_000_000, 4_000      # 1000 elements per half
    assert analytic_ps(cl, AR, 2000, params()) == 6 * L + 4 * s + 2 * r
    assert event_ps(cl, AR, 2000, params()) == 5 * L + 5 * s + 2 * r


# --- models agree -------------------------------------------------------------------------------------


@pytest.mark.parametrize("collective", list(Collective))
def test_node_level_model_equals_chip_by_chip(collective):
    clusters = [
        cluster([ring(4)], nodes=3),
        cluster([ring(4)], nodes=6),
        cluster([torus((2, 3))], nodes=7, nics=3, nic=LinkSpec(2 * BW, 3_000)),
        cluster([switch(2)], nodes=12, nics=2, oversubscription=2.0, nics_per_leaf=4),
        cluster([ring(3)], nodes=9, nics=1, oversubscription=3.0, nics_per_leaf=2),
    ]
    for cl in clusters:
        for count in (1, 37, 4003):
            for chunks, window in ((1, 4), (3, 2), (8, 2)):
                p = params(chunks, window)
                fast = TreeModel(cl, collective, count, E4, p)
                slow = TreeModel(cl, collective, count, E4, p, node_level=False)
                assert [fast.fill_ps(t) for t in (0, 1)] == [slow.fill_ps(t) for t in (0, 1)]
                assert fast.period_ps() == slow.period_ps()


def test_model_routes_are_the_clusters():
    cl = cluster([switch(2)], nodes=12, nics=2, oversubscription=2.0, nics_per_leaf=4)
    model = TreeModel(cl, AR, 100, E4, params())
    for src in range(0, cl.chips, 3):
        for dst in range(cl.chips):
            assert [link for link, _, _ in model.route(src, dst)] == cl.route(src, dst)


def test_analytic_scales_to_a_million_chips():
    # 7,282 nodes of 144 chips on two switch levels: O(log^2 N) tree walk, finite and growing with N
    levels = [switch(4, 1_000_000, 256 * BW), switch(36, 1_000_000, 320 * BW)]
    small = cluster(levels, nodes=8, nic=LinkSpec(25 * BW, 15_000_000))
    big = cluster(levels, nodes=7_282, nic=LinkSpec(25 * BW, 15_000_000))
    for collective in Collective:
        t_small = analytic_ps(small, collective, 2**26, params(chunks=8), elem_bytes=2)
        t_big = analytic_ps(big, collective, 2**26 // 144 * 144, params(chunks=8), elem_bytes=2)
        assert 0 < t_small < t_big


# --- event schedule invariants ------------------------------------------------------------------------


def test_schedule_is_deterministic_and_bounded_in_flight():
    cl = cluster([switch(16)])
    runs = []
    for _ in range(2):
        engine = Engine(Router(cl), FAST, E4)
        makespan = engine.run(make_schedule(cl, AR, 16 * 1000, E4, params(chunks=32, window=2)))
        runs.append((makespan, engine.events, engine.link_events))
        # memory follows what is in flight: 2 trees x 16 chips x (window up + a few down), far
        # below the 2 x 15 x 2 x 32 messages of the whole schedule
        assert engine.peak_in_flight <= 2 * 16 * (2 + 3)
    assert runs[0] == runs[1]
    # 2 trees x 15 edges x 2 directions x 32 chunks messages, 2 links each, + deliveries
    assert runs[0][2] == 2 * 15 * 2 * 32 * 2
    assert runs[0][1] == runs[0][2] + 2 * 15 * 2 * 32


# --- data fidelity --------------------------------------------------------------------------------------

SHAPES = {
    "switch1": cluster([switch(1)]),
    "switch2": cluster([switch(2)]),
    "switch3": cluster([switch(3)]),
    "switch5": cluster([switch(5)]),
    "switch8": cluster([switch(8)]),
    "ring7": cluster([ring(7)]),
    "torus2x3": cluster([torus((2, 3))]),
    "3nodes_torus2x2": cluster([torus((2, 2))], nodes=3),
    "4nodes_switch3_one_nic": cluster([switch(3)], nodes=4, nics=1),
    "2nodes_ring3_ring2": cluster([ring(3), ring(2)], nodes=2),
    "5nodes_1chip": cluster([switch(1)], nodes=5),
}
DTYPES = {"float32": 4, "float16": 2, "int32": 4}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("collective", list(Collective))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_data_fidelity(shape, collective, dtype):
    cl = SHAPES[shape]
    n = cl.chips
    for count in sorted({0, 1, max(n - 1, 1), n + 3, 97, 4 * n}):
        for chunks, window in ((1, 4), (3, 1), (4, 2)):
            result = simulate(cl, collective, "tree", count, dtype, DTYPES[dtype], params(chunks, window), verify=True)
            assert result.wrong == 0, (count, chunks, window)


@settings(max_examples=60, deadline=None)
@given(levels=st.sampled_from([[switch(1)], [switch(2)], [switch(6)], [ring(5)], [torus((2, 3))], [switch(2), ring(3)]]),
       nodes=st.integers(1, 4), count=st.integers(0, 150), chunks=st.integers(1, 5), window=st.integers(1, 3),
       collective=st.sampled_from(list(Collective)))
def test_data_fidelity_random_shapes(levels, nodes, count, chunks, window, collective):
    cl = cluster(levels, nodes=nodes)
    first = simulate(cl, collective, "tree", count, "int32", 4, params(chunks, window), verify=True)
    again = simulate(cl, collective, "tree", count, "int32", 4, params(chunks, window), verify=True)
    assert first.wrong == 0
    assert (first.time_ps, first.events) == (again.time_ps, again.events)
