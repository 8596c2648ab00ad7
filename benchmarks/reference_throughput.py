"""Engine throughput on the reference workloads (prints figures; asserts nothing).

Workloads (issue 3 item 8, issue 6 item 3), 1 GiB fp32 all-reduce on the shipped presets:
ring on 1,024 chips (64 trn2 servers), hierarchical on 16 trn2 servers, 256 trn2 servers
(ring across servers) and 64 trn3 UltraServers (tree across them).  For each: events, link
events (and how many of them ``send`` reserved at once, without a queued event), CPU seconds
of ``Engine.run`` (CPU, not wall, because the machine is shared), link-events per CPU second
(target >= 10 M/s on one core), all events per CPU second, and peak RSS.

    .venv/bin/python benchmarks/reference_throughput.py [--only NAME ...] [--repeats 3]

Under callgrind (instruction counts are stable on a loaded machine), profile only the run:

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*_process_until*' \
        .venv/bin/python benchmarks/reference_throughput.py --only ring_1024 --repeats 1
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

from collectives.base import AlgorithmParams, Collective
from collectives.registry import algorithm_module
from collsim.engine.core import Engine
from topologies.presets import preset_cluster
from topologies.routing import Router

GiB = 2**30
WORKLOADS = {
    # name: (preset, nodes, algorithm, top).  `top` is pinned to what top=auto chose when
    # these figures were first recorded, so that they stay comparable when the closed
    # forms behind auto change (since 2026-11-22 auto picks tree for 256 trn2 servers,
    # a 23x smaller run).
    "ring_1024": ("trn2", 64, "ring", "auto"),
    "hier_trn2_16": ("trn2", 16, "hierarchical", "ring"),
    "hier_trn2_256": ("trn2", 256, "hierarchical", "ring"),
    "hier_trn3_64": ("trn3-ultraserver", 64, "hierarchical", "tree"),
}


def run_once(preset: str, nodes: int, algorithm: str, top: str) -> tuple[Engine, float, float]:
    cluster = preset_cluster(preset, nodes)
    schedule = algorithm_module(algorithm).make_schedule(cluster, Collective.all_reduce, GiB // 4, 4,
                                                         AlgorithmParams(top=top))
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, 4, None)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    engine.run(schedule)
    return engine, time.process_time() - cpu0, time.perf_counter() - wall0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3, help="runs per workload (median CPU time)")
    args = parser.parse_args()
    for name in args.only or WORKLOADS:
        preset, nodes, algorithm, top = WORKLOADS[name]
        cpus, walls = [], []
        for _ in range(args.repeats):
            engine, cpu, wall = run_once(preset, nodes, algorithm, top)
            cpus.append(cpu)
            walls.append(wall)
        cpu, wall = statistics.median(cpus), statistics.median(walls)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:<14} {preset:>16} x{nodes:<4} {algorithm:<12} events {engine.events:>12,} "
              f"link events {engine.link_events:>12,} (at send {engine.reserved_at_send:>11,})  "
              f"run {cpu:7.3f} s CPU ({wall:7.3f} s wall)  "
              f"{engine.link_events / cpu / 1e6:6.2f} M link-ev/s  {engine.events / cpu / 1e6:6.2f} M ev/s  "
              f"peak RSS {rss:6.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
