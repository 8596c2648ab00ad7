"""Cluster model: preset shapes and link figures, link layout, reference routing, validation errors."""
import copy

import pytest
from omegaconf import OmegaConf

from collsim.errors import ConfigError
from collsim.paths import config_dir
from topologies.loader import load_topology, make_cluster
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology
from topologies.presets import load_preset, preset_cluster, preset_names

GB = 10**9


def test_all_presets_present():
    assert preset_names() == ["dgx-h100", "trn1", "trn1n", "trn2", "trn2-ultraserver", "trn3-ultraserver"]


@pytest.mark.parametrize(
    "name, chips_per_node, level_bandwidths, nics, nic_Bps",
    [
        ("trn1", 16, [96 * GB], 8, 100 * GB // 8),
        ("trn1n", 16, [96 * GB], 16, 100 * GB // 8),
        ("trn2", 16, [256 * GB], 16, 200 * GB // 8),
        ("trn2-ultraserver", 64, [256 * GB, 128 * GB], 64, 200 * GB // 8),
        ("trn3-ultraserver", 144, [256 * GB, 320 * GB, 128 * GB], 144, 200 * GB // 8),
        ("dgx-h100", 8, [450 * GB], 8, 400 * GB // 8),
    ],
)
def test_preset_figures(name, chips_per_node, level_bandwidths, nics, nic_Bps):
    topo = load_preset(name)
    assert topo.chips_per_node == chips_per_node
    assert [lvl.link.bandwidth_Bps for lvl in topo.levels] == level_bandwidths
    assert topo.scale_out.nics_per_node == nics
    assert topo.scale_out.nic.bandwidth_Bps == nic_Bps
    assert topo.scale_out.oversubscription == 1.0


def test_trn2_details():
    topo = load_preset("trn2")
    (server,) = topo.levels
    assert (server.fabric, server.dims) == (Fabric.torus, (4, 4))
    assert server.link.latency_ps == 1_500_000
    assert topo.scale_out.nic.latency_ps == 15_000_000
    assert topo.chip.reduce_Bps == 966_670_000_000
    assert preset_cluster("trn2", 64).chips == 1024


def test_trn3_ultraserver_levels():
    topo = load_preset("trn3-ultraserver")
    assert [(lvl.name, lvl.size, lvl.fabric) for lvl in topo.levels] == [
        ("sled", 4, Fabric.switch),
        ("rack", 18, Fabric.switch),
        ("pair", 2, Fabric.direct),
    ]
    assert preset_cluster("trn3-ultraserver", 7282).chips == 1_048_608


def _link(bw=100 * GB, lat=1_000_000):
    return LinkSpec(bandwidth_Bps=bw, latency_ps=lat, efficiency=1.0)


def _cluster(levels, nodes=1, nics=1, oversub=1.0, per_leaf=32):
    chips = 1
    for lvl in levels:
        chips *= lvl.size
    topo = Topology("t", ChipSpec(10**12, 0), tuple(levels), ScaleOut(nics, _link(25 * GB, 10_000_000), oversub, per_leaf))
    return Cluster(topo, nodes)


def test_link_layout_counts_ports():
    # 4x4 torus: 4 ports per chip; 3-ring: 2 ports; 2-ring: 1 port; switch: 2 (up, down); direct of 3: 2.
    torus = Level("a", 16, Fabric.torus, _link(), (4, 4))
    assert torus.ports == 4
    assert Level("b", 3, Fabric.ring, _link()).ports == 2
    assert Level("c", 2, Fabric.ring, _link()).ports == 1
    assert Level("d", 8, Fabric.switch, _link()).ports == 2
    assert Level("e", 3, Fabric.direct, _link()).ports == 2
    assert Level("f", 1, Fabric.switch, _link()).ports == 0
    assert Level("g", 8, Fabric.torus, _link(), (2, 4)).ports == 3
    cluster = _cluster([torus], nodes=2, nics=4)
    assert [(g.name, g.first, g.count) for g in cluster.link_groups] == [
        ("a", 0, 128),
        ("nic_up", 128, 8),
        ("nic_down", 136, 8),
    ]


def test_torus_routing_dimension_order_shortest_ties_positive():
    cluster = _cluster([Level("t", 16, Fabric.torus, _link(), (4, 4))])
    # chip = x + 4*y; ports: 0 = +x, 1 = -x, 2 = +y, 3 = -y; link = chip*4 + port
    assert cluster.route(0, 1) == [0 * 4 + 0]
    assert cluster.route(0, 3) == [0 * 4 + 1]  # wrap-around is shorter
    assert cluster.route(0, 2) == [0, 1 * 4 + 0]  # tie (2 either way) goes positive
    assert cluster.route(0, 5) == [0, 1 * 4 + 2]  # x first, then y
    assert cluster.route(5, 0) == [5 * 4 + 1, 4 * 4 + 3]
    assert cluster.route(7, 7) == []


def test_switch_and_direct_routing():
    cluster = _cluster([Level("s", 4, Fabric.switch, _link()), Level("d", 3, Fabric.direct, _link())])
    # level s: links 0..23 (12 chips x 2), chip*2 + 0 up, + 1 down; level d: 24.. (12 chips x 2 ports)
    assert cluster.route(1, 2) == [1 * 2 + 0, 2 * 2 + 1]
    # chip 1 (c0=1, c1=0) -> chip 9 (c0=1, c1=2): direct port index 1 (skipping self)
    assert cluster.route(1, 9) == [24 + 1 * 2 + 1]
    # chip 0 -> chip 6 (c0=2, c1=1): switch first (innermost), then direct from chip 2 to unit 1 (port 0)
    assert cluster.route(0, 6) == [0, 2 * 2 + 1, 24 + 2 * 2 + 0]


def test_scale_out_routing_with_shared_nics_and_oversubscription():
    cluster = _cluster([Level("s", 4, Fabric.switch, _link())], nodes=4, nics=2, oversub=2.0, per_leaf=4)
    # 4 chips per node, 2 NICs: chips 0,1 -> NIC 0; 2,3 -> NIC 1. 8 NICs, 4 per leaf -> 2 leaves, 2 trunks each.
    groups = {g.name: g for g in cluster.link_groups}
    assert [groups[k].count for k in ("nic_up", "nic_down", "leaf_up", "leaf_down")] == [8, 8, 4, 4]
    assert cluster.nic_of(1) == 0 and cluster.nic_of(2) == 1 and cluster.nic_of(13) == 6
    up, down = groups["nic_up"].first, groups["nic_down"].first
    assert cluster.route(0, 4) == [up + 0, down + 2]  # same leaf: no trunk
    lu, ld = groups["leaf_up"].first, groups["leaf_down"].first
    # chip 3 (NIC 1, leaf 0, trunk 1) -> chip 13 (NIC 6, leaf 1, index 2 in leaf -> trunk 0)
    assert cluster.route(3, 13) == [up + 1, lu + 1, ld + 2 + 0, down + 6]
    # NIC latency is split between the two NIC hops: 10 us = 5 + 5
    assert cluster.link_spec(up).latency_ps + cluster.link_spec(down).latency_ps == 10_000_000


def test_single_node_has_no_scale_out_links():
    cluster = preset_cluster("trn2", 1)
    assert [g.name for g in cluster.link_groups] == ["server"]


def _preset_dict(name="trn2"):
    return OmegaConf.to_container(OmegaConf.load(config_dir() / "topology" / f"{name}.yaml"))


@pytest.mark.parametrize(
    "mutate, field, fragment",
    [
        (lambda d: d["levels"][0].update(dims=[4, 3]), "topology.levels[0].dims", "product of dims"),
        (lambda d: d["levels"][0].update(fabric="mesh"), "topology.levels[0].fabric", "unknown fabric"),
        (lambda d: d["levels"][0].update(fabric="fat_tree"), "topology.levels[0].fabric", "scale-out fabric"),
        (lambda d: d["levels"][0]["link"].update(bandwidth="0GB/s"), "topology.levels[0].link.bandwidth", "> 0"),
        (lambda d: d["levels"][0]["link"].update(bandwidth="-1GB/s"), "topology.levels[0].link.bandwidth", "> 0"),
        (lambda d: d["levels"][0]["link"].update(efficiency=1.5), "topology.levels[0].link.efficiency", "(0, 1]"),
        (lambda d: d["levels"][0]["link"].update(latency="3 parsecs"), "topology.levels[0].link.latency", "unit"),
        (lambda d: d["levels"][0].update(size=0), "topology.levels[0].size", ">= 1"),
        (lambda d: d["scale_out"].update(nics_per_node=3), "topology.scale_out.nics_per_node", "must divide"),
        (lambda d: d["scale_out"].update(oversubscription=0.5), "topology.scale_out.oversubscription", ">= 1"),
        (lambda d: d["chip"].pop("reduce_bandwidth"), "topology.chip.reduce_bandwidth", "required"),
        (lambda d: d.update(levels=[]), "topology.levels", "at least one"),
        (lambda d: d["levels"][0].update(fabric="switch"), "topology.levels[0].dims", "only a torus"),
    ],
)
def test_invalid_topologies_name_the_field(mutate, field, fragment):
    cfg = copy.deepcopy(_preset_dict())
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        load_topology(cfg)
    assert err.value.field == field
    assert fragment in err.value.message


@pytest.mark.parametrize("nodes", [0, -3, 1.5, True])
def test_nodes_must_be_positive_integers(nodes):
    with pytest.raises(ConfigError, match="cluster.nodes"):
        make_cluster(load_preset("trn2"), nodes)
