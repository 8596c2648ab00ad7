"""hierarchical, algorithm.top=tree: the walk over the real double binary trees across nodes.

Units as in tests/test_hierarchical.py: NICs at 1e9 B/s (ser(b) = 1000 b ps) with 5000 ps latency
(2500 up + 2500 down), chips reduce at 1e12 B/s (red(b) = b ps).  Nodes hold one chip unless a test
says otherwise, so the all-reduce is the tree phase alone.  With 64 elements per chunk and channel
each tree carries a half of 32 float32: s = ser(128 B) = 128000, r = red(128 B) = 128, L = 5000.
"""
from __future__ import annotations

import numpy as np
import pytest

from collectives.base import Collective
from collectives.hierarchical import TreeHop, analytic_time_ps, double_binary_tree, tree_layout, tree_phase_ps
from tests.test_hierarchical import make_cluster, params, run_event

AR = Collective.all_reduce
L, S, R = 5000, 128000, 128


def tree(**kw):
    return params(top="tree", **kw)


@pytest.mark.parametrize("n", list(range(2, 40)) + [100, 257, 1000])
def test_tree_layout_groups_levels(n):
    lay = tree_layout(n)
    parent, children, height = double_binary_tree(n)
    for t in range(2):
        # by depth: every node once, each level the children of the one before
        down = lay.down_levels(t)
        assert sorted(np.concatenate(down).tolist()) == list(range(n))
        assert down[0].tolist() == [lay.root[t]]
        for above, level in zip(down, down[1:]):
            assert set(parent[t, level].tolist()) <= set(above.tolist())
        assert len(down) - 1 <= height
        # by height: every inner node once, after all its inner children; children as in the table
        seen = set()
        for nodes, first, second, par0, par1 in lay.ups[t]:
            assert first.tolist() == children[t, nodes, 0].tolist()
            assert second.tolist() == children[t, nodes, 1].tolist()
            assert par0.tolist() == parent[0, nodes].tolist() and par1.tolist() == parent[1, nodes].tolist()
            for x in nodes.tolist():
                for c in children[t, x]:
                    assert c < 0 or lay.leaf[t, c] or c in seen
            seen |= set(nodes.tolist())
        assert seen == set(np.flatnonzero(lay.nch[t] > 0).tolist())


def test_tree_of_three_nodes_by_hand():
    # tree 0: node 1 -> {0, 2}; tree 1 (labels shifted): node 0 -> {2, 1}; node 2 is a leaf of both
    parent, _, _ = double_binary_tree(3)
    assert parent.tolist() == [[1, -1, 1], [-1, 0, 0]]
    # t = 0: nodes 0 and 1 send their leaf half; node 2 sends tree 0's then tree 1's on its uplink (s later)
    # tree 0 at node 1: 0 and 2 both sent at 0, node 0 first: arrivals L + s, L + 2s -> ready L + 2s + r
    # tree 1 at node 0: 1 sent at 0, 2 at s: arrivals L + s, L + 2s -> ready L + 2s + r
    # down: each root's first child gets it at 2L + 3s + r, the second at 2L + 4s + r; node 2 is tree 1's
    # first child and tree 0's second: the two broadcasts reach its downlink exactly s apart (no wait)
    expected = 2 * L + 4 * S + R
    assert expected == 522128
    three = make_cluster([], nodes=3)
    assert analytic_time_ps(three, AR, 64, 4, tree()) == expected
    assert run_event(three, AR, 64, tree())[0] == expected
    # the old closed form, D (alpha + f s + f r) + D (alpha + f s) with D = 1 and f = 2, charged 2L + 4s + 2r


