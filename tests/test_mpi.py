"""MPI chip groups (DESIGN.md section 7): ownership, lookahead, exchange, identical results, failures.

In-process tests drive several rank engines through the same window loop as
the MPI driver (``collsim.distributed.run_in_process``), with hand-computed
picosecond timings and element-by-element data checks.  Subprocess tests run
``mpiexec -n R`` (oversubscribed on a small machine) with timeouts, so a hang
fails instead of blocking.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from collectives.base import AlgorithmParams, Collective, effective_count
from collectives.registry import algorithm_module
from collectives.verify import count_wrong, init_buffers
from collsim import distributed
from collsim.engine.core import COPY, REDUCE, WAKE, Engine, ScriptedSchedule, rank_nodes
from collsim.engine.data import DataPlane
from collsim.errors import ConfigError
from tests.conftest import VENV_BIN
from tests.mpi_cases import clusters
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology
from topologies.routing import Router

GBPS = 10**9  # 1 GB/s: 1,000 ps per byte
TIMEOUT_S = 120
CLUSTERS = dict(clusters())


def pairs(nodes, nic=LinkSpec(GBPS, 10_000), **scale_out):
    """Nodes of two chips on a ring, one NIC per node (NIC uplink 5,000 ps, downlink 5,000 ps)."""
    level = Level("pair", 2, Fabric.ring, LinkSpec(GBPS, 1_000))
    return Cluster(Topology("pairs", ChipSpec(GBPS, 0), (level,), ScaleOut(1, nic, **scale_out)), nodes)


# --- partition and ownership ------------------------------------------------------------


def test_nodes_split_into_contiguous_balanced_blocks():
    assert [rank_nodes(7, 3, r) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    assert [rank_nodes(4, 4, r) for r in range(4)] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert [rank_nodes(1024, 2, r) for r in range(2)] == [(0, 512), (512, 1024)]
    with pytest.raises(ValueError):
        rank_nodes(2, 3, 0)


def test_engine_owns_whole_nodes():
    cluster = pairs(5)
    engines = [Engine(Router(cluster), GBPS, 1, None, r, 2) for r in range(2)]
    assert [(e.chip_lo, e.chip_hi) for e in engines] == [(0, 6), (6, 10)]
    with pytest.raises(ValueError):
        Engine(Router(cluster), GBPS, 1, None, 0, 6)  # more ranks than nodes
    with pytest.raises(ValueError):
        Engine(Router(cluster), GBPS, 4, DataPlane(10, 8, "int32"), 0, 2)  # rank 0 holds 6 chips, not 10


def test_every_link_has_the_owner_the_rules_give():
    # 5 nodes x 2 chips, one NIC per node, 2 NICs per leaf, oversubscription 2: 1 trunk per leaf, 3 leaves
    cluster = pairs(5, oversubscription=2.0, nics_per_leaf=2, spine_latency_ps=3_000)
    assert [(g.name, g.first, g.count) for g in cluster.link_groups] == [
        ("pair", 0, 10), ("nic_up", 10, 5), ("nic_down", 15, 5), ("leaf_up", 20, 3), ("leaf_down", 23, 3)]
    engine = Engine(Router(cluster), GBPS, 1, None, 0, 2)  # rank 0: nodes 0-2, rank 1: nodes 3-4
    owners = [engine.rank_of_link_py(link) for link in range(cluster.num_links)]
    scale_up = [0] * 6 + [1] * 4  # the sending chip's node
    nics = [0, 0, 0, 1, 1]  # NIC k is node k's
    leaves = [0, 0, 1]  # a leaf's trunks go with its first NIC: NICs 0, 2, 4
    assert owners == scale_up + nics + nics + leaves + leaves


def test_more_ranks_than_nodes_is_refused_naming_the_field():
    with pytest.raises(ConfigError) as err:
        distributed.check_partition(pairs(2), 3)
    assert err.value.field == "cluster.nodes"
    assert str(err.value).startswith("cluster.nodes: 2 nodes cannot be split over 3 MPI ranks")


# --- lookahead and windows ----------------------------------------------------------------


def test_lookahead_is_the_shortest_scale_out_latency():
    # NIC 8,000,001 ps: uplink 4,000,001, downlink 4,000,000
    assert distributed.lookahead_ps(CLUSTERS["torus2x2x4"]) == 4_000_000
    # spine 3,000,001 ps: leaf uplink 1,500,001, downlink 1,500,000
    assert distributed.lookahead_ps(CLUSTERS["pair-x5-oversubscribed"]) == 1_500_000
    # trn2: 15 us NIC split in two
    assert distributed.lookahead_ps(CLUSTERS["trn2x2"]) == 7_500_000
    # a zero spine latency on a non-blocking tree has no trunks: it does not matter
    assert distributed.lookahead_ps(pairs(3, spine_latency_ps=0)) == 5_000


def test_zero_latency_crossing_links_are_refused():
    with pytest.raises(ConfigError) as err:
        distributed.lookahead_ps(pairs(5, oversubscription=2.0, nics_per_leaf=2, spine_latency_ps=0))
    assert err.value.field == "topology.scale_out.spine_latency"
    with pytest.raises(ConfigError) as err:
        distributed.lookahead_ps(pairs(3, nic=LinkSpec(GBPS, 1)))  # uplink 1 ps, downlink 0
    assert err.value.field == "topology.scale_out.nic.latency"


def test_window_horizon():
    big = distributed.INT64_MAX
    earliest = np.array([100, 50, big])
    # another rank holds t0 = 50: up to 50 + 10; rank 1 holds it alone: min(100, 50 + 10) + 10
    assert [distributed.horizon(earliest, r, 10) for r in range(3)] == [60, 70, 60]
    assert distributed.horizon(np.array([7, big]), 0, 10) == 27


def scripted_ranks(cluster, ranks, *arrays, data=None, **kw):
    engines, schedules = [], []
    for r in range(ranks):
        plane = None if data is None else data(r)
        engines.append(Engine(Router(cluster), GBPS, 1 if plane is None else plane.elem_bytes, plane, r, ranks))
        schedules.append(ScriptedSchedule(*arrays, **kw))
    return engines, schedules


def test_message_across_ranks_by_hand():
    # chip 0 (node 0) -> chip 4 (node 2), 1,000 B at t = 0, then chip 4 -> chip 1 when it has arrived
    #   msg 0: NIC 0 up: start 0, end 1,000,000, head at NIC 2 down 5,000, tail 1,005,000
    #          NIC 2 down: start 5,000, end max(1,005,000, 1,005,000), delivered 1,010,000
    #   msg 1: sent 1,010,000; NIC 2 up end 2,010,000, head 1,015,000; NIC 0 down end 2,015,000
    #          delivered 2,020,000
    cluster = pairs(3)
    arrays = ([0, 4], [4, 1], [1_000, 1_000])
    single = ScriptedSchedule(*arrays, after=[-1, 0])
    engine = Engine(Router(cluster), GBPS, 1)
    engine.run(single)
    assert single.delivered_ps.tolist() == [1_010_000, 2_020_000]
    assert (engine.events, engine.link_events) == (6, 4)

    engines, schedules = scripted_ranks(cluster, 3, *arrays, after=[-1, 0])
    windows = distributed.run_in_process(engines, schedules, distributed.lookahead_ps(cluster))
    # t0 = 0 (rank 0: NIC 0 up), 5,000 (rank 2: NIC 2 down), 1,010,000 (delivery at rank 2 and its
    # copy at rank 0; rank 2 sends msg 1), 1,015,000 (rank 0: NIC 0 down), 2,020,000 (delivery)
    assert windows == 5
    assert schedules[2].delivered_ps[0] == 1_010_000 and schedules[0].delivered_ps[1] == 2_020_000
    # the sender's rank saw each delivery too (sender_reacts), at the same time
    assert schedules[0].delivered_ps[0] == 1_010_000 and schedules[2].delivered_ps[1] == 2_020_000
    assert [e.events for e in engines] == [3, 0, 3] and [e.link_events for e in engines] == [2, 0, 2]
    assert [e.exported for e in engines] == [2, 0, 2] and [e.imported for e in engines] == [2, 0, 2]
    assert max(e.makespan_ps for e in engines) == 2_020_000


def test_outbox_records_go_to_the_owner_of_the_next_link_only():
    cluster = pairs(3)
    engines, schedules = scripted_ranks(cluster, 3, [0], [4], [1_000])
    engines[0]._window_begin(schedules[0])
    engines[0]._window_run(schedules[0], 10_000)
    out, counts, earliest = engines[0]._take_outbox()
    assert counts[0] == counts[1] == 0 and counts[2] == out.shape[0] > 0 and counts[2] % 8 == 0
    assert earliest == 5_000 and engines[0].outbox_nbytes == 0  # head at NIC 2's downlink
    engines[1]._window_begin(schedules[1])
    with pytest.raises(ValueError, match="not for this rank"):
        engines[1]._give_inbox(out)
    engines[2]._window_begin(schedules[2])
    engines[2]._give_inbox(out)
    assert engines[2]._next_event() == 5_000


def test_payload_crosses_ranks_element_by_element():
    # int32 elements (4 B): the same 1,000-byte messages as above, 250 elements from offset 10
    cluster = pairs(3)
    count = 300

    def plane(rank):
        data = DataPlane(2, count, "int32")  # one node per rank
        data.buffers[:] = (1_000 * (2 * rank + np.arange(2))[:, None] + np.arange(count)).astype(np.int32)
        return data

    engines, schedules = scripted_ranks(cluster, 3, [0, 4], [4, 1], [250, 250], after=[-1, 0], offset=[10, 10],
                                        op=[COPY, REDUCE], data=plane)
    before = [plane(r).buffers for r in range(3)]
    distributed.run_in_process(engines, schedules, distributed.lookahead_ps(cluster))
    chip0, chip1, chip4 = before[0][0], before[0][1], before[2][0]
    expected4 = chip4.copy()
    expected4[10:260] = chip0[10:260]  # msg 0 copies chip 0's slice
    expected1 = chip1.copy()
    expected1[10:260] += expected4[10:260]  # msg 1 adds chip 4's updated slice into chip 1
    assert np.array_equal(engines[2].data.buffers[0], expected4)
    assert np.array_equal(engines[0].data.buffers[1], expected1)
    assert np.array_equal(engines[0].data.buffers[0], chip0) and np.array_equal(engines[1].data.buffers, before[1])
    assert all(e.data.in_flight == 0 for e in engines)
    assert max(e.makespan_ps for e in engines) == 2_020_000


def test_other_ranks_chips_neither_send_nor_reduce():
    cluster = pairs(2)
    engine = Engine(Router(cluster), GBPS, 1, None, 1, 2)  # chips 2, 3
    s = ScriptedSchedule([0, 2], [1, 3], [1_000, 1_000])
    engine.run(s)
    assert s.delivered_ps.tolist() == [-1, 1_001_000]
    assert engine.reduce_py(0, 5, 100) == 5 and engine.reduce_free_ps_array()[0] == 0
    assert engine.reduce_py(3, 5, 100) == 5 + 100_000


# --- engine conveniences: makespan with the last reduction, wake-ups --------------------------


def ring4():
    level = Level("ring", 4, Fabric.ring, LinkSpec(GBPS, 1_000))
    return Cluster(Topology("r", ChipSpec(GBPS, 0), (level,), ScaleOut(1, LinkSpec(GBPS, 0))), 1)


def test_makespan_includes_a_final_reduction():
    engine = Engine(Router(ring4()), GBPS, 1)
    s = ScriptedSchedule([0], [1], [1_000], reduce_nbytes=[3_000])
    # delivered at 1,000 + 1,000,000; reduced 3,000 B at 1 GB/s until 4,001,000
    assert engine.run(s) == 1_001_000 and s.ready_ps[0] == 4_001_000
    assert engine.makespan_ps == engine.reduce_end_ps == 4_001_000


def test_wake_is_a_zero_cost_event():
    engine = Engine(Router(ring4()), GBPS, 1)
    s = ScriptedSchedule([2, 2], [2, 3], [0, 1_000], send_ps=[7_000, 0], after=[-1, 0], op=[WAKE, COPY])
    engine.run(s)
    # the wake-up fires at 7,000 with no link; its dependent leaves chip 2 then
    assert s.delivered_ps.tolist() == [7_000, 7_000 + 1_001_000]
    assert (engine.events, engine.link_events) == (3, 1)
    with pytest.raises(ValueError):
        ScriptedSchedule([2], [3], [0], op=[WAKE])


@pytest.mark.parametrize("sender, first", [(1, "message"), (3, "wake")])
def test_wake_is_ordered_by_time_chip_and_sequence(sender, first):
    # A: sender -> chip 2 delivered at 1,001,000; W: chip 2 wakes at 1,001,000.  Each triggers a
    # 1,000 B send 2 -> 3 at 1,001,000; the one triggered first leaves first (1,001,000..2,001,000),
    # the other waits for the link (2,001,000..3,001,000).  Equal times: the lower chip goes first.
    engine = Engine(Router(ring4()), GBPS, 1)
    s = ScriptedSchedule([sender, 2, 2, 2], [2, 2, 3, 3], [1_000, 0, 1_000, 1_000],
                         send_ps=[0, 1_001_000, 0, 0], after=[-1, -1, 0, 1], op=[COPY, WAKE, COPY, COPY])
    engine.run(s)
    after_message, after_wake = s.delivered_ps[2], s.delivered_ps[3]
    assert s.delivered_ps[0] == s.delivered_ps[1] == 1_001_000
    if first == "message":
        assert (after_message, after_wake) == (2_002_000, 3_002_000)
    else:
        assert (after_message, after_wake) == (3_002_000, 2_002_000)


# --- identical results for any R (in process) ------------------------------------------------


def single_run(cluster, algorithm, collective, count, params, verify):
    data = None
    if verify:
        data = DataPlane(cluster.chips, count, "float32")
        init_buffers(data.buffers, collective, count)
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, 4, data)
    engine.run(algorithm_module(algorithm).make_schedule(cluster, collective, count, 4, params))
    wrong = count_wrong(data.buffers, collective, count) if verify else None
    return (engine.makespan_ps, engine.events, engine.link_events, wrong), (data.buffers if verify else None)


def split_run(cluster, algorithm, collective, count, params, verify, ranks, sender_reacts=True):
    router, per_node = Router(cluster), cluster.topology.chips_per_node
    engines, schedules, firsts = [], [], []
    for r in range(ranks):
        first = rank_nodes(cluster.nodes, ranks, r)[0] * per_node
        last = rank_nodes(cluster.nodes, ranks, r)[1] * per_node
        data = None
        if verify:
            data = DataPlane(last - first, count, "float32")
            init_buffers(data.buffers, collective, count, first_chip=first, chips=cluster.chips)
        engines.append(Engine(router, cluster.topology.chip.reduce_Bps, 4, data, r, ranks))
        schedule = algorithm_module(algorithm).make_schedule(cluster, collective, count, 4, params)
        schedule.sender_reacts = sender_reacts
        schedules.append(schedule)
        firsts.append(first)
    distributed.run_in_process(engines, schedules, distributed.lookahead_ps(cluster))
    wrong = None
    buffers = None
    if verify:
        wrong = sum(count_wrong(e.data.buffers, collective, count, first_chip=f, chips=cluster.chips)
                    for e, f in zip(engines, firsts))
        buffers = np.concatenate([e.data.buffers for e in engines])
    summary = (max(e.makespan_ps for e in engines), sum(e.events for e in engines),
               sum(e.link_events for e in engines), wrong)
    return summary, buffers


CASES = [(name, alg, coll, verify) for name in CLUSTERS for alg in ("ring", "tree", "hierarchical")
         for coll in Collective for verify in (False, True)]


@pytest.mark.parametrize("name, algorithm, collective, verify", CASES)
def test_every_rank_count_gives_the_single_process_run(name, algorithm, collective, verify):
    cluster = CLUSTERS[name]
    params = AlgorithmParams(chunks=6, in_flight=2)
    count = effective_count(collective, 3_001, cluster.chips)
    reference, buffers = single_run(cluster, algorithm, collective, count, params, verify)
    assert reference[1] > 0 and (not verify or reference[3] == 0)
    for ranks in range(2, cluster.nodes + 1):
        summary, split_buffers = split_run(cluster, algorithm, collective, count, params, verify, ranks)
        assert summary == reference, ranks
        if verify:  # every element of every chip, not just the count of wrong ones
            assert np.array_equal(split_buffers, buffers), ranks


def test_the_tree_needs_deliveries_seen_at_the_sender():
    # A window of 2 chunks in flight: a chip sends chunk j only once its chunk j - 2 has been
    # delivered, which happens on the parent's rank.  Without the copy of the delivery at the
    # sender's rank, senders would never learn it and the collective would end early.
    cluster = CLUSTERS["torus2x2x4"]
    params = AlgorithmParams(chunks=16, in_flight=2)
    count = 30_000
    reference, _ = single_run(cluster, "tree", Collective.all_reduce, count, params, False)
    assert split_run(cluster, "tree", Collective.all_reduce, count, params, False, 4)[0] == reference
    assert split_run(cluster, "tree", Collective.all_reduce, count, params, False, 4, sender_reacts=False)[0] != reference


# --- through MPI (subprocesses) -------------------------------------------------------------


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k != "HYDRA_FULL_ERROR" and not k.startswith(("PMI_", "OMPI_", "MPI_LOCAL"))}
    env.update(extra)
    return env


def mpiexec(ranks, *argv, cwd=None, env=None, timeout=TIMEOUT_S):
    cmd = [str(VENV_BIN / "mpiexec"), "-n", str(ranks), *[str(a) for a in argv]] if ranks else [str(a) for a in argv]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env(**(env or {})))


@pytest.fixture(scope="module")
def single_cases():
    proc = mpiexec(0, sys.executable, "-m", "tests.mpi_cases", cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("ranks", [2, 3, 4, 5])
def test_mpiexec_gives_the_single_process_results(single_cases, ranks):
    proc = mpiexec(ranks, sys.executable, "-m", "tests.mpi_cases", cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = [case for case in single_cases if case[1] >= ranks]  # clusters with enough nodes
    assert len(expected) >= 18 and got == expected


def collsim_cli(ranks, tmp_path, name, *overrides, env=None):
    out = tmp_path / name
    out.mkdir()
    proc = mpiexec(ranks, VENV_BIN / "collsim", *overrides, "hydra.run.dir=run", cwd=out, env=env)
    return proc, out


TRN2_64 = ("topology=trn2", "cluster.nodes=64", "algorithm=hierarchical", "fidelity=event", "sizes.max=16KiB",
           "sizes.factor=4")
SMALL_DATA = ("topology=trn2", "cluster.nodes=4", "collective=reduce_scatter", "algorithm=auto", "fidelity=data",
              "sizes.max=64KiB", "sizes.factor=8")


@pytest.mark.parametrize("overrides, ranks", [(TRN2_64, 2), (SMALL_DATA, 3)])
def test_collsim_under_mpiexec_prints_and_writes_what_one_process_does(tmp_path, overrides, ranks):
    single, single_dir = collsim_cli(0, tmp_path, "single", *overrides)
    assert single.returncode == 0, single.stderr
    split, split_dir = collsim_cli(ranks, tmp_path, "split", *overrides)
    assert split.returncode == 0, split.stderr
    assert split.stdout == single.stdout and split.stderr == ""
    one = pd.read_csv(single_dir / "run" / "results.csv")
    many = pd.read_csv(split_dir / "run" / "results.csv")
    assert one.drop(columns=["wall_s", "ranks"]).equals(many.drop(columns=["wall_s", "ranks"]))
    assert set(one["ranks"]) == {1} and set(many["ranks"]) == {ranks}
    # rank 0 alone wrote files: the same ones as the single process, nothing next to them
    files = sorted(p.relative_to(split_dir).as_posix() for p in split_dir.rglob("*"))
    assert files == sorted(p.relative_to(single_dir).as_posix() for p in single_dir.rglob("*"))


def test_more_ranks_than_nodes_is_one_line_and_exit_code_2(tmp_path):
    proc, out = collsim_cli(3, tmp_path, "x", "topology=trn2", "cluster.nodes=2", "fidelity=event", "sizes.max=1KiB")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "collsim: error: cluster.nodes: 2 nodes cannot be split over 3 MPI ranks (each rank simulates whole "
        "nodes); use at most 2 ranks or more nodes"]
    assert proc.stdout == ""


def test_a_failing_rank_aborts_the_job_with_one_message(tmp_path):
    proc, out = collsim_cli(2, tmp_path, "x", "topology=trn2", "cluster.nodes=2", "fidelity=event",
                            "sizes.max=1KiB", env={distributed.FAIL_RANK_ENV: "1"})
    assert proc.returncode != 0
    line = f"collsim: error: MPI rank 1: RuntimeError: {distributed.FAIL_RANK_ENV}=1: failure injected on MPI rank 1"
    assert proc.stderr.count(line) == 1 and proc.stderr.count("Traceback") == 1, proc.stderr
    assert not (out / "run" / "results.csv").exists()


SWEEP_TOPOLOGY = """\
name: pairs
chip: {reduce_bandwidth: 500GB/s, launch_overhead: 1us}
levels:
  - {name: pair, size: 2, fabric: ring, link: {bandwidth: 64GB/s, latency: 700ns}}
