"""MPI chip groups: strong and weak scaling of one event simulation (prints figures; asserts nothing).

Workload (default): hierarchical all-reduce (top=tree, 8 chunks, 8 in flight)
of 256 MiB on trn2, 1,024 nodes = 16,384 chips, event fidelity: 18.9 million
events over 8.8 ms of simulated time, about 1,070 windows of 7.5 us.  (With
the default 4 chunks the two ranks' work is unevenly spread over the windows
at 256 MiB, which caps R = 2 at 1.6x: see the ``bound`` column.)

* strong scaling: that workload on R = 1, 2 ranks (``--ranks 1,2,4,...`` on a
  bigger machine).  R = 1 is the plain single-process engine (no MPI at all);
  R > 1 runs ``mpiexec -n R`` (oversubscribed when R exceeds the cores).
* weak scaling: ``--nodes-per-rank`` nodes per rank (default 512: 8,192
  chips per rank, 16,384 at R = 2).

Per run: wall seconds of the simulation (the slowest rank, Python start-up and
cluster set-up excluded), speedup and efficiency against R = 1, windows,
records and bytes exchanged, and per rank the seconds spent synchronising
(inside MPI, waiting for the slowest rank included) and processing events
(wall and CPU), and ``bound``: total events over the sum, across windows, of
the busiest rank's events, the speedup the windows allow at best.  Every run
also prints the simulated time and event count: they must be identical for
every R.

    .venv/bin/python benchmarks/mpi_scaling.py                   # ~1 minute on 2 idle cores
    .venv/bin/python benchmarks/mpi_scaling.py --ranks 1,2,4,8 --nodes 4096
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MiB = 2**20


# --- worker: one simulation, on every rank of an mpiexec launch (or alone) ---------------


def worker(args) -> None:
    sys.path.insert(0, str(ROOT))
    from collectives.base import AlgorithmParams, Collective
    from collectives.event import simulate as simulate_single
    from collsim import distributed
    from topologies.presets import preset_cluster

    cluster = preset_cluster(args.preset, args.nodes)
    params = AlgorithmParams(top=args.top, chunks=args.chunks, in_flight=args.in_flight)
    count = args.size // 4
    comm = distributed.run_comm()
    if comm is None:
        start, cpu = time.perf_counter(), time.process_time()
        res = simulate_single(cluster, Collective.all_reduce, args.algorithm, count, "float32", 4, params, False)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(json.dumps({"ranks": 1, "chips": cluster.chips, "wall_s": wall, "time_ps": res.time_ps,
                          "events": res.events, "windows": 0, "records": 0, "bytes": 0, "sync_s": [0.0],
                          "compute_s": [wall], "cpu_s": [cpu], "balance": 1.0}))
        return
    comm.Barrier()
    start = time.perf_counter()
    res = distributed.simulate(comm, cluster, Collective.all_reduce, args.algorithm, count, "float32", 4, params,
                               False)
    wall = time.perf_counter() - start
    st = res.stats
    rows = comm.gather((wall, st.sync_s, st.compute_s, st.records_sent, st.bytes_sent, st.windows, st.compute_cpu_s,
                        st.window_events), root=0)
    if comm.Get_rank() == 0:
        print(json.dumps({
            "ranks": comm.Get_size(),
            "chips": cluster.chips,
            "wall_s": max(r[0] for r in rows),
            "time_ps": res.makespan_ps + cluster.topology.chip.launch_overhead_ps,
            "events": res.events,
            "windows": rows[0][5],
            "records": sum(r[3] for r in rows),
            "bytes": sum(r[4] for r in rows),
            "sync_s": [r[1] for r in rows],
            "compute_s": [r[2] for r in rows],
            "cpu_s": [r[6] for r in rows],
            # events / sum over windows of the busiest rank's events: the speedup windows allow at best
            "balance": res.events / sum(max(w) for w in zip(*(r[7] for r in rows))),
        }))


# --- driver --------------------------------------------------------------------------------


def launch(ranks: int, nodes: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--preset", args.preset, "--nodes", str(nodes),
           "--algorithm", args.algorithm, "--top", args.top, "--size", str(args.size), "--chunks", str(args.chunks),
           "--in-flight", str(args.in_flight)]
    if ranks > 1:
        cmd = [str(BIN / "mpiexec"), "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE")}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"R={ranks} failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def show(title: str, runs: list[tuple[int, int, dict]], weak: bool) -> None:
    print(f"\n{title}")
    print(f"{'R':>3} {'nodes':>6} {'chips':>7} {'wall s':>8} {'speedup':>8} {'effic.':>7} {'windows':>8} "
          f"{'records':>9} {'MB sent':>8} {'sync s':>12} {'events s':>12} {'events CPU s':>13} "
          f"{'bound':>6} {'sim time us':>12} {'events':>11}")
    base = runs[0][2]["wall_s"]
    for ranks, nodes, r in runs:
        speedup = base / r["wall_s"]
        eff = speedup if weak else speedup / ranks
        sync = "/".join(f"{s:.2f}" for s in r["sync_s"])
        comp = "/".join(f"{s:.2f}" for s in r["compute_s"])
        cpu = "/".join(f"{s:.2f}" for s in r["cpu_s"])
        print(f"{ranks:>3} {nodes:>6} {r['chips']:>7} {r['wall_s']:>8.2f} {speedup:>7.2f}x {eff:>7.0%} "
              f"{r['windows']:>8} {r['records']:>9} {r['bytes'] / 1e6:>8.2f} {sync:>12} {comp:>12} {cpu:>13} "
              f"{r['balance']:>5.2f}x {r['time_ps'] / 1e6:>12.3f} {r['events']:>11,}")
    print("  sync s, events s, events CPU s: per rank, rank 0 first (CPU below wall: the core was shared).")
    print("  bound: events / sum over windows of the busiest rank's events = the best speedup the windows allow.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", default="trn2")
    parser.add_argument("--nodes", type=int, default=1024, help="strong scaling: nodes (default 1024)")
    parser.add_argument("--nodes-per-rank", type=int, default=512, help="weak scaling: nodes per rank")
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    parser.add_argument("--algorithm", default="hierarchical")
    parser.add_argument("--top", default="tree")
    parser.add_argument("--size", type=int, default=256 * MiB, help="bytes per chip (default 256 MiB)")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs per point; the fastest is kept")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--skip-weak", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    ranks = [int(r) for r in args.ranks.split(",")]
    print(f"# collsim MPI scaling: {args.preset}, {args.algorithm} (top={args.top}, {args.chunks} chunks, "
          f"{args.in_flight} in flight) all-reduce of {args.size / MiB:g} MiB, event fidelity; {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.2f} at start")

    def best(r, nodes):
        return min((launch(r, nodes, args) for _ in range(args.repeat)), key=lambda x: x["wall_s"])

    strong = [(r, args.nodes, best(r, args.nodes)) for r in ranks]
    show(f"strong scaling: {args.nodes} nodes ({strong[0][2]['chips']} chips)", strong, weak=False)
    same = len({(r["time_ps"], r["events"]) for _, _, r in strong}) == 1
    print(f"simulated time and events identical for every R: {'yes' if same else 'NO'}")
    if not args.skip_weak:
        weak = [(r, args.nodes_per_rank * r, best(r, args.nodes_per_rank * r)) for r in ranks]
        show(f"weak scaling: {args.nodes_per_rank} nodes per rank", weak, weak=True)
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
