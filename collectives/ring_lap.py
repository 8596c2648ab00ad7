"""Longest paths of a self-timed ring whose hops differ (collectives/ring.py, "heterogeneous rings").

A ring's lap is a sequence of n hops drawn from a few *hop classes*: one per
scale-up level, the NIC hop between nodes, the closing hop.  Its order is
fixed by the ring order (a reflected Gray code):

    node pattern  G_0 = (level-0 hop)^(size_0 - 1)
                  G_i = G_{i-1} (level-i hop  G_{i-1})^(size_i - 1)
    lap           G (NIC hop  G)^(nodes - 1)  closing hop

(levels of size 1 are left out).  The cost model needs a few statistics of
per-hop weights over this circular sequence: the sum, the cheapest hop and
pair of adjacent hops, the dearest hop, and the best window (of at most n - 1
or n - 2 hops) around a "stay" hop whose hops weigh differently before and
after it.  Each statistic is a *segment summary* with an associative
concatenation, so a lap of a million hops folds in O(levels + log nodes)
concatenations: ``X^k`` is computed by doubling.  tests/test_ring_lap.py
checks every summary against brute force over explicit sequences.

Summaries are plain tuples of Python ints (exact picoseconds).  ``NEG`` (and
``INF`` for minima) mark "no such window"; a result within half of NEG means
none exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

INF = 1 << 62
NEG = -INF


@dataclass(frozen=True)
class HopClass:
    """One kind of hop of the ring: a path of links between ring neighbours.

    latency_ps       sum of the latencies of the path's links
    rate_Bps         slowest link of the path (cut-through: the path serializes at that rate)
    shared_rate_Bps  slowest link of the class that also carries hops of the other
                     direction (both directions' pieces queue on it every step); 0: none
    shared_latency_ps  latency from that link to the end of the path (the head of a
                     piece reaches it before the busy period it ends; the rest remains)
    count            hops of this class in one lap
    """

    name: str
    latency_ps: int
    rate_Bps: int
    shared_rate_Bps: int
    shared_latency_ps: int
    count: int


@dataclass(frozen=True)
class LapShape:
    """The lap as hop classes in ring order (see the module docstring)."""

    levels: tuple[tuple[int, HopClass], ...]   # (size > 1, class), innermost first
    nic: Optional[HopClass]                     # None on one node
    closing: HopClass
    nodes: int

    @property
    def classes(self) -> tuple[HopClass, ...]:
        out = [cls for _, cls in self.levels]
        if self.nic is not None:
            out.append(self.nic)
        out.append(self.closing)
        return tuple(out)

    @property
    def hops(self) -> int:
        return sum(cls.count for cls in self.classes)


def _power(x, k: int, cat):
    """x concatenated k times (k >= 0; None is the empty segment)."""
    out = None
    while k:
        if k & 1:
            out = cat(out, x)
        x = cat(x, x)
        k >>= 1
    return out


def fold(shape: LapShape, leaf: Callable[[HopClass], tuple], cat) -> tuple:
    """The summary of one lap, hops weighted by ``leaf(class)``; O(levels + log sizes + log nodes)."""
    pattern = None
    for size, cls in shape.levels:
        pattern = cat(pattern, _power(cat(leaf(cls), pattern), size - 1, cat))
    lap = pattern
    if shape.nic is not None and shape.nodes > 1:
        lap = cat(lap, _power(cat(leaf(shape.nic), pattern), shape.nodes - 1, cat))
    return cat(lap, leaf(shape.closing))


# --- sums: total, first, last, smallest hop, smallest adjacent pair, largest hop ---------------


def sums_leaf(w: int) -> tuple:
    return (w, w, w, w, INF, w)


def sums_cat(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (a[0] + b[0], a[1], b[2], min(a[3], b[3]), min(a[4], b[4], a[2] + b[1]), max(a[5], b[5]))


@dataclass(frozen=True)
class LapSums:
    total: int
    min_hop: int
    min_pair: int    # smallest sum of two consecutive hops, around the circle
    max_hop: int


def lap_sums(shape: LapShape, weight: Callable[[HopClass], int]) -> LapSums:
    s = fold(shape, lambda cls: sums_leaf(weight(cls)), sums_cat)
    return LapSums(s[0], s[3], min(s[4], s[2] + s[1]), s[5])


def best_window_of(sums: LapSums, n: int, length: int) -> int:
    """Largest sum of ``length`` consecutive hops around the circle; length mod n in {0, 1, n-2, n-1}."""
    q, rem = divmod(length, n)
    if rem == 0:
        extra = 0
    elif rem == 1:
        extra = sums.max_hop
    elif rem == n - 1:
        extra = sums.total - sums.min_hop
    elif rem == n - 2:
        extra = sums.total - sums.min_pair
    else:  # not needed by the ring (its windows are 1, n - 1, n and 2(n - 1) hops)
        raise ValueError(f"window of {length} hops on a lap of {n}")
    return q * sums.total + extra


# --- stay windows: [left part] split hop [right part], leaving k >= 1 hops out --------------------
#
# Hops before the split weigh wl, hops after it wr, the split itself its own value.
# A summary is a tuple:
#   0 length (capped at 2)   1 sum wl   2 sum wr   3 best window spanning the whole segment
#   4 pre_r   best prefix of wr (may be empty)
#   5 suf_l   best suffix of wl (may be empty)
#   6 pre     best window starting at the segment's start
#   7 suf     best window ending at its end
#   8 best    best window anywhere
#   9 ps      best prefix of wr + disjoint suffix of wl
#  10 wrap_s  best window ending at the end + disjoint prefix of wr    (wrapped windows, split at the end)
#  11 wrap_p  best window starting at the start + disjoint suffix of wl (wrapped windows, split at the start)
# Fields 4..11 are lists indexed by k = 0, 1, 2: the best that leaves at least k hops
# of the segment out (k = 0 is not used for 9..11).  "Window" = a run holding the split.


def stay_leaf(wl: int, wr: int, split: Optional[int]) -> tuple:
    z = NEG if split is None else split
    return (1, wl, wr, z, [max(0, wr), 0, NEG], [max(0, wl), 0, NEG], [z, NEG, NEG], [z, NEG, NEG],
            [z, NEG, NEG], [NEG, 0, NEG], [NEG, NEG, NEG], [NEG, NEG, NEG])


def stay_cat(a, b):
    if a is None:
        return b
    if b is None:
        return a
    la, sla, sra, fa, pra, sfa, pa, sa, ba, psa, wsa, wpa = a
    lb, slb, srb, fb, prb, sfb, pb, sb, bb, psb, wsb, wpb = b
    # a run inside a alone leaves all of b out (lb hops, capped at 2), so of a it must
    # leave out only max(0, k - lb): these are the indices into a's lists for k = 1, 2
    a1, a2 = (0, 0) if lb == 2 else (0, 1)
    b1, b2 = (0, 0) if la == 2 else (0, 1)
    pre_r = [max(pra[0], sra + prb[0]), max(pra[a1], sra + prb[1]), max(pra[a2], sra + prb[2])]
    suf_l = [max(sfb[0], slb + sfa[0]), max(sfb[b1], slb + sfa[1]), max(sfb[b2], slb + sfa[2])]
    pre = [max(pa[0], fa + prb[0], sla + pb[0]), max(pa[a1], fa + prb[1], sla + pb[1]),
           max(pa[a2], fa + prb[2], sla + pb[2])]
    suf = [max(sb[0], sa[0] + srb, sfa[0] + fb), max(sb[b1], sa[1] + srb, sfa[1] + fb),
           max(sb[b2], sa[2] + srb, sfa[2] + fb)]
    # a window across the boundary leaves i hops of a and k - i of b out
    best = [max(ba[0], bb[0], sa[0] + prb[0], sfa[0] + pb[0]),
            max(ba[a1], bb[b1], sa[0] + prb[1], sa[1] + prb[0], sfa[0] + pb[1], sfa[1] + pb[0]),
            max(ba[a2], bb[b2], sa[0] + prb[2], sa[1] + prb[1], sa[2] + prb[0],
                sfa[0] + pb[2], sfa[1] + pb[1], sfa[2] + pb[0])]
    ps = [NEG,
          max(psa[1] + slb, sra + psb[1], pra[0] + sfb[1], pra[1] + sfb[0]),
          max(psa[2] + slb, sra + psb[2], pra[0] + sfb[2], pra[1] + sfb[1], pra[2] + sfb[0])]
    wrap_s = [NEG,
              max(psa[1] + fb, wsa[1] + srb, sra + wsb[1], pra[0] + sb[1], pra[1] + sb[0]),
              max(psa[2] + fb, wsa[2] + srb, sra + wsb[2], pra[0] + sb[2], pra[1] + sb[1], pra[2] + sb[0])]
    wrap_p = [NEG,
              max(wpa[1] + slb, fa + psb[1], sla + wpb[1], pa[0] + sfb[1], pa[1] + sfb[0]),
              max(wpa[2] + slb, fa + psb[2], sla + wpb[2], pa[0] + sfb[2], pa[1] + sfb[1], pa[2] + sfb[0])]
    return (min(2, la + lb), sla + slb, sra + srb, max(fa + srb, sla + fb),
            pre_r, suf_l, pre, suf, best, ps, wrap_s, wrap_p)


def best_stay_window(shape: LapShape, leaf: Callable[[HopClass], tuple], left_out: int = 1) -> int:
    """Best circular window of at most n - left_out hops (left_out 1 or 2) holding a split hop; NEG if none.

    Such a window either lies inside the lap as folded or wraps its end (a
    suffix and a disjoint prefix); either way ``left_out`` hops stay outside.
    """
    s = fold(shape, leaf, stay_cat)
    best = max(s[8][left_out], s[10][left_out], s[11][left_out])
    return NEG if best <= NEG // 2 else best