def test_tree_of_four_nodes_by_hand():
    # tree 0: node 3 -> node 1 -> {0, 2}; tree 1 mirrors it: node 0 -> node 2 -> {3, 1}
    four = make_cluster([], nodes=4)
    # up: node 1 gets 0's and 2's halves at L + s, L + 2s (its downlink serves one at a time), ready
    # L + 2s + r; root 3 gets it at 2L + 3s + r, ready 2L + 3s + 2r.  down: node 1 at 3L + 4s + 2r,
    # then node 0 at 4L + 5s + 2r and node 2 at 4L + 6s + 2r (node 1's uplink sends one after the other)
    fill = 4 * L + 6 * S + 2 * R
    assert analytic_time_ps(four, AR, 64, 4, tree()) == fill == 788256
    assert run_event(four, AR, 64, tree())[0] == fill
    # (the old form charged two children per level both ways: 4L + 8s + 4r = 1044512)
    #
    # a second chunk: a node takes it when both trees are done there: nodes 0, 3 at 4L + 5s + 2r (first
    # children in the other tree), nodes 1, 2 at the fill.  Tree 0, chunk 1 (tree 1 mirrors it):
    # * leaf 0 sends at 4L + 5s + 2r; node 1's downlink still serves the first chunk's tree 1 broadcast
    #   (head 3.5L + 5s + 2r, ahead of it) until 3.5L + 6s + 2r: node 0's half arrives at 4L + 7s + 2r;
    # * leaf 2 sends when it enters, at 4L + 6s + 2r (its uplink forwarded tree 1's broadcast until
    #   3L + 6s + 2r), and waits behind node 0's half: arrives at 4L + 8s + 2r;
    # * node 1 (entered at 4L + 6s + 2r) is ready at 4L + 8s + 3r, root 3 at 5L + 9s + 4r;
    # * down: node 1 at 6L + 10s + 4r, node 2 (second child) at 7L + 12s + 4r.
    two_chunks = 7 * L + 12 * S + 4 * R
    assert two_chunks - fill == 3 * L + 6 * S + 2 * R  # the period: less than the fill
    for window in (1, 2):  # one stage: the window never binds
        assert analytic_time_ps(four, AR, 128, 4, tree(chunks=2, in_flight=window)) == two_chunks
        assert run_event(four, AR, 128, tree(chunks=2, in_flight=window))[0] == two_chunks


def test_tree_of_eight_nodes_by_hand():
    # tree 0: 7 -> 3 -> {1, 5}, 1 -> {0, 2}, 5 -> {4, 6}: the root has one child
    eight = make_cluster([], nodes=8)
    # up: nodes 1, 5 ready L + 2s + r; node 3 gets both at 2L + 3s + r, 2L + 4s + r -> 2L + 4s + 2r;
    # root 7 (one child) 3L + 5s + 3r.  down: 3 at 4L + 6s + 3r; 5 (second) 5L + 8s + 3r; 6 (second
    # of 5) 6L + 10s + 3r.  Tree 1 mirrors tree 0 (same times).
    fill = 6 * L + 10 * S + 3 * R
    assert analytic_time_ps(eight, AR, 64, 4, tree()) == fill == 1310384
    assert run_event(eight, AR, 64, tree())[0] == fill
    # the old form, D = 3 levels of two children both ways: 6L + 12s + 6r; it was the same for
    # N = 8..15, whose roots have two children (N = 15: one more s at the root and on the way down)


# N where the two trees' broadcasts never meet on a node's downlink: event == analytic; from the
# second chunk on every chunk adds the same period (not for N = 13: there the third one adds less)
EXACT_N = [2, 3, 4, 5, 7, 9, 13, 16, 17, 31, 64, 127, 256, 4096]


@pytest.mark.parametrize("n,chunks", [(n, k) for n in EXACT_N for k in (1, 2, 5) if (n, k) != (13, 5)])
def test_event_equals_analytic_on_nodes_of_one_chip(n, chunks):
    cluster = make_cluster([], nodes=n)
    prm = tree(chunks=chunks, in_flight=2)
    count = 64 * chunks
    assert run_event(cluster, AR, count, prm)[0] == analytic_time_ps(cluster, AR, count, 4, prm)


@pytest.mark.parametrize("n", [2, 5, 13, 64])
@pytest.mark.parametrize("levels", [[("ring", 4)], [("switch", 3), ("direct", 2)]])
def test_event_equals_analytic_one_chunk_with_scale_up(levels, n):
    cluster = make_cluster(levels, nodes=n)
    count = 64 * cluster.chips
    assert run_event(cluster, AR, count, tree())[0] == analytic_time_ps(cluster, AR, count, 4, tree())


