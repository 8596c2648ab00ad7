"""A million chips: 1 GiB all-reduce, hierarchical, event fidelity, on 7,282 Trn3 UltraServers.

The command line equivalent is

    collsim topology=trn3-ultraserver cluster.nodes=7282 algorithm=hierarchical \\
        fidelity=event sizes.min=1GiB sizes.max=1GiB

(1,048,608 chips; ``algorithm.top`` defaults to ``auto``, which picks the double
binary tree across the 7,282 UltraServers: a ring there would take 2 x 7,281
steps per chip, ~10^11 events).  This script runs the same steps in one
process and prints where the wall time and the memory go: building the
cluster, the router, the engine, the schedule, and the engine run (events,
events per wall and per CPU second), then peak RSS.  ``--threads T`` runs it as
``collsim ... threads=T`` does: the nodes split over T partitions, one engine
and schedule each, run by T threads (collsim/distributed.py).  ``--profile``
adds a cProfile of the Python part (everything but the run) sorted by
cumulative time.  CPU times are the whole process's (all threads).

    .venv/bin/python benchmarks/million_chips.py [--nodes 7282] [--top auto] [--threads 1] [--profile]
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
    parser.add_argument("--threads", type=int, default=1, help="engine threads, as collsim threads=T")
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
    from collsim import distributed
    from collsim.engine.core import Engine
    from topologies.presets import preset_cluster
    from topologies.routing import Router

    count = args.size // 4
    cluster = step("cluster (preset)", lambda: preset_cluster("trn3-ultraserver", args.nodes))
    params = AlgorithmParams(top=args.top)
    resolved = hierarchical.resolve_top(cluster, Collective.all_reduce, count, 4, params)
    router = step("router", lambda: Router(cluster))
    if args.threads == 1:  # the plain engine, as collsim runs threads=1
        engine = step("engine", lambda: Engine(router, cluster.topology.chip.reduce_Bps, 4, None))
        schedule = step("schedule",
                        lambda: hierarchical.make_schedule(cluster, Collective.all_reduce, count, 4, params))
        engines, schedules = [engine], [schedule]
    else:
        work = distributed.Workload(cluster, Collective.all_reduce, "hierarchical", count, "float32", 4, params, False)
        parts = step(f"{args.threads} partitions", lambda: [work.partition(t, args.threads, router)
                                                             for t in range(args.threads)])
        engines, schedules = [p.engine for p in parts], [p.schedule for p in parts]
        lookahead = distributed.lookahead_ps(cluster)
    if profiler:
        profiler.disable()
    if args.threads == 1:
        step("engine run", lambda: engine.run(schedule))
        windows = "none (one engine)"
    else:
        done = step("engine run", lambda: distributed.run_in_process(engines, schedules, lookahead, parallel=True))
        windows = f"{done:,}"
    time_ps = cluster.topology.chip.launch_overhead_ps + max(e.makespan_ps for e in engines)
    analytic_ps = hierarchical.analytic_time_ps(cluster, Collective.all_reduce, count, 4, params)

    print(f"trn3-ultraserver x{args.nodes}: {cluster.chips:,} chips, {router.num_links:,} directed links, "
          f"1 GiB all-reduce, hierarchical top={args.top} (resolved: {resolved.top}); {args.threads} thread(s)")
    print(f"  simulated {time_ps / 1e6:,.1f} us (analytic {analytic_ps / 1e6:,.1f} us)")
    total_wall = sum(s[1] for s in steps)
    for name, wall, cpu, rss in steps:
        print(f"  {name:<18} {wall:8.2f} s wall {cpu:8.2f} s CPU   RSS after {rss:8,.0f} MiB")
    run_wall, run_cpu = steps[-1][1], steps[-1][2]
    events, link_events = sum(e.events for e in engines), sum(e.link_events for e in engines)
    print(f"  total              {total_wall:8.2f} s wall")
    print(f"  run: {run_wall:.2f} s wall, {run_cpu:.2f} s CPU of the process; "
          f"windows {windows}")
    print(f"  events {events:,} (link events {link_events:,}); {events / run_wall / 1e6:.2f} M events per wall "
          f"second, {events / run_cpu / 1e6:.2f} M events / {link_events / run_cpu / 1e6:.2f} M link-events per CPU "
          f"second; peak in flight {sum(e.peak_in_flight for e in engines):,} (sum over threads)")
    print(f"  state: schedules {sum(s.state_bytes() for s in schedules) / 2**20:,.0f} MiB, engines "
          f"{sum(e.state_bytes() for e in engines) / 2**20:,.0f} MiB; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    if profiler:
        print("\ncProfile of the set-up (cumulative, top 15):")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)


if __name__ == "__main__":
    main()
