"""The pure-Python parts of the SimGrid SMPI side-by-side benchmark (benchmarks/peers/).

No SimGrid here: platform XML and hostfile generation, the collsim topology it mirrors,
parsing of allreduce_timer.c's output, the joining arithmetic.  Expected values are worked
out by hand in each test.
"""
import xml.etree.ElementTree as ET

import pytest
import yaml

from benchmarks.peers import compare
from benchmarks.peers.collsim_run import CollsimRow, collsim_argv, read_results_csv, run_collsim
from benchmarks.peers.measure import Measured, rss_anon_kib
from benchmarks.peers.smpi_platform import (
    SMPI_OPTIONS,
    collsim_topology_yaml,
    host_names,
    hostfile,
    platform_xml,
    ring_allreduce_ps,
)
from benchmarks.peers.smpi_run import SmpiRow, parse_timer_output, shared_block_bytes, smpirun_argv
from topologies.loader import load_topology, make_cluster
from topologies.model import Fabric

B_100G = 100 * 10**9  # 100 GB/s
L_1US = 10**6  # 1 us in ps
GiB = 1 << 30


def _cluster_element(xml_text):
    root = ET.fromstring(xml_text)
    assert root.tag == "platform" and root.get("version") == "4.1"
    clusters = root.findall("cluster")
    assert len(clusters) == 1 and len(root) == 1
    return clusters[0]


def _expand_radical(radical):
    """SimGrid's radical syntax as we use it: 'a-b' inclusive."""
    lo, hi = radical.split("-")
    return list(range(int(lo), int(hi) + 1))


# --- platform XML and hostfile -----------------------------------------------------


def test_platform_xml_is_a_flat_split_duplex_cluster_without_backbone():
    xml_text = platform_xml(4, B_100G, L_1US)
    assert xml_text.startswith("<?xml version='1.0'?>\n<!DOCTYPE platform SYSTEM")
    cluster = _cluster_element(xml_text)
    assert cluster.get("radical") == "0-3"
    assert cluster.get("bw") == "100000000000Bps"
    assert cluster.get("lat") == "1000000ps"
    # SPLITDUPLEX = one constraint per direction: a full-duplex private link.
    assert cluster.get("sharing_policy") == "SPLITDUPLEX"
    # No backbone attributes: the crossbar never limits anything.
    for attr in ("bb_bw", "bb_lat", "bb_sharing_policy", "topology", "limiter_link", "loopback_bw"):
        assert cluster.get(attr) is None


@pytest.mark.parametrize("hosts", [1, 2, 16, 64, 256, 1024])
def test_hostfile_lists_exactly_the_cluster_hosts_in_rank_order(hosts):
    cluster = _cluster_element(platform_xml(hosts, B_100G, L_1US))
    expanded = [f"{cluster.get('prefix')}{i}{cluster.get('suffix')}" for i in _expand_radical(cluster.get("radical"))]
    lines = hostfile(hosts).splitlines()
    assert lines == expanded
    assert len(lines) == hosts == len(set(lines))
    assert lines[0] == "host-0" and lines[-1] == f"host-{hosts - 1}"
    assert hostfile(hosts).endswith("\n")


def test_platform_units_are_exact_integers():
    cluster = _cluster_element(platform_xml(2, 12_500_000_001, 1_500_000))
    assert cluster.get("bw") == "12500000001Bps"
    assert cluster.get("lat") == "1500000ps"


@pytest.mark.parametrize(
    "call",
    [
        lambda: host_names(0),
        lambda: platform_xml(0, B_100G, L_1US),
        lambda: platform_xml(4, 0, L_1US),
        lambda: platform_xml(4, B_100G, -1),
        lambda: collsim_topology_yaml(1, B_100G, L_1US, "x"),
    ],
)
def test_generators_reject_impossible_clusters(call):
    with pytest.raises(ValueError):
        call()


# --- the collsim twin ---------------------------------------------------------------


@pytest.mark.parametrize("hosts", [2, 16, 1024])
def test_collsim_topology_is_one_switch_level_with_the_same_links(hosts):
    cfg = yaml.safe_load(collsim_topology_yaml(hosts, B_100G, L_1US, f"flat-{hosts}"))
    topo = load_topology(cfg)  # the project's own loader and checks
    assert topo.name == f"flat-{hosts}"
    assert len(topo.levels) == 1
    level = topo.levels[0]
    assert level.fabric is Fabric.switch and level.size == hosts
    assert level.link.bandwidth_Bps == 100_000_000_000
    assert level.link.latency_ps == 1_000_000
    assert level.link.efficiency == 1.0
    assert topo.chip.launch_overhead_ps == 0
    assert topo.chip.reduce_Bps == 10**18
    assert make_cluster(topo, 1).chips == hosts


