"""The event engine (DESIGN.md section 4): exact picosecond results worked out by hand."""
import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collsim.engine.core import COPY, REDUCE, Engine, ScriptedSchedule
from collsim.engine.core import serialization_ps as engine_serialization_ps
from collsim.errors import ConfigError
from collsim.units import serialization_ps
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology
from topologies.routing import Router

GBPS = 10**9          # 1 GB/s: 1,000 ps per byte
CHIP = ChipSpec(reduce_Bps=GBPS, launch_overhead_ps=0)


def cluster_of(levels, nodes=1, nics_per_node=1, nic=LinkSpec(GBPS, 10_000)):
    return Cluster(Topology("t", CHIP, tuple(levels), ScaleOut(nics_per_node, nic)), nodes)


def ring(n, rate_Bps=GBPS, latency_ps=1_000):
    return cluster_of([Level("ring", n, Fabric.ring, LinkSpec(rate_Bps, latency_ps))])


def engine_for(cluster, reduce_Bps=GBPS, elem_bytes=1):
    return Engine(Router(cluster), reduce_Bps, elem_bytes)


def run(cluster, src, dst, nbytes, **kw):
    engine = engine_for(cluster)
    schedule = ScriptedSchedule(src, dst, nbytes, **kw)
    makespan = engine.run(schedule)
    return engine, schedule, makespan