def test_walk_leaves_out_only_waits():
    # where broadcasts of the two trees (or of two chunks) meet, the event time is higher, never lower,
    # and by at most the documented 5%
    for n in range(2, 70):
        cluster = make_cluster([], nodes=n)
        for chunks in (1, 2):
            prm = tree(chunks=chunks, in_flight=2)
            event = run_event(cluster, AR, 64 * chunks, prm)[0]
            analytic = analytic_time_ps(cluster, AR, 64 * chunks, 4, prm)
            assert analytic <= event <= 1.05 * analytic, (n, chunks)


def test_two_streams_by_hand():
    # two channels: a piece of 64 elements per channel, halves of 32 (s = 128000); each further stream
    # adds the lag g + max(0, s - 2L - r), g = the busiest sibling group
    four = make_cluster([], nodes=4)
    prm = tree(channels=2)
    # event, tree 0 (tree 1 mirrors it): the leaves send both streams' halves back to back; node 1's
    # downlink takes stream 0's two halves, then stream 1's (L/2 .. L/2 + 4s).  Stream 0's broadcast
    # from root 3 (head 2.5L + 3s + 2r) waits behind them: at node 1 at L + 5s.  Node 1's uplink
    # carried its two tree 1 halves, then stream 0's and stream 1's up halves (the last until
    # L + 5s + r); then it forwards stream 0's broadcast to 0 and 2 (L + 5s + r .. L + 7s + r), then
    # stream 1's, which reached it at 3L + 6s + 2r: node 2 gets it at 2L + 9s + r
    event = 2 * L + 9 * S + R
    assert run_event(four, AR, 128, prm)[0] == event == 1162128
    # analytic: one stream 4L + 6s + 2r, plus g = 2s and s - 2L - r: the same here
    assert analytic_time_ps(four, AR, 128, 4, prm) == (4 * L + 6 * S + 2 * R) + 2 * S + (S - 2 * L - R) == event
    # two nodes: g = s (one child); the analytic 2L + 2s + r + s + (s - 2L - r) = 4s, while in the event
    # node 1's uplink carries its two leaf halves and then its two broadcasts back to back: 4s + L
    two = make_cluster([], nodes=2)
    assert analytic_time_ps(two, AR, 128, 4, prm) == 4 * S
    assert run_event(two, AR, 128, prm)[0] == 4 * S + L


def test_several_streams_lag_behind_each_other():
    hop = TreeHop(L, L // 2, (S, S), (R, R))
    fill, period = tree_phase_ps(4, hop)
    assert (fill, period) == (4 * L + 6 * S + 2 * R, 3 * L + 6 * S + 2 * R)
    lag = 2 * S + (S - 2 * L - R)
    assert tree_phase_ps(4, hop, streams=3) == (fill + 2 * lag, period + 2 * lag)
    # N = 2: both nodes finish a chunk together, so the next one repeats it: period = fill; g = s
    fill2 = 2 * L + 2 * S + R
    assert tree_phase_ps(2, hop) == (fill2, fill2)
    assert tree_phase_ps(2, hop, streams=2) == (fill2 + S + (S - 2 * L - R),) * 2
    # latency above the message time: no wait at the root's child, the lag is the sibling group
    slow_links = TreeHop(200 * S, 100 * S, (S, S), (R, R))
    f, p = tree_phase_ps(4, slow_links)
    assert tree_phase_ps(4, slow_links, streams=2) == (f + 2 * S, p + 2 * S)
    # reductions heavier than transfers: three channels on one reduction unit, r' = 10 s per half;
    # the busiest unit reduces two halves per stream (an inner node of one tree)
    slow_unit = TreeHop(L, L // 2, (S, S), (10 * S, 10 * S))
    f, p = tree_phase_ps(4, slow_unit)
    assert tree_phase_ps(4, slow_unit, streams=3, reducers=3) == (f + 2 * 20 * S, p + 2 * 20 * S)
