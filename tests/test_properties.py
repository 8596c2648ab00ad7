"""Properties over random small clusters (DESIGN.md sections 4-6; issue: event fidelity).

Every fabric, 1-64 chips (odd and prime counts included), one or several nodes
with shared NICs and oversubscribed trees, sizes 0, 1, < n and not divisible by
n, every algorithm x collective x dtype:

* data fidelity verifies every element: 0 wrong;
* neither event nor analytic time is below the proven lower bound
  (collectives.base.lower_bound_ps);
* a second run gives the identical time, event count and data.
"""
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectives.base import ALGORITHMS, AlgorithmParams, Collective, lower_bound_ps
from collectives.event import simulate
from collectives.registry import algorithm_module
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology

DTYPES = {"float32": 4, "float16": 2, "int32": 4}


@st.composite
def links(draw):
    return LinkSpec(
        bandwidth_Bps=draw(st.sampled_from([10**9, 7 * 10**9, 100 * 10**9])),
        latency_ps=draw(st.sampled_from([0, 1_000, 1_500_000])),
        efficiency=draw(st.sampled_from([1.0, 0.9])),
    )


@st.composite
def levels(draw):
    fabric = draw(st.sampled_from([Fabric.ring, Fabric.torus, Fabric.switch, Fabric.direct]))
    if fabric is Fabric.torus:
        dims = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
        return Level("l", math.prod(dims), fabric, draw(links()), dims)
    return Level("l", draw(st.integers(1, 5)), fabric, draw(links()))


@st.composite
def clusters(draw):
    lvls = draw(st.lists(levels(), min_size=1, max_size=2))
    lvls = [Level(f"l{i}", lv.size, lv.fabric, lv.link, lv.dims) for i, lv in enumerate(lvls)]
    per_node = math.prod(lv.size for lv in lvls)
    nodes = draw(st.integers(1, max(1, min(4, 64 // per_node))))
    nics = draw(st.sampled_from([d for d in range(1, per_node + 1) if per_node % d == 0]))
    scale_out = ScaleOut(
        nics_per_node=nics,
        nic=draw(links()),
        oversubscription=draw(st.sampled_from([1.0, 2.0])),
        nics_per_leaf=draw(st.sampled_from([1, 2, 32])),
        spine_latency_ps=draw(st.sampled_from([0, 500_000])),
    )
    chip = ChipSpec(reduce_Bps=draw(st.sampled_from([10**9, 10**12])), launch_overhead_ps=draw(st.sampled_from([0, 4_700_000])))
    return Cluster(Topology("random", chip, tuple(lvls), scale_out), nodes)


@st.composite
def params(draw):
    return AlgorithmParams(
        channels=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        chunks=draw(st.integers(1, 3)),
        in_flight=draw(st.integers(1, 3)),
        top=draw(st.sampled_from(["ring", "tree", "auto"])),
    )


# derandomize: CI explores the same 250 cases every run, so main stays reproducibly green.
@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    cluster=clusters(),
    algorithm=st.sampled_from(ALGORITHMS),
    collective=st.sampled_from(list(Collective)),
    dtype=st.sampled_from(sorted(DTYPES)),
    count=st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(0, 400)),
    prm=params(),
)
def test_every_algorithm_is_correct_bounded_and_deterministic(cluster, algorithm, collective, dtype, count, prm):
    elem = DTYPES[dtype]
    first = simulate(cluster, collective, algorithm, count, dtype, elem, prm, verify=True)
    assert first.wrong == 0
    bound = lower_bound_ps(cluster, collective, count, elem)
    assert first.time_ps >= bound
    assert algorithm_module(algorithm).analytic_time_ps(cluster, collective, count, elem, prm) >= bound
    again = simulate(cluster, collective, algorithm, count, dtype, elem, prm, verify=True)
    assert (again.time_ps, again.events, again.link_events, again.wrong) == (
        first.time_ps, first.events, first.link_events, 0)
    timing_only = simulate(cluster, collective, algorithm, count, dtype, elem, prm, verify=False)
    if algorithm != "hierarchical":  # hierarchical coalesces strided runs into one message without data
        assert timing_only.time_ps == first.time_ps


def test_lower_bound_by_hand():
    # 4 chips on a switch (uplink + downlink per chip) at 100 GB/s, latency 1 us, launch 5 us:
    # an all-reduce of 4 MiB must bring 4 MiB into each chip through its one downlink.
    topo = Topology("s", ChipSpec(10**12, 5_000_000), (Level("s", 4, Fabric.switch, LinkSpec(100 * 10**9, 10**6)),),
                    ScaleOut(4, LinkSpec(10**9, 10**6)))
    cluster = Cluster(topo, 1)
    assert lower_bound_ps(cluster, Collective.all_reduce, 2**20, 4) == 5_000_000 + 1_000_000 + 41_943_040
    # all-gather: 3 of the 4 blocks, 3 MiB
    assert lower_bound_ps(cluster, Collective.all_gather, 2**20, 4) == 5_000_000 + 1_000_000 + 31_457_280
    assert lower_bound_ps(cluster, Collective.all_reduce, 0, 4) == 5_000_000