# --- timing primitive -------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**62 // 10**6), st.integers(1, 2**62))
def test_engine_serialization_equals_units(nbytes, rate_Bps):
    # any result that fits the engine's int64 picoseconds
    rate_Bps = max(rate_Bps, nbytes * 10**12 // (2**63 - 1) + 1)
    assert engine_serialization_ps(nbytes, rate_Bps) == serialization_ps(nbytes, rate_Bps)


def test_serialization_128_bit_boundary():
    # 18,446,744 bytes is the last size whose b * 1e12 fits in 64 bits
    for nbytes in (18_446_743, 18_446_744, 18_446_745, 2**40 + 1, 9 * 10**15):
        for rate in (3, 97 * 10**9 + 7, 2**62):
            if nbytes * 10**12 // rate < 2**63:
                assert engine_serialization_ps(nbytes, rate) == -((-nbytes * 10**12) // rate)
    assert engine_serialization_ps(18_446_745, 3) == 6_148_915_000_000_000_000
    assert engine_serialization_ps(2**40 + 1, 97 * 10**9 + 7) == 11_335_171_419_564


# --- one message -------------------------------------------------------------------

def test_one_message_one_hop():
    engine, s, makespan = run(ring(4, latency_ps=500_000), [0], [1], [100], send_ps=[7])
    # 7 + lat + 100 B at 1 GB/s
    assert s.delivered_ps.tolist() == [7 + 500_000 + 100_000]
    assert makespan == 600_007 and engine.now_ps == 600_007
    assert engine.link_events == 1 and engine.events == 2


def test_one_hop_rounds_serialization_up():
    engine, s, _ = run(ring(4, rate_Bps=3 * GBPS, latency_ps=1_000), [0], [1], [100])
    # 100 B at 3 GB/s = 33,333.33 ps -> 33,334
    assert s.delivered_ps.tolist() == [1_000 + 33_334]


def test_elem_bytes_scale_the_message():
    engine = Engine(Router(ring(4)), GBPS, 4)
    s = ScriptedSchedule([0], [1], [25])      # 25 elements of 4 bytes
    assert engine.run(s) == 1_000 + 100_000


def test_h_hops_equal_rate_cut_through():
    # ring of 8: 0 -> 3 is three hops forward
    engine, s, _ = run(ring(8, latency_ps=2_500), [0], [3], [1_000])
    assert s.delivered_ps.tolist() == [3 * 2_500 + 1_000_000]
    assert engine.link_events == 3 and engine.events == 4


def two_level(l0, l1):
    """2 x 2 chips: level 0 pair (ring of 2), level 1 pair; chip 0 -> chip 3 crosses l0 then l1."""
    return cluster_of([Level("a", 2, Fabric.ring, l0), Level("b", 2, Fabric.ring, l1)])


def test_slow_link_after_fast_one():
    cluster = two_level(LinkSpec(2 * GBPS, 1_000), LinkSpec(GBPS, 3_000))
    _, s, _ = run(cluster, [0], [3], [1_000])
    # hop 1: start 0, end 500,000, tail 501,000, head_2 = 1,000
    # hop 2: start 1,000, end max(1,000 + 1,000,000, 501,000) = 1,001,000, tail = 1,004,000
    assert s.delivered_ps.tolist() == [1_004_000]


def test_fast_link_after_slow_one():
    cluster = two_level(LinkSpec(GBPS, 2_000), LinkSpec(2 * GBPS, 3_000))
    _, s, _ = run(cluster, [0], [3], [1_000])
    # hop 1: start 0, end 1,000,000, tail 1,002,000, head_2 = 2,000
    # hop 2: start 2,000, end max(502,000, 1,002,000) = 1,002,000 (waits for upstream), tail 1,005,000
    assert s.delivered_ps.tolist() == [1_005_000]


def test_empty_schedule_runs_to_zero():
    engine, s, makespan = run(ring(4), [], [], [])
    assert makespan == 0 and engine.events == 0 and s.delivered_ps.shape == (0,)


def test_send_to_self_uses_no_link():
    engine, s, makespan = run(ring(4), [2], [2], [1_000], send_ps=[123])
    assert s.delivered_ps.tolist() == [123] and makespan == 123
    assert engine.link_events == 0 and engine.events == 1


# --- contention ---------------------------------------------------------------------

def test_two_messages_contend_fifo_by_head_arrival():
    # ring of 4: A = 0 -> 2 crosses (0,+) then (1,+); B = 1 -> 2 crosses (1,+) only
    engine, s, _ = run(ring(4), [0, 1], [2, 2], [1_000, 1_000])
    # B's head reaches (1,+) at 0, A's at 1,000: B first: end 1,000,000, delivered 1,001,000
    # A: hop 1 end 1,000,000, tail 1,001,000; hop 2 start max(1,000, 1,000,000), end 2,000,000
    assert s.delivered_ps.tolist() == [2_001_000, 1_001_000]
    assert engine.link_events == 3 and engine.events == 5


def switch4():
    return cluster_of([Level("sw", 4, Fabric.switch, LinkSpec(GBPS, 1_000))])


def test_tie_on_time_breaks_on_source_chip():
    # A = 1 -> 2 is listed (and sent) first, B = 0 -> 2 second; both heads reach
    # 2's downlink at t = 1,000: the lower source chip (B) is served first.
    _, s, _ = run(switch4(), [1, 0], [2, 2], [1_000, 1_000])
    # uplinks: end 1,000,000, tail 1,001,000.  B down: start 1,000, end 1,001,000, tail 1,002,000
    # A down: start 1,001,000, end 2,001,000, tail 2,002,000
    assert s.delivered_ps.tolist() == [2_002_000, 1_002_000]


def test_tie_on_time_and_source_breaks_on_sequence():
    # chip 3 sends two messages at t = 0; the first sent (seq 0) goes first on the shared uplink
    _, s, _ = run(switch4(), [3, 3], [1, 1], [2_000, 1_000])
    # M0: up 0..2,000,000; down start 1,000, end max(2,001,000, 2,001,000), delivered 2,002,000
    # M1: up start 2,000,000, end 3,000,000, head_2 = 2,001,000; down start max(2,001,000, 2,001,000),
    #     end max(3,001,000, 3,001,000) = 3,001,000, delivered 3,002,000
    assert s.delivered_ps.tolist() == [2_002_000, 3_002_000]


def test_later_message_waits_for_free_link():
    # same link (0,+), second message sent while the first still occupies it
    _, s, _ = run(ring(4), [0, 0], [1, 1], [1_000, 500], send_ps=[0, 400_000])
    # first: 0..1,000,000, delivered 1,001,000; second starts at 1,000,000, ends 1,500,000
    assert s.delivered_ps.tolist() == [1_001_000, 1_501_000]


def test_link_free_state_holds_last_reservation_end():
    engine, s, _ = run(ring(4), [0, 1], [2, 2], [1_000, 1_000])
    free = engine.link_free_ps_array()
    # ring of 4 ports: 0 = +, 1 = -; link = chip * 2 + port
    assert free[0 * 2 + 0] == 1_000_000 and free[1 * 2 + 0] == 2_000_000
    assert np.count_nonzero(free) == 2


# --- dependencies and reduction -------------------------------------------------------

def test_dependency_chain_sends_when_previous_delivered():
    # 0 -> 1 -> 2 -> 3 around a ring, each hop 1,000 B; message i+1 leaves at delivery of i
    _, s, makespan = run(ring(4), [0, 1, 2], [1, 2, 3], [1_000] * 3, after=[-1, 0, 1])
    assert s.delivered_ps.tolist() == [1_001_000, 2_002_000, 3_003_000]
    assert s.sent_ps.tolist() == [0, 1_001_000, 2_002_000]
    assert makespan == 3_003_000


def test_dependency_not_before_its_own_send_time():
    _, s, _ = run(ring(4), [0, 1], [1, 2], [1_000, 1_000], send_ps=[0, 5_000_000], after=[-1, 0])
    assert s.sent_ps.tolist() == [0, 5_000_000] and s.delivered_ps[1] == 6_001_000


def test_reduce_unit_is_fifo_per_chip():
    engine = engine_for(ring(4), reduce_Bps=GBPS)
    assert engine.reduce_py(0, 0, 100) == 100_000
    assert engine.reduce_py(0, 50_000, 100) == 200_000      # waits for the first
    assert engine.reduce_py(0, 500_000, 10) == 510_000      # idle unit starts at once
    assert engine.reduce_py(1, 0, 1) == 1_000               # other chips are independent
    assert engine.reduce_free_ps_array().tolist() == [510_000, 1_000, 0, 0]


def test_reduce_rate_rounds_up():
    engine = engine_for(ring(4), reduce_Bps=3 * GBPS)
    assert engine.reduce_py(3, 10, 100) == 10 + 33_334


def test_reduce_delays_dependent_send():
    # two messages into chip 1 each reduced there (FIFO), then chip 1 forwards to chip 2
    engine, s, _ = run(ring(4), [0, 2, 1], [1, 1, 2], [1_000, 1_000, 1_000],
                       after=[-1, -1, 1], reduce_nbytes=[1_000, 1_000, 0])
    # both delivered at 1,001,000 (different links); src 0's delivery event runs first and
    # takes the reduction unit 1,001,000..2,001,000; src 2's reduces 2,001,000..3,001,000
    assert s.delivered_ps.tolist()[:2] == [1_001_000, 1_001_000]
    assert s.ready_ps.tolist()[:2] == [2_001_000, 3_001_000]
    # message 2 leaves chip 1 at 3,001,000 over (1,+): delivered 4,002,000
    assert s.sent_ps[2] == 3_001_000 and s.delivered_ps[2] == 4_002_000


def test_event_counts_sum_of_hops():
    cluster = ring(8)
    src = [0, 0, 3, 5, 7, 2]
    dst = [4, 1, 1, 5, 2, 6]
    engine, _, _ = run(cluster, src, dst, [10] * 6)
    hops = sum(len(cluster.route(a, b)) for a, b in zip(src, dst))
    assert hops == 4 + 1 + 2 + 0 + 3 + 4
    assert engine.link_events == hops and engine.events == hops + len(src)
    assert engine.in_flight == 0 and engine.peak_in_flight == 6


def test_scale_out_hops_split_nic_latency():
    nic = LinkSpec(GBPS, 10_001)
    cluster = cluster_of([Level("ring", 2, Fabric.ring, LinkSpec(GBPS, 1_000))], nodes=2, nic=nic, nics_per_node=2)
    _, s, _ = run(cluster, [0], [3], [1_000])
    # NIC up (latency 5,001) then NIC down (5,000): sum of latencies + one serialization
    assert s.delivered_ps.tolist() == [10_001 + 1_000_000]


# --- errors ------------------------------------------------------------------------

def test_bad_chip_is_reported():
    engine = engine_for(ring(4))
    with pytest.raises(RuntimeError, match="outside"):
        engine.run(ScriptedSchedule([0], [9], [1]))


def test_bad_engine_parameters():
    router = Router(ring(4))
    with pytest.raises(ConfigError):
        Engine(router, 0, 1)
    with pytest.raises(ConfigError):
        Engine(router, GBPS, 0)


def test_scripted_schedule_validates_arrays():
    with pytest.raises(ValueError):
        ScriptedSchedule([0, 1], [1], [1, 1])
    with pytest.raises(ValueError):
        ScriptedSchedule([0], [1], [1], after=[0])
    with pytest.raises(ValueError):
        ScriptedSchedule([0], [1], [1], op=[7])


# --- determinism and a reference model -------------------------------------------------

def reference_run(cluster, src, dst, nbytes, send_ps, after, reduce_nbytes, reduce_Bps):
    """Straight Python transcription of DESIGN.md section 4, heapq keyed (time, src, seq)."""
    free, reduce_free, next_seq = {}, {}, {}
    n = len(src)
    delivered = [-1] * n
    children = {}
    for i, parent in enumerate(after):
        children.setdefault(parent, []).append(i)
    heap = []

    def send(i, t):
        seq = next_seq.get(src[i], 0)
        next_seq[src[i]] = seq + 1
        path = cluster.route(src[i], dst[i])
        # state: [i, hop, head, tail]
        heapq.heappush(heap, (t, src[i], seq, [i, path, 0, t, t]))

    for i in children.get(-1, []):
        send(i, send_ps[i])
    while heap:
        t, s, seq, state = heapq.heappop(heap)
        i, path, hop, head, tail = state
        if hop < len(path):
            link = path[hop]
            spec = cluster.link_spec(link)
            start = max(head, free.get(link, 0))
            end = max(start + serialization_ps(nbytes[i], spec.rate_Bps), tail)
            free[link] = end
            tail = end + spec.latency_ps
            hop += 1
            head = start + spec.latency_ps
            heapq.heappush(heap, (head if hop < len(path) else tail, s, seq, [i, path, hop, head, tail]))
        else:
            delivered[i] = t
            ready = t
            if reduce_nbytes[i] > 0:
                ready = max(t, reduce_free.get(dst[i], 0)) + serialization_ps(reduce_nbytes[i], reduce_Bps)
                reduce_free[dst[i]] = ready
            for c in children.get(i, []):
                send(c, max(ready, send_ps[c]))
    return delivered


@st.composite
def scenario(draw):
    n = draw(st.integers(1, 40))
    chips = 2 * 6 * 2
    src = draw(st.lists(st.integers(0, chips - 1), min_size=n, max_size=n))
    dst = draw(st.lists(st.integers(0, chips - 1), min_size=n, max_size=n))
    nbytes = draw(st.lists(st.integers(0, 5_000), min_size=n, max_size=n))
    send_ps = draw(st.lists(st.sampled_from([0, 0, 1_000, 7_777, 2_000_000]), min_size=n, max_size=n))
    after = [draw(st.integers(-1, i - 1)) if i else -1 for i in range(n)]
    reduce_nbytes = draw(st.lists(st.sampled_from([0, 0, 1, 999, 4_000]), min_size=n, max_size=n))
    return src, dst, nbytes, send_ps, after, reduce_nbytes


def mixed_cluster():
    """24 chips: pair ring x 6-chip switch per node, 2 nodes, 3 NICs per node; rates not round."""
    levels = [Level("pair", 2, Fabric.ring, LinkSpec(3 * GBPS, 1_000)),
              Level("sw", 6, Fabric.switch, LinkSpec(7 * GBPS, 333))]
    return cluster_of(levels, nodes=2, nics_per_node=3, nic=LinkSpec(GBPS + 7, 5_001))


def transit_cluster(ring_latency_ps=1_000):
    """24 chips: 4-chip ring (messages in transit) x 3-chip switch per node, 2 nodes, a NIC per chip.

    Sends at the current time may reserve their first link at once here (scale-up
    links, NIC uplinks of one chip each), unless the ring's latency is 0.
    """
    levels = [Level("ring4", 4, Fabric.ring, LinkSpec(3 * GBPS, ring_latency_ps)),
              Level("sw", 3, Fabric.switch, LinkSpec(7 * GBPS, 333))]
    return cluster_of(levels, nodes=2, nics_per_node=12, nic=LinkSpec(GBPS + 7, 5_001))


CLUSTERS = {"mixed": mixed_cluster, "transit": transit_cluster, "zero_latency": lambda: transit_cluster(0)}


@pytest.mark.parametrize("name", CLUSTERS)
@settings(max_examples=120, deadline=None)
@given(case=scenario())
def test_engine_matches_reference_model(name, case):
    src, dst, nbytes, send_ps, after, reduce_nbytes = case
    cluster = CLUSTERS[name]()
    engine = Engine(Router(cluster), 2 * GBPS + 1, 1)
    s = ScriptedSchedule(src, dst, nbytes, send_ps=send_ps, after=after, reduce_nbytes=reduce_nbytes)
    makespan = engine.run(s)
    expected = reference_run(cluster, src, dst, nbytes, send_ps, after, reduce_nbytes, 2 * GBPS + 1)
    assert s.delivered_ps.tolist() == expected
    assert makespan == max(expected)
    hops = sum(len(cluster.route(a, b)) for a, b in zip(src, dst))
    assert engine.link_events == hops and engine.events == hops + len(src)


def test_same_scenario_twice_gives_identical_arrays():
    rng = np.random.default_rng(3)
    n = 2_000
    src = rng.integers(0, 24, n)
    dst = rng.integers(0, 24, n)
    nbytes = rng.integers(1, 100_000, n)
    after = np.where(rng.random(n) < 0.7, rng.integers(-1, np.arange(n).clip(1)), -1)
    after[0] = -1
    after = np.where(after >= np.arange(n), -1, after)
    cluster = mixed_cluster()
    first = Engine(Router(cluster), GBPS, 1)
    s1 = ScriptedSchedule(src, dst, nbytes, after=after, reduce_nbytes=nbytes // 3)
    t1 = first.run(s1)
    d1, r1, e1 = s1.delivered_ps.copy(), s1.ready_ps.copy(), first.events
    # rerun on the same engine and schedule (state reset), and on fresh ones
    assert first.run(s1) == t1 and first.events == e1
    assert np.array_equal(s1.delivered_ps, d1) and np.array_equal(s1.ready_ps, r1)
    second = Engine(Router(cluster), GBPS, 1)
    s2 = ScriptedSchedule(src, dst, nbytes, after=after, reduce_nbytes=nbytes // 3)
    assert second.run(s2) == t1
    assert np.array_equal(s2.delivered_ps, d1) and np.array_equal(s2.ready_ps, r1)
    assert np.array_equal(first.link_free_ps_array(), second.link_free_ps_array())
    assert (d1 >= 0).all()


@pytest.mark.parametrize("window_ps", [1, 999, 50_000, 10**12])
def test_windowed_processing_gives_the_same_run(window_ps):
    # the pieces a distributed runner reuses (_begin, _process_until, next_event_ps)
    rng = np.random.default_rng(8)
    n = 300
    src, dst = rng.integers(0, 24, n), rng.integers(0, 24, n)
    nbytes = rng.integers(1, 50_000, n)
    after = np.array([rng.integers(-1, i) if i else -1 for i in range(n)])
    cluster = mixed_cluster()
    whole = ScriptedSchedule(src, dst, nbytes, after=after, reduce_nbytes=nbytes // 2)
    engine = Engine(Router(cluster), GBPS, 1)
    makespan, events = engine.run(whole), engine.events
    windowed = ScriptedSchedule(src, dst, nbytes, after=after, reduce_nbytes=nbytes // 2)
    assert engine._run_in_windows(windowed, window_ps) == makespan
    assert engine.events == events
    assert np.array_equal(windowed.delivered_ps, whole.delivered_ps)


def test_ops_constants():
    assert (COPY, REDUCE) == (0, 1)


# --- first links reserved at send time -------------------------------------------------

def test_send_reserves_first_link_at_once_only_when_nothing_is_queued_for_it():
    # D (0 -> 1) is delivered at 2,000 ps; A (1 -> 2) was queued at start for 2,000 ps and
    # C (1 -> 2) is sent when D arrives, also at 2,000 ps.  A has the smaller sequence
    # number, so it goes first on link 1 -> 2 although its event is still queued when C is
    # sent: C must not take the link on the spot.
    cluster = ring(3)
    engine = engine_for(cluster)
    s = ScriptedSchedule(src=[0, 1, 1], dst=[1, 2, 2], count=[1, 5, 1], send_ps=[0, 2_000, 0], after=[-1, -1, 0])
    engine.run(s)
    # D: [0, 1000) + 1000 latency; A: [2000, 7000) -> 8000; C waits: [7000, 8000) -> 9000
    assert s.delivered_ps.tolist() == [2_000, 8_000, 9_000]
    assert engine.reserved_at_send == 1      # D only
    assert engine.events == 3 + 3 and engine.link_events == 3


@pytest.mark.parametrize("preset, nodes", [("trn2", 2), ("trn1", 2), ("trn3-ultraserver", 1), ("dgx-h100", 2)])
@pytest.mark.parametrize("algorithm", ["ring", "tree", "hierarchical"])
def test_reserving_at_send_changes_nothing_but_the_queue(preset, nodes, algorithm):
    from collectives.base import AlgorithmParams, Collective
    from collectives.registry import algorithm_module
    from topologies.presets import preset_cluster

    cluster = preset_cluster(preset, nodes)
    runs = []
    for at_send in (True, False):
        schedule = algorithm_module(algorithm).make_schedule(cluster, Collective.all_reduce, 3 * 2**14 + 5, 4,
                                                             AlgorithmParams(chunks=3, in_flight=2))
        engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, 4, reserve_at_send=at_send)
        engine.run(schedule)
        runs.append(engine)
    spot, queued = runs
    assert spot.reserved_at_send > 0 and queued.reserved_at_send == 0
    assert (spot.makespan_ps, spot.events, spot.link_events, spot.peak_in_flight) == \
        (queued.makespan_ps, queued.events, queued.link_events, queued.peak_in_flight)
    assert np.array_equal(spot.link_free_ps_array(), queued.link_free_ps_array())
    assert np.array_equal(spot.reduce_free_ps_array(), queued.reduce_free_ps_array())


def test_no_reservation_at_send_when_a_scale_up_latency_is_zero():
    # a zero-latency ring could bring a message in transit onto a link at the same
    # instant as a send, after it: only the NIC uplinks (never in transit) qualify
    cluster = transit_cluster(0)
    engine = engine_for(cluster)
    engine.run(ScriptedSchedule(src=[0, 0], dst=[1, 12], count=[10, 10]))
    assert engine.reserved_at_send == 1      # the scale-out send (chip 0's NIC uplink)


def test_pool_growth_inside_a_delivery():
    # deliver() reads its message in place: when the sends it makes outgrow the pool
    # (1,024 slots at first), the old pool must stay readable until deliver returns
    n = 5_000
    src = [0] + [1] * n
    dst = [1] + [2] * n
    after = [-1] + [0] * n
    cluster = ring(3)
    engine, s, makespan = run(cluster, src, dst, [1] * (n + 1), after=after)
    expected = reference_run(cluster, src, dst, [1] * (n + 1), [0] * (n + 1), after, [0] * (n + 1), GBPS)
    assert s.delivered_ps.tolist() == expected
    assert engine.peak_in_flight == n
