"""hierarchical with algorithm.top=auto: the faster of ring and tree across nodes, the same in both fidelities."""
from dataclasses import replace

import pytest

from collectives.base import AlgorithmParams, Collective
from collectives.event import simulate
from collectives.hierarchical import analytic_time_ps, resolve_top
from topologies.presets import preset_cluster

AR = Collective.all_reduce
AUTO = AlgorithmParams(top="auto")


def test_auto_is_the_minimum_of_ring_and_tree():
    cluster = preset_cluster("trn2", 64)
    for count in (256, 2**18, 2**26):
        ring = analytic_time_ps(cluster, AR, count, 4, replace(AUTO, top="ring"))
        tree = analytic_time_ps(cluster, AR, count, 4, replace(AUTO, top="tree"))
        assert analytic_time_ps(cluster, AR, count, 4, AUTO) == min(ring, tree)


def test_tree_across_many_nodes_ring_across_few():
    # 1,024 nodes: a ring pays 2 x 1,023 EFA latencies per chunk, a tree 2 x 10.
    assert resolve_top(preset_cluster("trn2", 1024), AR, 2**18, 4, AUTO).top == "tree"
    # 2 nodes, 1 GiB: a tree over 2 nodes pushes the shard through one NIC each way, like the ring,
    # and the ring's reduce-scatter / all-gather stages pipeline; no latency to save.
    two = preset_cluster("trn2", 2)
    ring = analytic_time_ps(two, AR, 2**28, 4, replace(AUTO, top="ring"))
    tree = analytic_time_ps(two, AR, 2**28, 4, replace(AUTO, top="tree"))
    assert resolve_top(two, AR, 2**28, 4, AUTO).top == ("tree" if tree < ring else "ring")


@pytest.mark.parametrize("collective", [Collective.reduce_scatter, Collective.all_gather])
def test_rs_and_ag_always_cross_nodes_on_a_ring(collective):
    assert resolve_top(preset_cluster("trn2", 1024), collective, 2**18, 4, AUTO).top == "ring"


def test_event_runs_the_choice_of_the_closed_form():
    cluster = preset_cluster("trn2", 8)
    count = 2**12
    chosen = resolve_top(cluster, AR, count, 4, AUTO)
    auto = simulate(cluster, AR, "hierarchical", count, "float32", 4, AUTO, verify=True)
    fixed = simulate(cluster, AR, "hierarchical", count, "float32", 4, chosen, verify=True)
    assert (auto.time_ps, auto.events, auto.wrong) == (fixed.time_ps, fixed.events, 0)


def test_bad_top_is_refused():
    from collsim.errors import ConfigError

    with pytest.raises(ConfigError, match="algorithm.top: must be ring, tree or auto"):
        AlgorithmParams(top="mesh").validate()