scale_out:
  nics_per_node: 1
  nic: {bandwidth: 200Gbps, latency: 8us}
"""


def test_a_sweep_job_on_two_ranks_simulates_on_its_sub_communicator(tmp_path):
    (tmp_path / "conf" / "topology").mkdir(parents=True)
    (tmp_path / "conf" / "topology" / "pairs.yaml").write_text(SWEEP_TOPOLOGY)
    sweep = ("-m", "--config-dir", tmp_path / "conf", "topology=pairs", "cluster.nodes=3", "algorithm=tree,hierarchical",
             "fidelity=data", "sizes.max=4KiB", "sizes.factor=4")
    single = mpiexec(0, VENV_BIN / "collsim", *sweep, f"hydra.sweep.dir={tmp_path / 'one'}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    launcher = ("hydra/launcher=mpi", "hydra.launcher.ranks_per_job=2")
    split = mpiexec(2, VENV_BIN / "collsim", *sweep, *launcher, f"hydra.sweep.dir={tmp_path / 'two'}", cwd=tmp_path)
    assert split.returncode == 0, split.stderr
    one = pd.read_csv(tmp_path / "one" / "combined.csv")
    two = pd.read_csv(tmp_path / "two" / "combined.csv")
    assert len(one) == 4 and set(two["ranks"]) == {2} and set(two["wrong"]) == {0}
    assert one.drop(columns=["wall_s", "ranks"]).equals(two.drop(columns=["wall_s", "ranks"]))
    # the job really ran split: rank 1 of the job's communicator takes part in the windows
    failing = mpiexec(2, VENV_BIN / "collsim", *sweep, *launcher, f"hydra.sweep.dir={tmp_path / 'fail'}",
                      cwd=tmp_path, env={distributed.FAIL_RANK_ENV: "1"})
    assert failing.returncode != 0 and "failure injected on MPI rank 1" in failing.stderr