def test_ring_formula_by_hand():
    # n=4, S=1024 B: shard 256 B; ser = 256e12 / 1e11 = 2,560 ps; step = 2 us + 2,560 ps.
    assert ring_allreduce_ps(4, 1024, B_100G, L_1US) == 6 * 2_002_560 == 12_015_360
    # n=3, S=999 B, B=7 GB/s: shard 333 B; ser = ceil(333e12 / 7e9) = ceil(47,571.43) = 47,572 ps.
    assert ring_allreduce_ps(3, 999, 7 * 10**9, 500_000) == 4 * (1_000_000 + 47_572)


def test_collsim_event_on_the_twin_matches_the_hand_formula(tmp_path):
    """The real collsim command on the generated topology: 4 chips, 1 KiB and 4 KiB.

    Per size: 2(n-1) = 6 steps of 2 L + ser(S/4), plus 3 reduce-scatter steps of
    ceil(S/4 * 1e12 / 1e18) = 1 ps each (the stand-in for free reduction).
    1 KiB: 6 * (2,000,000 + 2,560) + 3 = 12,015,363 ps.
    4 KiB: ser(1,024 B) = 10,240 ps: 6 * 2,010,240 + 3 = 12,061,443 ps.
    """
    rows, measured = run_collsim(4, B_100G, L_1US, (1024, 4096, 4), "event", tmp_path)
    assert measured.returncode == 0
    assert [(r.nbytes, r.count, r.time_ps) for r in rows] == [(1024, 256, 12_015_363), (4096, 1024, 12_061_443)]
    assert all(r.events > 0 for r in rows)


def test_collsim_argv_pins_ring_one_channel_one_node(tmp_path):
    argv = collsim_argv("collsim", tmp_path / "conf", "flat-16", (1024, GiB, 4), "event", tmp_path / "run")
    assert argv[:3] == ["collsim", "--config-dir", str(tmp_path / "conf")]
    for item in ("topology=flat-16", "cluster.nodes=1", "algorithm=ring", "algorithm.channels=1",
                 "fidelity=event", "sizes.min=1024B", f"sizes.max={GiB}B", "sizes.factor=4",
                 f"hydra.run.dir={tmp_path / 'run'}"):
        assert item in argv


