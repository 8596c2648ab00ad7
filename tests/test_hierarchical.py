"""Hierarchical collectives: plan geometry, hand-computed analytic times, event == analytic where
the docstring says so, a hand-worked contention case, and data fidelity for every collective x dtype.

Unless a test says otherwise links run at 1e9 B/s (ser(b) = 1000 b ps), scale-up links have 1000 ps
latency, NICs 5000 ps (2500 up + 2500 down), and chips reduce at 1e12 B/s (red(b) = b ps).
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from collectives.base import AlgorithmParams, Collective, effective_count, split_counts
from collectives.hierarchical import (
    PhaseCosts,
    analytic_time_ps,
    build_plan,
    double_binary_tree,
    make_schedule,
    pipeline_ps,
    ring_order,
    shared_link_ps,
    snake_order,
)
from collectives.verify import count_wrong, init_buffers
from collsim.engine.core import Engine
from collsim.engine.data import DataPlane
from collsim.errors import ConfigError
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology
from topologies.routing import Router

AR, RS, AG = Collective.all_reduce, Collective.reduce_scatter, Collective.all_gather
ELEM_BYTES = {"float32": 4, "float16": 2, "int32": 4}


def make_cluster(levels, nodes=1, *, chips_per_nic=1, reduce_Bps=10**12, launch_ps=0, nic_latency_ps=5000):
    """levels: (fabric, size[, dims]) at 1e9 B/s and 1000 ps per link."""
    built = []
    for i, spec in enumerate(levels):
        fabric, size = spec[0], spec[1]
        dims = tuple(spec[2]) if len(spec) > 2 else ()
        built.append(Level(f"l{i}", size, Fabric(fabric), LinkSpec(10**9, 1000), dims))
    per_node = math.prod(level.size for level in built)
    scale_out = ScaleOut(per_node // chips_per_nic, LinkSpec(10**9, nic_latency_ps))
    topology = Topology("test", ChipSpec(reduce_Bps, launch_ps), tuple(built), scale_out)
    return Cluster(topology, nodes)


def params(**kw):
    base = dict(channels=1, bidirectional=False, chunks=1, in_flight=1, top="ring")
    base.update(kw)
    return AlgorithmParams(**base)


def run_event(cluster, collective, count, prm, dtype=None):
    """Run the schedule; returns (engine makespan, schedule, engine, data plane or None).

    The engine's makespan is the later of its last event and the end of its last reduction.
    """
    elem_bytes = ELEM_BYTES[dtype or "float32"]
    n = cluster.chips
    eff = effective_count(collective, count, n)
    data = None
    if dtype is not None:
        data = DataPlane(n, eff, dtype)
        init_buffers(data.buffers, collective, eff)
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, elem_bytes, data)
    schedule = make_schedule(cluster, collective, eff, elem_bytes, prm)
    engine.run(schedule)
    return engine.makespan_ps, schedule, engine, data


# --- plan geometry -------------------------------------------------------------------------


def test_snake_order_of_a_4x4_torus_by_hand():
    assert snake_order((4, 4)) == (0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11, 15, 14, 13, 12)
    # an even extent goes outermost so that the ring closes: dims (4, 3) -> walk dim 1 inside
    assert snake_order((4, 3)) == (0, 4, 8, 9, 5, 1, 2, 6, 10, 11, 7, 3)


@pytest.mark.parametrize("dims", [(4, 4), (4, 3), (3, 4), (2, 3), (2, 2, 2), (3, 2, 3), (2, 2), (5,)])
def test_snake_ring_is_a_cycle_of_single_links(dims):
    cluster = make_cluster([("torus", math.prod(dims), dims)])
    order = ring_order(cluster.levels[0])
    assert sorted(order) == list(range(cluster.chips))
    for q in range(len(order)):
        assert len(cluster.route(order[q], order[(q + 1) % len(order)])) == 1


def test_snake_of_all_odd_torus_closes_with_two_links():
    # documented exception: no even dimension, the boustrophedon cannot close in one hop
    cluster = make_cluster([("torus", 9, (3, 3))])
    order = ring_order(cluster.levels[0])
    hops = [len(cluster.route(order[q], order[(q + 1) % 9])) for q in range(9)]
    assert hops == [1] * 8 + [2]


def test_double_binary_tree_of_four_nodes_by_hand():
    parent, children, height = double_binary_tree(4)
    # tree 0 (labels r+1): 4 -> 2 -> {1, 3}, i.e. node 3 -> node 1 -> {0, 2}
    assert parent[0].tolist() == [1, 3, 1, -1]
    assert children[0, 1].tolist() == [0, 2] and children[0, 3].tolist() == [1, -1]
    # tree 1 mirrors (label 4 - r): node 0 -> node 2 -> {3, 1}
    assert parent[1].tolist() == [-1, 2, 0, 2]
    assert children[1, 2].tolist() == [3, 1]
    assert height == 2


@pytest.mark.parametrize("n", list(range(2, 34)) + [100, 257])
def test_double_binary_tree_invariants(n):
    parent, children, height = double_binary_tree(n)
    inner_count = np.zeros(n, dtype=int)
    for t in range(2):
        assert (parent[t] == -1).sum() == 1
        for x in range(n):
            for c in children[t, x]:
                if c >= 0:
                    assert parent[t, c] == x
            # every node reaches the root within `height` steps
            steps, y = 0, x
            while parent[t, y] >= 0:
                y, steps = parent[t, y], steps + 1
            assert steps <= height
        inner_count += (children[t] >= 0).any(axis=1)
        assert (children[t] >= 0).sum() == n - 1
    assert height <= math.ceil(math.log2(n)) + 1
    if n % 2 == 0:
        # complementary trees: every node is an inner node of exactly one of them
        assert inner_count.tolist() == [1] * n


def test_pipeline_formula_matches_the_flow_shop_recurrence():
    rng = random.Random(3)
    for _ in range(300):
        t = [rng.randint(1, 20) for _ in range(rng.randint(1, 6))]
        k, window = rng.randint(1, 12), rng.randint(1, 6)
        done = [[0] * len(t) for _ in range(k)]
        for j in range(k):
            for p, tp in enumerate(t):
                ready = done[j][p - 1] if p else (done[j - window][-1] if j >= window else 0)
                done[j][p] = max(ready, done[j - 1][p] if j else 0) + tp
        assert pipeline_ps(t, k, window) == done[-1][-1], (t, k, window)


def test_phase_lists():
    cluster = make_cluster([("ring", 4), ("ring", 1), ("direct", 2)], nodes=3)
    names = {0: "ring_rs", 1: "ring_ag", 2: "mesh_rs", 3: "mesh_ag", 4: "tree"}
    plan = build_plan(cluster, AR, params())
    assert [(names[p.kind], plan.levels[p.level].level) for p in plan.phases] == [
        ("ring_rs", 0), ("mesh_rs", 2), ("ring_rs", 3), ("ring_ag", 3), ("mesh_ag", 2), ("ring_ag", 0)]
    plan = build_plan(cluster, AR, params(top="tree"))
    assert [names[p.kind] for p in plan.phases] == ["ring_rs", "mesh_rs", "tree", "mesh_ag", "ring_ag"]
    assert [names[p.kind] for p in build_plan(cluster, RS, params(top="tree")).phases] == [
        "ring_rs", "mesh_rs", "ring_rs"]
    assert [names[p.kind] for p in build_plan(cluster, AG, params()).phases] == ["ring_ag", "mesh_ag", "ring_ag"]
    single = make_cluster([("switch", 4)], nodes=1)
    assert [names[p.kind] for p in build_plan(single, AR, params()).phases] == ["ring_rs", "ring_ag"]


# --- analytic, by hand -------------------------------------------------------------------


def test_analytic_four_chip_ring_all_reduce_by_hand():
    cluster = make_cluster([("ring", 4)], launch_ps=7)
    # 64 float32, parts of 16 elements = 64 B: alpha 1000, ser 64000, red 64
    rs = 3 * (1000 + 64000 + 64)
    ag = 3 * (1000 + 64000)
    assert analytic_time_ps(cluster, AR, 64, 4, params()) == 7 + rs + ag == 390199


def test_analytic_eight_chips_on_a_switch_by_hand():
    cluster = make_cluster([("switch", 8)])
    # a ring hop crosses uplink + downlink: alpha 2000; parts of 8 elements = 32 B
    assert analytic_time_ps(cluster, AR, 64, 4, params()) == 7 * (2000 + 32000 + 32) + 7 * (2000 + 32000)


def test_analytic_2x2_torus_by_hand():
    cluster = make_cluster([("torus", 4, (2, 2))])
    assert analytic_time_ps(cluster, AR, 64, 4, params()) == 3 * (1000 + 64000 + 64) + 3 * (1000 + 64000)
    # reduce-scatter / all-gather of 64 elements: blocks of 16, one run per part on one node
    assert analytic_time_ps(cluster, RS, 64, 4, params()) == 3 * (1000 + 64000 + 64)
    assert analytic_time_ps(cluster, AG, 64, 4, params()) == 3 * (1000 + 64000)


def test_analytic_two_nodes_by_hand():
    cluster = make_cluster([("ring", 4)], nodes=2)
    # all-reduce 64 elements: RS_0 parts 16 el (64 B); top across 2 nodes: parts of 8 el (32 B), alpha 5000
    rs0 = 3 * (1000 + 64000 + 64)
    top_rs, top_ag = 5000 + 32000 + 32, 5000 + 32000
    ag0 = 3 * (1000 + 64000)
    assert analytic_time_ps(cluster, AR, 64, 4, params()) == rs0 + top_rs + top_ag + ag0 == 464224
    # reduce-scatter 64 = 8 blocks of 8: RS_0 moves n/4 = 2 runs of 8 = 16 el; top moves one block (32 B)
    assert analytic_time_ps(cluster, RS, 64, 4, params()) == 3 * (1000 + 64000 + 64) + (5000 + 32000 + 32)
    assert analytic_time_ps(cluster, AG, 64, 4, params()) == (5000 + 32000) + 3 * (1000 + 64000)


def test_analytic_pipeline_and_in_flight_window_by_hand():
    # slow NICs (200000 ps): the phases across nodes are the pipeline's slowest stage
    cluster = make_cluster([("ring", 4)], nodes=2, nic_latency_ps=200_000)
    # 4 chunks of 16 elements: RS_0 parts 4 el (16 B), top parts 2 el (8 B)
    t = [3 * (1000 + 16000 + 16), 200_000 + 8000 + 8, 200_000 + 8000, 3 * (1000 + 16000)]
    total, worst = sum(t), max(t)
    assert (total, worst) == (518056, 208008)
    assert analytic_time_ps(cluster, AR, 64, 4, params(chunks=4, in_flight=4)) == total + 3 * worst
    # window of 2: chunk 2 waits for chunk 0 to leave (total > 2 * worst binds once)
    assert analytic_time_ps(cluster, AR, 64, 4, params(chunks=4, in_flight=2)) == total + total + worst
    assert analytic_time_ps(cluster, AR, 64, 4, params(chunks=4, in_flight=1)) == 4 * total
    # chunk_bytes overrides chunks: 256 B / 64 B = 4 chunks
    assert analytic_time_ps(cluster, AR, 64, 4, params(chunks=1, chunk_bytes=64, in_flight=4)) == total + 3 * worst


def test_analytic_links_shared_by_two_phases_by_hand():
    # as above with 5000 ps NICs: RS_0 and AG_0 now take most of the time, on the same ring links
    cluster = make_cluster([("ring", 4)], nodes=2)
    t = [3 * (1000 + 16000 + 16), 5000 + 8000 + 8, 5000 + 8000, 3 * (1000 + 16000)]
    total, worst = sum(t), max(t)
    assert pipeline_ps(t, 4, 4) == total + 3 * worst == 281200
    # but every chunk sends 3 messages of 16 B over each ring link in RS_0 and 3 in AG_0: the four
    # chunks keep a link busy 4 x 6 x 16000, from t = 0 (RS_0 comes first), and the last message
    # still needs its 1000 ps latency (nothing comes after AG_0)
    shared = 4 * 6 * 16000 + 1000
    for window in (4, 2):
        assert analytic_time_ps(cluster, AR, 64, 4, params(chunks=4, in_flight=window)) == shared == 385000
        assert run_event(cluster, AR, 64, params(chunks=4, in_flight=window))[0] >= shared
    # one chunk at a time: four times the single chunk, more than the links' load
    assert analytic_time_ps(cluster, AR, 64, 4, params(chunks=4, in_flight=1)) == 4 * total > shared
    # the NICs are shared by the two phases across nodes too: chunks x (8000 + 8000) after RS_0's fill,
    # then 5000 latency and AG_0: 51048 + 64000 + 5000 + 51000, below the ring links' bound


def test_shared_link_bound_by_hand():
    # RS_0, RS_1, AG_1, AG_0 with 3 chunks
    costs = PhaseCosts(fill_ps=[100, 40, 30, 90], period_ps=[100, 40, 30, 90], busy_ps=[60, 20, 20, 50],
                       level=[0, 1, 1, 0], last_hop_ps=[5, 7, 7, 5], chunks=3)
    # level 0: nothing before RS_0, 3 x (60 + 50), the last message's 5, nothing after AG_0: 335
    # level 1: RS_0's 100 before, 3 x (20 + 20), 7, AG_0's 90 after: 317
    assert shared_link_ps(costs) == 335
    # one phase per level (reduce-scatter): no link carries two phases
    assert shared_link_ps(PhaseCosts([100, 40], [100, 40], [60, 20], [0, 1], [5, 7], 3)) == 0


def test_analytic_top_tree_by_hand():
    two = make_cluster([], nodes=2)
    # N = 2: one parent, one child per tree: halves of 32 el = 128 B; equals the 2-node ring
    tree2 = (5000 + 128000 + 128) + (5000 + 128000)
    assert analytic_time_ps(two, AR, 64, 4, params(top="tree")) == tree2
    assert analytic_time_ps(two, AR, 64, 4, params(top="ring")) == tree2
    four = make_cluster([], nodes=4)
    # N = 4: up two levels (the parent of two leaves waits for the second), down two (the second
    # child waits for the first): 4 alpha + 6 s + 2 r (tests/test_hierarchical_tree.py works it out)
    assert analytic_time_ps(four, AR, 64, 4, params(top="tree")) == 4 * 5000 + 6 * 128000 + 2 * 128
    # reduce-scatter / all-gather always cross nodes on a ring
    assert analytic_time_ps(four, RS, 64, 4, params(top="tree")) == analytic_time_ps(four, RS, 64, 4, params())


def test_analytic_nic_share_by_hand():
    cluster = make_cluster([("ring", 2)], nodes=2, chips_per_nic=2)
    # RS_0 over 2 chips: parts of 32 el (128 B); top: parts of 16 el (64 B), two chips per NIC
    rs0 = 1000 + 128000 + 128
    top = (5000 + 2 * 64000 + 64) + (5000 + 2 * 64000)
    assert analytic_time_ps(cluster, AR, 64, 4, params()) == rs0 + top + (1000 + 128000)


def test_analytic_channels_by_hand():
    # two channels, one each way round a 4-ring: separate directed links, both reductions on the chip
    ring = make_cluster([("ring", 4)])
    piece_part = 32  # bytes: 64 el / 2 channels / 4 parts = 8 el
    assert analytic_time_ps(ring, AR, 64, 4, params(channels=2, bidirectional=True)) == (
        3 * (1000 + 32000 + 2 * piece_part) + 3 * (1000 + 32000))
    # on a switch both directions share the chip's uplink: 2 messages per link per step
    switch = make_cluster([("switch", 4)])
    assert analytic_time_ps(switch, AR, 64, 4, params(channels=2, bidirectional=True)) == (
        3 * (2000 + 2 * 32000 + 2 * piece_part) + 3 * (2000 + 2 * 32000))
    # a direct level runs a one-step mesh: 60 el into 3 parts of 20 (80 B); two reductions
    mesh = make_cluster([("direct", 3)])
    assert analytic_time_ps(mesh, AR, 60, 4, params()) == (1000 + 80000 + 2 * 80) + (1000 + 80000)
    # only channels that carry data count: 1 element, 2 channels -> one channel busy
    assert analytic_time_ps(mesh, AR, 1, 4, params(channels=2)) == (1000 + 4000 + 2 * 4) + (1000 + 4000)


def test_analytic_empty_and_trivial():
    cluster = make_cluster([("ring", 4)], nodes=2, launch_ps=4_700_000)
    assert analytic_time_ps(cluster, AR, 0, 4, params()) == 4_700_000
    assert analytic_time_ps(cluster, RS, 7, 4, params()) == 4_700_000  # 7 < 8 chips: no whole block
    one = make_cluster([], nodes=1, launch_ps=5)
    assert analytic_time_ps(one, AR, 1000, 4, params()) == 5


def test_bad_parameters_raise_config_errors():
    cluster = make_cluster([("ring", 4)], nodes=2)
    with pytest.raises(ConfigError) as err:
        analytic_time_ps(cluster, AR, 64, 4, params(top="mesh"))
    assert err.value.field == "algorithm.top"
    with pytest.raises(ConfigError):
        make_schedule(cluster, AR, 64, 4, params(in_flight=0))


# --- event == analytic (contention-free cases of the docstring) ------------------------------

EXACT_SHAPES = [
    ([("ring", 4)], 1),
    ([("switch", 8)], 1),
    ([("torus", 4, (2, 2))], 1),
    ([("torus", 6, (2, 3))], 1),
    ([("ring", 4)], 2),
    ([("switch", 4), ("direct", 2)], 2),
    ([("ring", 2), ("ring", 1), ("switch", 3)], 2),
    ([], 3),
    ([("direct", 3)], 3),
]


@pytest.mark.parametrize("levels,nodes", EXACT_SHAPES)
@pytest.mark.parametrize("collective", [AR, RS, AG])
@pytest.mark.parametrize("with_data", [False, True])
def test_event_equals_analytic_single_chunk(levels, nodes, collective, with_data):
    cluster = make_cluster(levels, nodes, launch_ps=0)
    n = cluster.chips
    count = 4 * n * max(level[1] for level in levels) if levels else 4 * n  # every split even
    prm = params()
    t, schedule, _, data = run_event(cluster, collective, count, prm, "float32" if with_data else None)
    assert t == analytic_time_ps(cluster, collective, count, 4, prm)
    assert t == schedule.makespan_ps
    if with_data:
        assert count_wrong(data.buffers, collective, count) == 0


def test_event_two_nodes_by_hand():
    cluster = make_cluster([("ring", 4)], nodes=2)
    assert run_event(cluster, AR, 64, params())[0] == 464224
    assert run_event(cluster, RS, 64, params())[0] == 3 * (1000 + 64000 + 64) + (5000 + 32000 + 32)


def test_event_top_tree_of_two_nodes_equals_analytic():
    cluster = make_cluster([("switch", 2)], nodes=2)
    prm = params(top="tree")
    t, _, _, data = run_event(cluster, AR, 64, prm, "float32")
    assert t == analytic_time_ps(cluster, AR, 64, 4, prm)
    assert count_wrong(data.buffers, AR, 64) == 0


@pytest.mark.parametrize("chunks,window", [(4, 4), (4, 2), (3, 1)])
@pytest.mark.parametrize("collective", [AG, RS])
def test_event_equals_analytic_pipelined(chunks, window, collective):
    # phases on disjoint links, and (here) reductions of two phases never overlap on a chip:
    # the event schedule is exactly the flow shop
    cluster = make_cluster([("ring", 4)], nodes=2)
    prm = params(chunks=chunks, in_flight=window)
    count = 64 * chunks
    assert run_event(cluster, collective, count, prm)[0] == analytic_time_ps(cluster, collective, count, 4, prm)


def test_event_pipelined_all_gather_by_hand():
    cluster = make_cluster([("ring", 4)], nodes=2)
    # 256 el = 8 blocks of 32, 4 pieces of 8 el: top moves one piece (32 B); AG_0 two runs (64 B)
    top, ag0 = 5000 + 32000, 3 * (1000 + 64000)
    assert run_event(cluster, AG, 256, params(chunks=4, in_flight=4))[0] == top + ag0 + 3 * ag0


def test_event_nic_shared_by_two_chips_by_hand():
    # 2 nodes x 2 chips, one NIC per node; all-gather of blocks of 4 el (16 B)
    cluster = make_cluster([("ring", 2)], nodes=2, chips_per_nic=2)
    t, _, _, _ = run_event(cluster, AG, 16, params())
    # top: chip 0 and chip 1 both send 16 B through NIC 0 at t=0; chip 1's waits (FIFO, src order):
    #   chip 0's: up [0, 16000], down [2500, 18500] -> 21000; chip 1's: up [16000, 32000] -> 37000
    # AG_0: chip 1 forwards its 2 blocks (32 B) at 37000 over one link: 37000 + 1000 + 32000
    assert t == 70000
    assert t == analytic_time_ps(cluster, AG, 16, 4, params())  # 5000 + 2*16000 + 1000 + 32000


# --- contention: event > analytic, worked out by hand -------------------------------------------


def test_rs_and_ag_of_one_level_share_links_by_hand():
    # two chips on a ring, 4 float32 in 2 chunks of 2 el; parts of 1 el = 4 B: ser 4000, red 500
    cluster = make_cluster([("ring", 2)], reduce_Bps=8 * 10**9)
    prm = params(chunks=2, in_flight=2)
    t_rs, t_ag = 1000 + 4000 + 500, 1000 + 4000
    assert pipeline_ps([t_rs, t_ag], 2, 2) == t_rs + t_ag + max(t_rs, t_ag) == 16000
    # the analytic sees the shared link's load: 2 chunks x (4000 RS + 4000 AG), then 1000 latency
    assert analytic_time_ps(cluster, AR, 4, 4, prm) == 2 * (4000 + 4000) + 1000 == 17000
    # event, chip 0 -> chip 1 (chip 1 -> chip 0 is symmetric):
    #   chunk 0 RS [0, 4000] -> 5000, reduced 5500; chunk 0 AG sent at 5500: [5500, 9500] -> 10500
    #   chunk 1 enters RS when chunk 0 leaves it (5500), queued behind that AG on the same link:
    #   [9500, 13500] -> 14500, reduced 15000; its AG [15000, 19000] -> 20000
    t, schedule, _, _ = run_event(cluster, AR, 4, prm)
    assert t == 20000 > 17000
    assert schedule.makespan_ps == 20000
    # one chunk at a time (window 1): nothing overlaps, event == analytic == 2 x (t_rs + t_ag)
    prm1 = params(chunks=2, in_flight=1)
    assert run_event(cluster, AR, 4, prm1)[0] == analytic_time_ps(cluster, AR, 4, 4, prm1) == 21000


# --- message counts: strided transfers ------------------------------------------------------------


def test_strided_transfers_coalesce_without_a_data_plane():
    cluster = make_cluster([("ring", 4)], nodes=2)
    prm = params()
    t_event, _, event_engine, _ = run_event(cluster, RS, 64, prm)
    t_data, _, data_engine, _ = run_event(cluster, RS, 64, prm, "float32")
    # RS_0: 8 chips x 3 steps x 1 link; top: 8 chips x 1 step x 2 links (NIC up, NIC down)
    assert event_engine.link_events == 8 * 3 + 8 * 2
    # with data each RS_0 transfer is n / 4 = 2 runs (blocks r and r + 4), each its own message
    assert data_engine.link_events == 8 * 3 * 2 + 8 * 2
    assert t_event == t_data


# --- data fidelity ------------------------------------------------------------------------------------

DATA_SHAPES = [
    ([("ring", 3)], 1),
    ([("ring", 5)], 1),
    ([("torus", 6, (2, 3))], 1),
    ([("switch", 3)], 2),
    ([], 5),
    ([("ring", 2), ("direct", 3)], 2),
    ([("switch", 2), ("ring", 1), ("torus", 4, (2, 2))], 3),
    ([("direct", 2)], 7),
]
VARIANTS = [
    params(),
    params(channels=2, bidirectional=True, chunks=3, in_flight=2),
    params(channels=3, bidirectional=True, chunks=4, in_flight=1, top="tree"),
    params(channels=2, bidirectional=False, chunks=5, in_flight=8, top="tree"),
]


@pytest.mark.parametrize("levels,nodes", DATA_SHAPES)
@pytest.mark.parametrize("collective", [AR, RS, AG])
@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
def test_data_fidelity(levels, nodes, collective, dtype):
    cluster = make_cluster(levels, nodes)
    n = cluster.chips
    for count in (0, 1, 2, n - 1, n + 1, 3 * n + 2, 7 * n, 40 * n + 3):
        for prm in VARIANTS:
            eff = effective_count(collective, count, n)
            t, schedule, _, data = run_event(cluster, collective, count, prm, dtype)
            assert count_wrong(data.buffers, collective, eff) == 0, (count, prm)
            assert t == schedule.makespan_ps
            # every chip finished every piece that carries data
            total = eff if collective is AR else eff // n
            pieces = prm.chunk_count(eff * ELEM_BYTES[dtype]) * prm.channels
            assert schedule.pieces_done == n * sum(1 for size in split_counts(total, pieces) if size > 0)


def test_reduce_scatter_leaves_block_r_on_chip_r_exactly():
    # element-by-element: chip r's block r equals the sum over all chips' inputs of that block
    cluster = make_cluster([("ring", 2), ("direct", 3)], nodes=2)
    n, count = cluster.chips, 5 * cluster.chips
    _, _, _, data = run_event(cluster, RS, count, params(channels=2, bidirectional=True, chunks=2), "int32")
    inputs = np.zeros((n, count), dtype=np.int32)
    init_buffers(inputs, RS, count)
    total = inputs.sum(axis=0)
    for r in range(n):
        block = slice(5 * r, 5 * r + 5)
        assert data.buffers[r, block].tolist() == total[block].tolist()


def test_runs_are_deterministic_and_rerunnable():
    cluster = make_cluster([("switch", 3), ("direct", 2)], nodes=3)
    prm = params(channels=2, bidirectional=True, chunks=3, in_flight=2, top="tree")
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, 4, None)
    schedule = make_schedule(cluster, AR, 1000, 4, prm)
    engine.run(schedule)
    first = engine.makespan_ps, engine.events, schedule.pieces_done
    engine.run(schedule)
    second = engine.makespan_ps, engine.events, schedule.pieces_done
    third = run_event(cluster, AR, 1000, prm)[0]
    assert first == second and first[0] == third


def _expected_all_reduce_messages(cluster, count, prm):
    """Messages an all-reduce sends (one channel, rings in unit order): counted from the nested split.

    A ring or mesh phase over a group whose chips hold m elements moves each of its M = min(m, g)
    non-empty parts to g - 1 chips; so does the all-gather back.  Across nodes the ring does the
    same twice; each non-empty tree half is sent N - 1 times up and N - 1 times down.
    """
    from fractions import Fraction

    plan = build_plan(cluster, AR, prm)
    msgs = Fraction(0)
    pieces = split_counts(count, prm.chunk_count(count * 4))
    for chip in range(cluster.chips):
        for size in pieces:
            m = size
            for lv in plan.levels:
                g = lv.size
                if lv.level < len(cluster.levels):
                    msgs += 2 * Fraction(min(m, g) * (g - 1), g)
                    m = split_counts(m, g)[(chip // lv.weight) % g]
                elif prm.top == "tree":
                    msgs += Fraction(sum(2 * (g - 1) for half in split_counts(m, 2) if half), g)
                else:
                    msgs += 2 * Fraction(min(m, g) * (g - 1), g)
    assert msgs.denominator == 1
    return int(msgs)


@pytest.mark.parametrize("levels,nodes", [([("ring", 4)], 1), ([("ring", 2), ("ring", 4)], 1),
                                          ([("switch", 3), ("direct", 4)], 2), ([("ring", 3)], 5),
                                          ([("ring", 4), ("switch", 5)], 3)])
@pytest.mark.parametrize("top", ["ring", "tree"])
def test_no_empty_messages_with_few_elements(levels, nodes, top):
    # few elements leave many parts empty, and chips that enter a phase late find transfers waiting:
    # the schedule must skip the empty steps, never send them
    cluster = make_cluster(levels, nodes)
    n = cluster.chips
    for count in sorted({1, 2, 3, n // 2, n - 1, n + 1, 2 * n + 1}):
        for chunks in (1, 3):
            prm = params(chunks=chunks, in_flight=2, top=top)
            _, schedule, engine, _ = run_event(cluster, AR, count, prm)
            deliveries = engine.events - engine.link_events
            assert deliveries == _expected_all_reduce_messages(cluster, count, prm), count


def test_next_receive_step_skips_exactly_the_empty_parts():
    from collectives._hierarchical import next_recv_step

    for g in range(2, 9):
        for m in range(1, g + 1):
            for lag in (1, 2):
                for v in range(g):
                    for s in range(g - 1):
                        # brute force: at step t position v receives part (v - lag - t) mod g; parts >= m are empty
                        want = next((t for t in range(s, g - 1) if (v - lag - t) % g < m), -1)
                        assert next_recv_step(v, g, m, lag, s) == want, (v, g, m, lag, s)


def test_schedule_state_is_linear_in_chips_and_two_cache_lines_per_slot():
    # same plan (two scale-up levels, ring across nodes: 6 phases), twice the nodes
    levels = [("switch", 4), ("ring", 3)]
    prm = params(channels=2, chunks=6, in_flight=2)
    small = make_schedule(make_cluster(levels, 3), AR, 10_000, 4, prm)
    large = make_schedule(make_cluster(levels, 6), AR, 10_000, 4, prm)
    assert small.n_phases == large.n_phases == 6
    assert large.state_bytes() == 2 * small.state_bytes()
    # per (chip, channel): slots = min(2F, k) = 4 slot records of at most 128 bytes (the hot fields of
    # a slot share one 64-byte line), plus one int64 chunk gate per phase
    per_chip_channel = small.state_bytes() / (small.n_chips * small.channels)
    assert per_chip_channel <= 4 * 128 + 6 * 8


def test_schedule_rejects_ids_beyond_32_bits_and_levels_that_do_not_tile_the_chips():
    from collectives._hierarchical import HierarchicalSchedule

    one = np.zeros(1, dtype=np.int64)

    def build(n_chips, chunks, size, weight):
        # one ring reduce-scatter phase (kind 0) on one level
        return HierarchicalSchedule(n_chips, 1, 100, False, chunks, 1, 1, False, 1, [0], [0], [size], [weight],
                                    [0], [-1], one, one, -one, -np.ones(2, dtype=np.int64))

    assert build(8, 4, 8, 1).n_phases == 1
    with pytest.raises(ValueError, match="32 bits"):
        build(2**32, 4, 2, 2**31)
    with pytest.raises(ValueError, match="32 bits"):
        build(8, 2**32, 8, 1)
    with pytest.raises(ValueError, match="does not divide"):
        build(8, 4, 3, 1)
