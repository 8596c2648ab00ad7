"""A million chips: 1 GiB all-reduce, hierarchical, event fidelity, on 7,282 Trn3 UltraServers.

The command line equivalent is

    collsim topology=trn3-ultraserver cluster.nodes=7282 algorithm=hierarchical \\
        fidelity=event sizes.min=1GiB sizes.max=1GiB

(1,048,608 chips; ``algorithm.top`` defaults to ``auto``, which picks the double
binary tree across the 7,282 UltraServers: a ring there would take 2 x 7,281
steps per chip, ~10^11 events).  This script runs the same steps in one
process and prints where the wall time and the memory go: building the
cluster, the router, the engine, the schedule, and the engine run (events,
events per CPU second), then peak RSS.  ``--profile`` adds a cProfile of the
Python part (everything but the run) sorted by cumulative time.

    .venv/bin/python benchmarks/million_chips.py [--nodes 7282] [--top auto] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time

GiB = 2**30


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=7282)
    parser.add_argument("--top", default="auto", choices=("auto", "ring", "tree"))
    parser.add_argument("--size", type=int, default=GiB, help="bytes per chip")
    parser.add_argument("--profile", action="store_true", help="cProfile the set-up (Python) part")
    args = parser.parse_args()

    steps = []

    def step(name, fn):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        value = fn()
        steps.append((name, time.perf_counter() - wall0, time.process_time() - cpu0, rss_mib()))
        return value

    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    from collectives import hierarchical
    from collectives.base import AlgorithmParams, Collective
    from collsim.engine.core import Engine
    from topologies.presets import preset_cluster
    from topologies.routing import Router

    count = args.size // 4
    cluster = step("cluster (preset)", lambda: preset_cluster("trn3-ultraserver", args.nodes))
    params = AlgorithmParams(top=args.top)
    resolved = hierarchical.resolve_top(cluster, Collective.all_reduce, count, 4, params)
    router = step("router", lambda: Router(cluster))
    engine = step("engine", lambda: Engine(router, cluster.topology.chip.reduce_Bps, 4, None))
    schedule = step("schedule", lambda: hierarchical.make_schedule(cluster, Collective.all_reduce, count, 4, params))
    if profiler:
        profiler.disable()
    step("engine run", lambda: engine.run(schedule))
    time_ps = cluster.topology.chip.launch_overhead_ps + engine.makespan_ps
    analytic_ps = hierarchical.analytic_time_ps(cluster, Collective.all_reduce, count, 4, params)

    print(f"trn3-ultraserver x{args.nodes}: {cluster.chips:,} chips, {router.num_links:,} directed links, "
          f"1 GiB all-reduce, hierarchical top={args.top} (resolved: {resolved.top})")
    print(f"  simulated {time_ps / 1e6:,.1f} us (analytic {analytic_ps / 1e6:,.1f} us)")
    total_wall = sum(s[1] for s in steps)
    for name, wall, cpu, rss in steps:
        print(f"  {name:<18} {wall:8.2f} s wall {cpu:8.2f} s CPU   RSS after {rss:8,.0f} MiB")
    run_cpu = steps[-1][2]
    print(f"  total              {total_wall:8.2f} s wall")
    print(f"  events {engine.events:,} (link events {engine.link_events:,}); "
          f"{engine.events / run_cpu / 1e6:.2f} M events / {engine.link_events / run_cpu / 1e6:.2f} M link-events "
          f"per CPU second of the run; peak in flight {engine.peak_in_flight:,}")
    print(f"  state: schedule {schedule.state_bytes() / 2**20:,.0f} MiB, engine {engine.state_bytes() / 2**20:,.0f} MiB; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    if profiler:
        print("\ncProfile of the set-up (cumulative, top 15):")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)


if __name__ == "__main__":
    main()
