"""Hierarchical schedule state: one 64-byte line per slot, 32-bit chunk gates, and the range checks
that make the narrow fields safe (collectives/_hierarchical.pxd, Stream)."""
from __future__ import annotations

import numpy as np
import pytest

from collectives.base import AlgorithmParams, Collective
from collectives.hierarchical import make_schedule
from topologies.presets import preset_cluster

PRESETS = ("trn1", "trn2", "trn2-ultraserver", "trn3-ultraserver", "dgx-h100")


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("top", ["ring", "tree"])
@pytest.mark.parametrize("collective", list(Collective))
def test_every_preset_plan_keeps_a_slot_in_one_cache_line(preset, top, collective):
    cluster = preset_cluster(preset, 4)
    schedule = make_schedule(cluster, collective, 2**20, 4, AlgorithmParams(top=top))
    assert schedule.n_phases <= 8
    per_chip_channel = schedule.slots * 64 + schedule.n_phases * 4
    assert schedule.state_bytes() == cluster.chips * schedule.channels * per_chip_channel


def test_million_chip_schedule_state():
    # benchmarks/million_chips.py: 7,282 Trn3 UltraServers, 1 GiB all-reduce, top=auto (tree): 7 phases,
    # 2 channels x 4 slots of 64 bytes + 2 x 7 gates of 4 bytes = 568 bytes per chip (was 1,136)
    cluster = preset_cluster("trn3-ultraserver", 7282)
    schedule = make_schedule(cluster, Collective.all_reduce, 2**28, 4, AlgorithmParams())
    assert schedule.n_phases == 7
    assert schedule.state_bytes() == cluster.chips * 568


def _one_ring(size, kind=0, n_phases=1):
    from collectives._hierarchical import HierarchicalSchedule

    one = np.zeros(1, dtype=np.int64)
    return HierarchicalSchedule(size, 1, 100, False, 4, 1, 1, False, 1, [kind] * n_phases, [0] * n_phases,
                                [size], [1], [0], [-1], one, one, -one, -np.ones(2, dtype=np.int64))


def test_rings_and_meshes_of_more_than_2_16_units_are_refused():
    assert _one_ring(2**16).n_phases == 1
    for kind in (0, 1, 2, 3):  # ring RS / AG, mesh RS / AG: 16-bit counters and part indices
        with pytest.raises(ValueError, match="2\\*\\*16"):
            _one_ring(2**16 + 1, kind)
    assert _one_ring(2**16 + 1, kind=4).n_phases == 1  # a tree counts two trees only


def test_phases_fit_a_signed_byte():
    assert _one_ring(4, n_phases=127).n_phases == 127
    with pytest.raises(ValueError, match="127"):
        _one_ring(4, n_phases=128)