def test_read_results_csv(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(
        "collective,size_bytes,count,time_ps,time_us,wall_s,events\n"
        "all_reduce,1024,256,60019215,60.019215,0.4,1440\n"
        "all_reduce,4096,1024,60076815,60.076815,0.0004,1440\n"
    )
    assert read_results_csv(path) == [
        CollsimRow(nbytes=1024, count=256, time_ps=60019215, wall_s=0.4, events=1440),
        CollsimRow(nbytes=4096, count=1024, time_ps=60076815, wall_s=0.0004, events=1440),
    ]


# --- SMPI command line and output -----------------------------------------------------

SAMPLE_OUTPUT = """\
[0.000000] [xbt_cfg/INFO] Configuration change: Set 'smpi/privatization' to '0'
# allreduce_timer: MPI_Allreduce MPI_FLOAT noop (user op, does nothing), ranks=16, one call per size, time = ...
ALLREDUCE ranks=16 bytes=1024 count=256 op=noop lr_path=ring time_s=6.0024000000016149e-05 start_skew_s=0 late=0 wall_s=0.004249 cpu_s=0.004
ALLREDUCE ranks=1024 bytes=1024 count=256 op=sum lr_path=reduce+bcast time_s=2.5e-05 start_skew_s=8.0000000027280471e-10 late=1 wall_s=61.5 cpu_s=60.25
"""


def test_parse_timer_output_reads_every_field():
    rows = parse_timer_output(SAMPLE_OUTPUT)
    assert rows == [
        SmpiRow(ranks=16, nbytes=1024, count=256, op="noop", lr_path="ring", time_s=6.0024000000016149e-05,
                start_skew_s=0.0, late=False, wall_s=0.004249, cpu_s=0.004),
        SmpiRow(ranks=1024, nbytes=1024, count=256, op="sum", lr_path="reduce+bcast", time_s=2.5e-05,
                start_skew_s=8.0000000027280471e-10, late=True, wall_s=61.5, cpu_s=60.25),
    ]


def test_parse_timer_output_ignores_other_lines():
    assert parse_timer_output("# header\n[0.0] log line\n\n") == []


@pytest.mark.parametrize(
    "line, message",
    [
        ("ALLREDUCE ranks=16 bytes=1024 count=256 op=sum lr_path=ring time_s=1e-5 start_skew_s=0 late=0 cpu_s=1",
         "missing wall_s"),
        ("ALLREDUCE ranks=16 bytes=1024 count=256 op=sum lr_path=ring time_s=abc start_skew_s=0 late=0 wall_s=1 "
         "cpu_s=1", "bad value for time_s"),
        ("ALLREDUCE ranks=16 bytes=1024 count=256 op=sum lr_path=tree time_s=1 start_skew_s=0 late=0 wall_s=1 "
         "cpu_s=1", "unknown lr_path"),
        ("ALLREDUCE ranks=16 colour=red", "unknown field 'colour'"),
        ("ALLREDUCE", "malformed"),
    ],
)
def test_parse_timer_output_rejects_broken_lines(line, message):
    with pytest.raises(ValueError, match=message):
        parse_timer_output("# ok\n" + line + "\n")


def test_timer_source_prints_the_fields_the_parser_reads():
    """The C printf format and the parser agree on the field names and order."""
    from benchmarks.peers.smpi_run import SOURCE, _FIELDS

    text = SOURCE.read_text()
    fmt = "ALLREDUCE " + " ".join(f"{key}=" for key in _FIELDS)
    printed = [line for line in text.splitlines() if 'printf("ALLREDUCE' in line]
    assert len(printed) == 1
    keys = [tok.split("=")[0] for tok in printed[0].split('"')[1].split()[1:]]
    assert "ALLREDUCE " + " ".join(f"{k}=" for k in keys) == fmt


@pytest.mark.parametrize(
    "max_bytes, block",
    [
        (GiB, GiB),  # one block per buffer: 2 mappings per rank
        (GiB + 1, 2 * GiB),
        (3 << 20, 4 << 20),
        (1024, 1 << 20),  # never below SimGrid's default block
    ],
)
def test_shared_block_covers_the_buffer_in_one_mapping(max_bytes, block):
    assert shared_block_bytes(max_bytes) == block


def test_smpirun_argv_carries_the_model_options(tmp_path):
    argv = smpirun_argv("/usr/bin/smpirun", tmp_path / "t", 64, tmp_path / "p.xml", tmp_path / "h", (1024, GiB, 4),
                        "noop", 4 << 20)
    assert argv[:4] == ["/usr/bin/smpirun", "-no-privatize", "-np", "64"]
    i = argv.index(str(tmp_path / "t"))
    assert argv[i + 1:i + 5] == ["1024", str(GiB), "4", "noop"]
    for opt in ("--cfg=smpi/allreduce:lr", "--cfg=network/model:CM02", "--cfg=network/crosstraffic:0",
                "--cfg=network/TCP-gamma:0", "--cfg=smpi/simulate-computation:no", "--cfg=smpi/wtime:0",
                f"--cfg=smpi/shared-malloc-blocksize:{4 << 20}"):
        assert opt in argv
    assert set(SMPI_OPTIONS) <= set(argv)


def test_rss_anon_parse():
    assert rss_anon_kib("Name:\tx\nVmRSS:\t 900 kB\nRssAnon:\t   18800 kB\nRssFile:\t 5 kB\n") == 18800
    assert rss_anon_kib("Name:\tzombie\n") == 0


# --- joining and summaries ------------------------------------------------------------


def _smpi(ranks, nbytes, time_s, wall_s, lr_path="ring", late=False):
    return SmpiRow(ranks=ranks, nbytes=nbytes, count=nbytes // 4, op="noop", lr_path=lr_path, time_s=time_s,
                   start_skew_s=0.0, late=late, wall_s=wall_s, cpu_s=wall_s / 2)


def _measured(wall_s, maxrss_kib, private_kib):
    return Measured(returncode=0, wall_s=wall_s, cpu_s=wall_s / 2, maxrss_kib=maxrss_kib,
                    peak_private_kib=private_kib, stdout="", stderr="")


def test_compare_sizes_by_hand():
    smpi = [_smpi(16, 1024, 6.0024e-05, 0.5), _smpi(16, GiB, 0.020192664, 20.0)]
    collsim = [CollsimRow(1024, 256, 60_019_215, 0.25, 1440), CollsimRow(GiB, GiB // 4, 20_192_660_220, 0.002, 1440)]
    rows = compare.compare_sizes(smpi, collsim, B_100G, L_1US)
    assert [r.smpi_time_ps for r in rows] == [60_024_000, 20_192_664_000]
    # (60,019,215 - 60,024,000) / 60,024,000 = -4,785 / 60,024,000
    assert rows[0].diff_pct == pytest.approx(-100 * 4_785 / 60_024_000, rel=1e-12)
    assert rows[1].diff_pct == pytest.approx(-100 * 3_780 / 20_192_664_000, rel=1e-12)
    # formula: 30 steps of 2 us + S/16/B; S = 1 KiB: 64 B -> 640 ps.
    assert rows[0].formula_ps == 30 * 2_000_640
    assert rows[1].formula_ps == 30 * (2_000_000 + 671_088_640)
    assert rows[0].speedup == 2.0 and rows[1].speedup == 10_000.0


def test_compare_sizes_needs_every_size_on_both_sides():
    with pytest.raises(ValueError, match="no result for 4096 bytes"):
        compare.compare_sizes([_smpi(4, 4096, 1e-5, 1.0)], [CollsimRow(1024, 256, 1, 0.1, 1)], B_100G, L_1US)


def test_summarize_takes_largest_size_and_skips_non_ring_rows():
    rows = [
        compare.SizeComparison(1024, 1024, "reduce+bcast", 100, 150, 90, 50.0, 1.0, 0.9, 0.1, 10.0, False),
        compare.SizeComparison(1024, 4096, "ring", 1000, 1001, 1000, 0.1, 2.0, 1.9, 0.1, 20.0, False),
        compare.SizeComparison(1024, 16384, "ring", 2000, 1996, 2000, -0.2, 4.0, 3.9, 0.02, 200.0, False),
        compare.SizeComparison(1024, 65536, "ring", 2000, 2100, 2000, 5.0, 4.0, 3.5, 0.02, 200.0, True),  # late
    ]
    summary = compare.summarize(rows, _measured(300.0, 2048 * 1024, 512 * 1024), _measured(3.0, 100 * 1024, 80 * 1024))
    assert summary.nbytes == 65536 and summary.call_speedup == 200.0
    assert (summary.smpi_call_wall_s, summary.smpi_call_cpu_s) == (4.0, 3.5)
    assert (summary.smpi_process_cpu_s, summary.collsim_process_cpu_s) == (150.0, 1.5)
    assert summary.max_abs_diff_pct == 0.2  # the reduce+bcast row (50 %) and the late row (5 %) are excluded
    assert summary.process_speedup == 100.0
    assert (summary.smpi_maxrss_mib, summary.smpi_private_mib) == (2048.0, 512.0)
    assert (summary.collsim_maxrss_mib, summary.collsim_private_mib) == (100.0, 80.0)
    with pytest.raises(ValueError):
        compare.summarize(rows + [compare.SizeComparison(16, 1024, "ring", 1, 1, 1, 0.0, 1.0, 1.0, 1.0, 1.0, False)],
                          _measured(1, 1, 1), _measured(1, 1, 1))


def test_tables_and_csv():
    row = compare.SizeComparison(64, 4 << 20, "ring", 334_595_520, 334_595_200, 334_590_000, -0.0000956, 0.11,
                                 0.105, 0.0004, 275.0, False)
    cells = compare.size_cells(row)
    assert cells[:3] == ["64", "4 MiB", "ring"]
    assert cells[3] == "334.5955" and cells[4] == "334.5952" and cells[5] == "334.5900"
    assert cells[7] == "0.110 / 0.105" and cells[9] == "275x"
    table = compare.markdown_table(compare.SIZE_COLUMNS, [cells])
    lines = table.splitlines()
    assert len(lines) == 3 and lines[1].count("---") == len(compare.SIZE_COLUMNS)
    text = compare.csv_text([row])
    header, line = text.splitlines()
    assert header.split(",")[:4] == ["chips", "nbytes", "lr_path", "smpi_time_ps"]
    assert line.startswith("64,4194304,ring,334595520,334595200,")
    assert compare.format_bytes(1536) == "1536 B" and compare.format_bytes(GiB) == "1 GiB"
    assert [compare.format_ratio(r) for r in (0.125, 3.25, 12.4, 12345.6)] == ["0.12x", "3.2x", "12x", "12,346x"]
