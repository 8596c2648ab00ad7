"""``threads=T``: the MPI chip-group split run by T threads of one process (collsim/distributed.py).

Every case compares T = 2 and 3 with the plain engine (T = 1): makespan, events and link
events, and in data fidelity #wrong == 0 and every element of every chip's buffer.  The
clusters are small presets whose nodes split unevenly over 2 and 3 threads.
"""
import threading

import numpy as np
import pytest

from collectives.base import AlgorithmParams, Collective, effective_count
from collectives.event import simulate
from collsim import distributed
from collsim.engine.core import COPY, Engine, ScriptedSchedule
from collsim.engine.data import DataPlane
from collsim.errors import ConfigError
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology
from topologies.presets import preset_cluster
from topologies.routing import Router

THREADS = (2, 3)
# nodes per thread: trn2 x 5 -> 3+2 and 2+2+1; UltraServers x 3 -> 2+1 and 1+1+1
CLUSTERS = {"trn2-x5": ("trn2", 5), "trn2-ultraserver-x3": ("trn2-ultraserver", 3),
            "trn3-ultraserver-x3": ("trn3-ultraserver", 3)}
ALGORITHMS = {"ring": ("ring", "auto"), "tree": ("tree", "auto"), "hierarchical-top-ring": ("hierarchical", "ring"),
              "hierarchical-top-tree": ("hierarchical", "tree")}
ELEMENTS = 3_001  # per chip before nccl-tests rounding: uneven chunks and channels


def workload(cluster_name, algorithm_name, collective, verify):
    cluster = preset_cluster(*CLUSTERS[cluster_name])
    algorithm, top = ALGORITHMS[algorithm_name]
    params = AlgorithmParams(chunks=4, in_flight=2, top=top)  # a window smaller than the chunks: flow control
    count = effective_count(collective, ELEMENTS, cluster.chips)
    return distributed.Workload(cluster, collective, algorithm, count, "float32", 4, params, verify)


CASES = [(c, a, coll) for c in CLUSTERS for a in ALGORITHMS for coll in Collective]


@pytest.mark.parametrize("cluster_name, algorithm_name, collective", CASES)
def test_event_fidelity_is_identical_for_any_thread_count(cluster_name, algorithm_name, collective):
    work = workload(cluster_name, algorithm_name, collective, False)
    args = (work.cluster, collective, work.algorithm, work.count, "float32", 4, work.params, False)
    reference = simulate(*args)
    assert reference.events > 0 and reference.wrong is None
    for threads in THREADS:
        assert simulate(*args, threads=threads) == reference, threads


def run_partitions(work, threads):
    """The run split into ``threads`` partitions (1: the plain engine): its totals and every chip's buffer."""
    router = Router(work.cluster)
    parts = [work.partition(t, threads, router) for t in range(threads)]
    if threads == 1:
        parts[0].engine.run(parts[0].schedule)
    else:
        distributed.run_in_process([p.engine for p in parts], [p.schedule for p in parts],
                                   distributed.lookahead_ps(work.cluster), parallel=True)
        assert all(p.engine.events > 0 for p in parts)  # every thread simulated its own chips
    totals = np.stack([p.totals() for p in parts])
    return work.result(totals, None), np.concatenate([p.engine.data.buffers for p in parts])


@pytest.mark.parametrize("cluster_name, algorithm_name, collective", CASES)
def test_data_fidelity_gives_the_same_buffers_for_any_thread_count(cluster_name, algorithm_name, collective):
    work = workload(cluster_name, algorithm_name, collective, True)
    reference, buffers = run_partitions(work, 1)
    assert reference.events > 0 and reference.wrong == 0
    assert buffers.shape == (work.cluster.chips, work.count)
    for threads in THREADS:
        result, split_buffers = run_partitions(work, threads)
        assert result == reference, threads
        assert np.array_equal(split_buffers, buffers), threads  # every element, not only the count of wrong ones


def test_data_fidelity_through_the_simulate_entry_point():
    work = workload("trn2-x5", "hierarchical-top-tree", Collective.all_reduce, True)
    args = (work.cluster, work.collective, work.algorithm, work.count, "float32", 4, work.params, True)
    reference = simulate(*args)
    assert reference.wrong == 0 and simulate(*args, threads=4) == reference  # 2+1+1+1 nodes


def test_threads_split_into_windows_like_ranks():
    work = workload("trn2-x5", "tree", Collective.all_reduce, False)
    result = distributed.simulate_in_threads(3, work.cluster, work.collective, work.algorithm, work.count, "float32", 4,
                                             work.params, False)
    router = Router(work.cluster)
    ranks = [work.partition(r, 3, router) for r in range(3)]
    windows = distributed.run_in_process([p.engine for p in ranks], [p.schedule for p in ranks],
                                         distributed.lookahead_ps(work.cluster))
    assert result.stats.windows == windows > 1


# --- the threads really run at once ---------------------------------------------------------


