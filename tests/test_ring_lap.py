"""The lap algebra of collectives/ring_lap.py against brute force on explicit hop sequences.

Each summary must give, for any bracketing of the concatenations, what a direct
search over the circular sequence gives.  Weights are small random integers so
that ties, negative runs and empty windows all occur.
"""
from __future__ import annotations

import numpy as np

from collectives.ring_lap import (NEG, HopClass, LapShape, best_stay_window, best_window_of, fold, lap_sums, stay_cat,
                                  stay_leaf, sums_cat, sums_leaf)


def _fold_randomly(rng, leaves, cat):
    """Concatenate adjacent summaries in a random order (the algebra is associative)."""
    items = list(leaves)
    while len(items) > 1:
        i = int(rng.integers(len(items) - 1))
        items[i:i + 2] = [cat(items[i], items[i + 1])]
    return items[0]


def _windows(n, max_length):
    """(start, length) of every circular window of 1..max_length hops."""
    return [(start, m) for start in range(n) for m in range(1, max_length + 1)]


def test_stay_windows_match_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(1500):
        n = int(rng.integers(1, 10))
        wl, wr = rng.integers(-9, 10, n).tolist(), rng.integers(-9, 10, n).tolist()
        split = [int(v) if rng.random() < 0.4 else None for v in rng.integers(-9, 10, n)]
        summary = _fold_randomly(rng, [stay_leaf(wl[i], wr[i], split[i]) for i in range(n)], stay_cat)
        for left_out in (1, 2):
            expected = NEG
            for start, m in _windows(n, n - left_out):
                hops = [(start + j) % n for j in range(m)]
                for j, q in enumerate(hops):
                    if split[q] is not None:
                        value = sum(wl[i] for i in hops[:j]) + split[q] + sum(wr[i] for i in hops[j + 1:])
                        expected = max(expected, value)
            got = max(summary[8][left_out], summary[10][left_out], summary[11][left_out])
            assert got == expected or (expected == NEG and got <= NEG // 2), (wl, wr, split, left_out)


def test_sums_match_brute_force():
    rng = np.random.default_rng(8)
    for _ in range(500):
        n = int(rng.integers(2, 10))
        w = rng.integers(1, 50, n).tolist()
        total, first, last, min_hop, min_pair, max_hop = _fold_randomly(rng, [sums_leaf(x) for x in w], sums_cat)
        assert (total, first, last, min_hop, max_hop) == (sum(w), w[0], w[-1], min(w), max(w))
        assert min(min_pair, last + first) == min(w[i] + w[(i + 1) % n] for i in range(n))


def _shape():
    """Levels [3, 2] and 3 nodes: a 6-hop node pattern a a b a a, then NIC, ..., closing."""
    a, b = HopClass("a", 10, 1, 0, 10, 12), HopClass("b", 20, 1, 0, 20, 3)
    nic, closing = HopClass("nic", 30, 1, 0, 30, 2), HopClass("closing", 40, 1, 0, 40, 1)
    return LapShape(((3, a), (2, b)), nic, closing, 3)


def test_fold_follows_the_gray_code_order():
    shape = _shape()
    seq = fold(shape, lambda cls: [cls.name], lambda x, y: y if x is None else x if y is None else x + y)
    node = ["a", "a", "b", "a", "a"]
    assert seq == node + ["nic"] + node + ["nic"] + node + ["closing"]
    assert shape.hops == len(seq) == 18
    assert [cls.count for cls in shape.classes] == [seq.count(name) for name in ("a", "b", "nic", "closing")]


def test_lap_sums_and_best_runs():
    shape = _shape()
    sums = lap_sums(shape, lambda cls: cls.latency_ps)
    assert (sums.total, sums.min_hop, sums.min_pair, sums.max_hop) == (12 * 10 + 3 * 20 + 2 * 30 + 40, 10, 20, 40)
    n = 18
    assert best_window_of(sums, n, 2 * (n - 1)) == 2 * sums.total - 20    # all but the cheapest two adjacent
    assert best_window_of(sums, n, n - 1) == sums.total - 10
    assert best_window_of(sums, n, n) == sums.total
    assert best_window_of(sums, n, 1) == 40


def test_best_stay_window_on_a_lap():
    # the lap is P N P N P C (P = a a b a a); plain hops: a and b -1, NIC +10; the split
    # on the closing hop C is worth 0.  Best window: N P C P N = 10 - 5 + 0 - 5 + 10,
    # 13 hops; the whole lap but one hop would only reach 20 - 15 + 0 + 1 = 6.
    shape = _shape()
    plain = {"a": -1, "b": -1, "nic": 10, "closing": -1}
    leaf = lambda cls: stay_leaf(plain[cls.name], plain[cls.name], 0 if cls.name == "closing" else None)
    assert best_stay_window(shape, leaf) == best_stay_window(shape, leaf, left_out=2) == 10
    # hops before the split may weigh differently (reduce stages): a NIC before it weighs 15,
    # so the window takes both NICs on the left, N P N P C = 15 - 5 + 15 - 5 + 0 (13 hops);
    # adding P N on the right (+5) would make 19 hops, more than n - 1 = 17
    leaf = lambda cls: stay_leaf(plain[cls.name] + (5 if cls.name == "nic" else 0), plain[cls.name],
                                 0 if cls.name == "closing" else None)
    assert best_stay_window(shape, leaf) == 20
    # no split hop at all
    assert best_stay_window(shape, lambda cls: stay_leaf(1, 1, None)) == NEG
