"""Double binary tree: event-schedule speed and memory, analytic-model speed (prints figures; asserts nothing).

1. Event: all-reduce of 64 MiB per chip (float32) on trn2 clusters (4x4 torus nodes, one
   NIC per chip), chunks and in-flight window as given.  Reports events, link events, CPU
   seconds of Engine.run, link events per CPU second, the peak number of messages in flight,
   the schedule's own state and event / analytic time.
2. Analytic: wall time of analytic_time_ps for the three collectives at up to ~1M chips
   (trn2 65,536 nodes; trn3-ultraserver 7,282 UltraServers of 144 chips).

Usage: .venv/bin/python benchmarks/tree_event.py [--nodes 64 1024] [--chunks 16] [--window 4]
"""
import argparse
import resource
import time

from collectives.base import AlgorithmParams, Collective
from collectives.tree import analytic_time_ps, make_schedule
from collsim.engine.core import Engine
from topologies.presets import preset_cluster
from topologies.routing import Router

def event_figures(cluster, count, params):
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, 4)
    schedule = make_schedule(cluster, Collective.all_reduce, count, 4, params)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    makespan = engine.run(schedule)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    analytic = analytic_time_ps(cluster, Collective.all_reduce, count, 4, params)
    print(f"  {cluster.chips:>8} chips: {engine.events:>11,} events {engine.link_events:>11,} link events "
          f"{cpu:7.2f} s CPU ({wall:6.2f} s wall)  {engine.link_events / max(cpu, 1e-9) / 1e6:5.2f} M link-events/s  "
          f"peak in flight {engine.peak_in_flight:,}  schedule state {schedule.state_bytes() / 2**20:.1f} MiB  "
          f"event/analytic {makespan / analytic:.3f}")

def analytic_figures():
    params = AlgorithmParams(chunks=16, in_flight=4)
    for name, cluster in (("trn2", preset_cluster("trn2", 65_536)), ("trn3-ultraserver", preset_cluster("trn3-ultraserver", 7_282))):
        for collective in Collective:
            start = time.perf_counter()
            t_ps = analytic_time_ps(cluster, collective, 2**26 // cluster.chips * cluster.chips, 2, params)
            print(f"  {name} {cluster.chips:,} chips {collective.value:15s} {t_ps / 1e6:12.1f} us  "
                  f"computed in {1e3 * (time.perf_counter() - start):6.1f} ms")

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--window", type=int, default=4)
    args = parser.parse_args()
    params = AlgorithmParams(chunks=args.chunks, in_flight=args.window)
    print(f"event: all-reduce 64 MiB/chip float32, trn2, chunks={args.chunks} window={args.window}")
    for nodes in args.nodes:
        event_figures(preset_cluster("trn2", nodes), 16 * 2**20, params)
    print("analytic:")
    analytic_figures()
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

if __name__ == "__main__":
    main()
