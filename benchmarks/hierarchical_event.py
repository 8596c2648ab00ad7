"""Speed of the hierarchical event schedule on the shipped presets (prints figures; asserts nothing).

For each case: simulated event time next to the analytic formula, events processed, CPU seconds of
``Engine.run``, events per CPU second, the schedule's and engine's own state, and peak RSS.

    .venv/bin/python benchmarks/hierarchical_event.py            # ~1 minute on one core
    .venv/bin/python benchmarks/hierarchical_event.py --large    # adds a 73,728-chip Trn3 case
"""
from __future__ import annotations

import argparse
import resource
import time

from collectives import hierarchical
from collectives.base import AlgorithmParams, Collective
from collsim.engine.core import Engine
from topologies.presets import preset_cluster
from topologies.routing import Router

MiB = 2**20
CASES = [
    # preset, nodes, collective, bytes, top
    ("trn2", 64, Collective.all_reduce, 64 * MiB, "ring"),
    ("trn2", 64, Collective.reduce_scatter, 64 * MiB, "ring"),
    ("trn2-ultraserver", 16, Collective.all_reduce, 256 * MiB, "ring"),
    ("trn2", 1024, Collective.all_reduce, 64 * MiB, "tree"),
    ("trn3-ultraserver", 64, Collective.all_reduce, 64 * MiB, "tree"),
]
LARGE = [("trn3-ultraserver", 512, Collective.all_reduce, 16 * MiB, "tree")]


def run_case(preset: str, nodes: int, collective: Collective, nbytes: int, top: str) -> None:
    cluster = preset_cluster(preset, nodes)
    params = AlgorithmParams(top=top)  # defaults otherwise: 2 channels, 4 chunks, 4 in flight
    count = nbytes // 4
    schedule = hierarchical.make_schedule(cluster, collective, count, 4, params)
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, 4, None)
    cpu0 = time.process_time()
    makespan_ps = engine.run(schedule)
    cpu = time.process_time() - cpu0
    analytic_ps = hierarchical.analytic_time_ps(cluster, collective, count, 4, params)
    analytic_ps -= cluster.topology.chip.launch_overhead_ps
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{preset:>17} x{nodes:<5} {cluster.chips:>7} chips  {collective.value:<14} {nbytes // MiB:>4} MiB "
          f"top={top:<4}  event {makespan_ps / 1e6:9.1f} us  analytic {analytic_ps / 1e6:9.1f} us "
          f"({makespan_ps / analytic_ps:5.3f})  events {engine.events / 1e6:7.2f} M  cpu {cpu:6.2f} s  "
          f"{engine.events / cpu / 1e6:5.2f} M ev/s  state {schedule.state_bytes() / 1e6:6.1f} + "
          f"{engine.state_bytes() / 1e6:6.1f} MB  peak RSS {rss_mb:6.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="add a 73,728-chip Trn3 case")
    args = parser.parse_args()
    for case in CASES + (LARGE if args.large else []):
        run_case(*case)


if __name__ == "__main__":
    main()
