"""The flat cluster both simulators see, written out for each of them.

N hosts, each with a private full-duplex link (bandwidth B per direction, latency L) into a
non-blocking crossbar: a message from one host to another crosses exactly two links (the
sender's uplink, the receiver's downlink) and pays 2 L + b / B when alone.

* SimGrid: a ``<cluster>`` with ``sharing_policy="SPLITDUPLEX"`` (3.32's name for
  FULLDUPLEX: one constraint per direction) and no backbone, so the crossbar itself never
  limits anything.
* collsim: one ``switch`` level of N chips (``cluster.nodes=1``), the same B and L per link,
  efficiency 1, launch overhead 0.  SMPI runs with ``smpi/simulate-computation:no`` so the
  reduction costs nothing; collsim cannot take an infinite reduce bandwidth, so it gets
  10^18 B/s, which adds at most ceil(b * 1e12 / 1e18) ps per reduce step (1 ps per MiB).

Pure functions of (hosts, bandwidth, latency); nothing here runs a program.
"""
from __future__ import annotations

from xml.sax.saxutils import quoteattr

CLUSTER_ID = "flat"
HOST_PREFIX = "host-"
# Reduce bandwidth for collsim: large enough to be negligible, small enough for int64 B/s.
COLLSIM_REDUCE_Bps = 10**18

# SMPI options that make SimGrid compute the same thing as collsim (see README section
# "Side by side with SimGrid SMPI" for why each one matters).
SMPI_OPTIONS = (
    "--cfg=smpi/allreduce:lr",  # logical ring: reduce-scatter then all-gather, n-1 steps each
    "--cfg=network/model:CM02",  # plain max-min sharing; SMPI's default model adds size factors
    "--cfg=network/crosstraffic:0",  # no 5% reverse (ACK) traffic on the opposite direction
    "--cfg=network/TCP-gamma:0",  # no TCP window cap gamma / (2 * latency) on a flow's rate
    "--cfg=network/latency-factor:1",  # CM02's defaults, stated so nothing else can change them
    "--cfg=network/bandwidth-factor:1",
    "--cfg=network/weight-S:0",
    "--cfg=smpi/simulate-computation:no",  # reductions and copies take no simulated time
    "--cfg=smpi/host-speed:1Gf",  # unused without computation; set to silence the warning
    "--cfg=smpi/wtime:0",  # MPI_Wtime must not advance the clock (3.32 injects 10 ns otherwise)
    "--log=root.thres:warning",
)


def host_names(hosts: int) -> list[str]:
    if hosts < 1:
        raise ValueError(f"hosts must be >= 1, got {hosts}")
    return [f"{HOST_PREFIX}{i}" for i in range(hosts)]


def platform_xml(hosts: int, bandwidth_Bps: int, latency_ps: int) -> str:
    """SimGrid 3.32 platform (DTD 4.1): one flat cluster, private split-duplex links, no backbone."""
    _check_link(bandwidth_Bps, latency_ps)
    names = host_names(hosts)
    attrs = {
        "id": CLUSTER_ID,
        "prefix": HOST_PREFIX,
        "suffix": "",
        "radical": f"0-{len(names) - 1}",
        "speed": "1Gf",
        "bw": f"{bandwidth_Bps}Bps",
        "lat": f"{latency_ps}ps",
        "sharing_policy": "SPLITDUPLEX",
    }
    attr_text = " ".join(f"{key}={quoteattr(value)}" for key, value in attrs.items())
    return (
        "<?xml version='1.0'?>\n"
        '<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">\n'
        '<platform version="4.1">\n'
        f"  <!-- {hosts} hosts, each with a private full-duplex link of {bandwidth_Bps} B/s and "
        f"{latency_ps} ps per direction into a non-blocking crossbar (no backbone) -->\n"
        f"  <cluster {attr_text}/>\n"
        "</platform>\n"
    )


def hostfile(hosts: int) -> str:
    """One host per line, rank i on host i."""
    return "".join(f"{name}\n" for name in host_names(hosts))


def collsim_topology_yaml(hosts: int, bandwidth_Bps: int, latency_ps: int, name: str) -> str:
    """collsim topology with one switch level of ``hosts`` chips (run it with cluster.nodes=1).

    The scale-out section is required by the schema but unused: with one node no message
    leaves the switch.
    """
    _check_link(bandwidth_Bps, latency_ps)
    if hosts < 2:
        raise ValueError(f"a ring all-reduce needs >= 2 chips, got {hosts}")
    return (
        f"name: {name}\n"
        f'description: "{hosts} chips on one non-blocking switch, {bandwidth_Bps} B/s and {latency_ps} ps per link '
        f'(the SimGrid SMPI side-by-side platform)"\n'
        "chip:\n"
        f"  reduce_bandwidth: {COLLSIM_REDUCE_Bps}B/s  # SMPI runs without computation: reduction ~free\n"
        "  launch_overhead: 0us\n"
        "levels:\n"
        "  - name: crossbar\n"
        f"    size: {hosts}\n"
        "    fabric: switch\n"
        f"    link: {{bandwidth: {bandwidth_Bps}B/s, latency: {latency_ps}ps, efficiency: 1.0}}\n"
        "scale_out:  # unused with cluster.nodes=1\n"
        "  fabric: fat_tree\n"
        "  nics_per_node: 1\n"
        f"  nic: {{bandwidth: {bandwidth_Bps}B/s, latency: {latency_ps}ps, efficiency: 1.0}}\n"
    )


def ring_allreduce_ps(hosts: int, nbytes: int, bandwidth_Bps: int, latency_ps: int) -> int:
    """Contention-free ring all-reduce on this platform, in ps, reduction free.

    2(n-1) steps; each moves one shard of nbytes/n across two links: 2 L + ceil(shard / B).
    Only exact when n divides the element count.  Measured against it, SMPI 3.32 is slower
    by 16 bytes per message (2(n-1) x 16 B / B) and collsim by its reduce steps
    ((n-1) x ceil(shard x 1e12 / COLLSIM_REDUCE_Bps) ps).
    """
    shard_bytes = nbytes // hosts
    step_ps = 2 * latency_ps + -((-shard_bytes * 10**12) // bandwidth_Bps)
    return 2 * (hosts - 1) * step_ps


def _check_link(bandwidth_Bps: int, latency_ps: int) -> None:
    if bandwidth_Bps <= 0:
        raise ValueError(f"bandwidth must be > 0 B/s, got {bandwidth_Bps}")
    if latency_ps < 0:
        raise ValueError(f"latency must be >= 0 ps, got {latency_ps}")