class LockstepEngine:
    """Just enough of an Engine for ``window_loop``: one event per window, none sent; each
    window waits at a barrier for every other partition's, so it passes only if they run at once."""

    def __init__(self, rank, ranks, windows, barrier, lookahead):
        self.rank, self.ranks, self.windows, self.barrier, self.lookahead = rank, ranks, windows, barrier, lookahead
        self.thread_ids = set()

    def _window_begin(self, schedule):
        self.next_ps = 0

    def _take_outbox(self):
        return np.empty(0, np.uint8), np.zeros(self.ranks, np.int64), distributed.INT64_MAX

    def _next_event(self):
        return self.next_ps if self.next_ps < self.windows * self.lookahead else distributed.INT64_MAX

    def _give_inbox(self, records):
        assert records.shape == (0,)

    def _window_run(self, schedule, t_end_ps):
        self.barrier.wait()
        self.thread_ids.add(threading.get_ident())
        assert self.next_ps < t_end_ps <= self.next_ps + self.lookahead
        self.next_ps += self.lookahead


def test_partitions_process_their_windows_in_threads_at_once():
    barrier = threading.Barrier(3, timeout=10)
    engines = [LockstepEngine(r, 3, 50, barrier, 1_000) for r in range(3)]
    assert distributed.run_in_process(engines, [None] * 3, 1_000, parallel=True) == 50
    assert len(set.union(*(e.thread_ids for e in engines))) == 3  # one thread per partition
    with pytest.raises(threading.BrokenBarrierError):  # one after the other, they would wait for ever
        distributed.run_in_process([LockstepEngine(r, 3, 1, threading.Barrier(3, timeout=0.1), 1_000)
                                    for r in range(3)], [None] * 3, 1_000)


# --- failures ---------------------------------------------------------------------------------


def pairs(nodes):
    """Nodes of two chips on a ring, one NIC per node: 1 GB/s everywhere (1,000 ps per byte)."""
    level = Level("pair", 2, Fabric.ring, LinkSpec(10**9, 1_000))
    return Cluster(Topology("pairs", ChipSpec(10**9, 0), (level,), ScaleOut(1, LinkSpec(10**9, 10_000))), nodes)


@pytest.mark.parametrize("bad_sender", [0, 4])  # on partition 0 (the calling thread) or 2 (a pool thread)
def test_an_error_in_a_thread_is_the_error_one_engine_raises(bad_sender):
    # 3 nodes of 2 chips, 3 partitions.  The first message crosses nodes; on its delivery the
    # receiver sends a slice [100, 350) of a 300-element buffer: the engine stops with an error
    # in the second window of the partition that owns bad_sender.
    first_sender = 4 if bad_sender == 0 else 0
    script = ([first_sender, bad_sender], [bad_sender, 1], [250, 250])
    kw = dict(after=[-1, 0], offset=[0, 100], op=[COPY, COPY])
    cluster = pairs(3)
    single = Engine(Router(cluster), 10**9, 4, DataPlane(6, 300, "int32"))
    with pytest.raises(RuntimeError) as expected:
        single.run(ScriptedSchedule(*script, **kw))
    assert "outside the buffer of 300 elements" in str(expected.value)
    engines = [Engine(Router(cluster), 10**9, 4, DataPlane(2, 300, "int32"), r, 3) for r in range(3)]
    before = threading.active_count()
    with pytest.raises(RuntimeError) as got:
        distributed.run_in_process(engines, [ScriptedSchedule(*script, **kw) for _ in range(3)],
                                   distributed.lookahead_ps(cluster), parallel=True)
    assert str(got.value) == str(expected.value)
    assert threading.active_count() == before  # no thread left behind


def test_a_setup_error_is_the_one_threads_1_gives():
    # data buffers that cannot be held: refused for the whole cluster, though each partition's share would fit
    cluster = preset_cluster("trn2", 4)
    args = (cluster, Collective.all_reduce, "ring", 2**40, "float32", 4, AlgorithmParams(), True)
    with pytest.raises(ConfigError) as one:
        simulate(*args)
    with pytest.raises(ConfigError) as four:
        simulate(*args, threads=4)
    assert (four.value.field, str(four.value)) == (one.value.field, str(one.value))


def test_thread_counts_the_split_cannot_use_are_refused_naming_threads():
    cluster = pairs(2)
    with pytest.raises(ConfigError) as err:
        distributed.check_threads(cluster, 3, 1)
    assert err.value.field == "threads"
    assert str(err.value) == ("threads: 2 nodes cannot be split over 3 threads (each thread simulates whole nodes); "
                              "use at most 2 threads or more nodes")
    with pytest.raises(ConfigError) as err:
        distributed.check_threads(cluster, 2, 2)
    assert err.value.field == "threads" and "cannot be combined with 2 MPI ranks" in str(err.value)
    distributed.check_threads(cluster, 2, 1)
    distributed.check_threads(cluster, 1, 2)
    with pytest.raises(ConfigError, match="^threads: 2 nodes cannot be split over 3 threads"):
        simulate(cluster, Collective.all_reduce, "ring", 0, "int32", 4, AlgorithmParams(), False, threads=3)
