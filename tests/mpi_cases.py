"""Helper of tests/test_mpi.py (not a test module): every algorithm x collective x fidelity.

Run alone (one process, the plain engine) or under ``mpiexec -n R`` (one chip
group per rank, through MPI).  Prints one JSON line per case on rank 0:
cluster, its nodes, algorithm, collective, fidelity, simulated time, events,
link events, #wrong.  Clusters with fewer nodes than ranks are left out.  The test compares the lines of
different R exactly.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectives.base import AlgorithmParams, Collective, effective_count  # noqa: E402
from collectives.event import simulate  # noqa: E402
from collsim import distributed  # noqa: E402
from topologies.model import ChipSpec, Cluster, Fabric, Level, LinkSpec, ScaleOut, Topology  # noqa: E402
from topologies.presets import preset_cluster  # noqa: E402


GB = 10**9


def clusters():
    """Small clusters (few windows, so fast under mpiexec) covering every way a message crosses ranks.

    * 4 nodes of a 2x2 torus, one NIC per chip, non-blocking fat tree;
    * 5 nodes of a 2-chip ring sharing one NIC, on an oversubscribed fat tree
      of 3 leaves (leaf trunks owned by the rank of a leaf's first NIC);
    * trn2 x 2 (the preset: 4x4 torus, 16 NICs).
    """
    chip = ChipSpec(reduce_Bps=500 * GB, launch_overhead_ps=1_000_000)
    torus = Level("torus", 4, Fabric.torus, LinkSpec(100 * GB, 1_000_000, 0.9), (2, 2))
    nic = LinkSpec(25 * GB, 8_000_001, 0.95)
    yield "torus2x2x4", Cluster(Topology("t", chip, (torus,), ScaleOut(4, nic)), 4)
    pair = Level("pair", 2, Fabric.ring, LinkSpec(64 * GB, 700_000))
    tree = ScaleOut(1, nic, oversubscription=2.0, nics_per_leaf=2, spine_latency_ps=3_000_001)
    yield "pair-x5-oversubscribed", Cluster(Topology("p", chip, (pair,), tree), 5)
    yield "trn2x2", preset_cluster("trn2", 2)


def main() -> None:
    comm = distributed.run_comm()
    params = AlgorithmParams(chunks=6, in_flight=2)  # a tree window smaller than its chunks: flow control
    ranks = 1 if comm is None else comm.Get_size()
    for name, cluster in clusters():
        if cluster.nodes < ranks:
            continue  # refused (tests/test_mpi.py checks that separately)
        for algorithm in ("ring", "tree", "hierarchical"):
            for collective in Collective:
                for verify in (False, True):
                    count = effective_count(collective, 3_001, cluster.chips)
                    res = simulate(cluster, collective, algorithm, count, "float32", 4, params, verify, comm=comm)
                    if comm is None or comm.Get_rank() == 0:
                        print(json.dumps([name, cluster.nodes, algorithm, collective.value, "data" if verify else "event",
                                          res.time_ps, res.events, res.link_events, res.wrong]), flush=True)


if __name__ == "__main__":
    main()
