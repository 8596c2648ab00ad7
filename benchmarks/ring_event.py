"""Ring collectives: event-schedule speed, ring-order and analytic-model speed (prints figures; asserts nothing).

1. Event: all-reduce of ``--mib`` MiB per chip (float32) on trn2 clusters (4x4 torus
   nodes, one NIC per chip) for each ``--nodes``, with 1 channel and 2 bidirectional
   channels.  A ring moves 2(n-1) C messages per chip, so the event count grows as n^2:
   the figure to watch is link events per CPU second.  Also: peak messages in flight, the
   schedule's own state (bytes), and event / analytic time.
2. ``ring_order`` and ``analytic_time_ps`` wall time at 1,048,608 chips (65,538 trn2
   nodes) and 7,282 trn3-ultraserver UltraServers (1,048,608 chips).

Usage: .venv/bin/python benchmarks/ring_event.py [--nodes 1 8 32] [--mib 64]
"""
import argparse
import time

from collectives.base import AlgorithmParams, Collective
from collectives.ring import analytic_time_ps, make_schedule, ring_order
from collsim.engine.core import Engine
from topologies.presets import preset_cluster
from topologies.routing import Router

def schedule_bytes(schedule):
    n, c = schedule.n, schedule.channels
    return 8 * (2 * n + c + n + n * c + 4 * n * c)   # order, position, direction, wake, last send, held x2

def event_figures(cluster, count, params):
    schedule = make_schedule(cluster, Collective.all_reduce, count, 4, params)
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, 4)
    t0 = time.process_time()
    makespan = engine.run(schedule)
    cpu = time.process_time() - t0
    analytic = analytic_time_ps(cluster, Collective.all_reduce, count, 4, params)
    print(f"  {cluster.chips:6d} chips C={params.channels} bidir={params.bidirectional:d}: "
          f"events {engine.events:>11,d}  link events {engine.link_events:>11,d}  cpu {cpu:7.2f} s  "
          f"{engine.link_events / max(cpu, 1e-9) / 1e6:6.2f} M link-events/s  peak in flight {engine.peak_in_flight:>8,d}  "
          f"schedule {schedule_bytes(schedule) / 1024:8.1f} KiB  event {makespan / 1e6:10.1f} us  analytic {analytic / 1e6:10.1f} us")

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    count = args.mib * 2**20 // 4
    print(f"1. event all-reduce, {args.mib} MiB float32 per chip, trn2")
    for nodes in args.nodes:
        for params in (AlgorithmParams(channels=1, bidirectional=False), AlgorithmParams(channels=2, bidirectional=True)):
            event_figures(preset_cluster("trn2", nodes), count, params)
    print("2. ring order and analytic model at ~1M chips")
    for cluster in (preset_cluster("trn2", 65_538), preset_cluster("trn3-ultraserver", 7_282)):
        t0 = time.perf_counter()
        order = ring_order(cluster)
        t1 = time.perf_counter()
        print(f"  {cluster.topology.name} {cluster.chips:,d} chips: ring_order {t1 - t0:.3f} s ({order.nbytes / 2**20:.0f} MiB)")
        for coll in Collective:
            for params in (AlgorithmParams(channels=1), AlgorithmParams(channels=2), AlgorithmParams(channels=8)):
                t0 = time.perf_counter()
                t = analytic_time_ps(cluster, coll, 2**28, 2, params)
                wall = time.perf_counter() - t0
                print(f"    analytic {coll.value:15s} C={params.channels}: {wall * 1e3:7.2f} ms -> {t / 1e6:12.1f} us")

if __name__ == "__main__":
    main()
