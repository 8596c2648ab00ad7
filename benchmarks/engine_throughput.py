"""Event-engine speed and memory (prints figures; asserts nothing).

1. Throughput: a ring all-reduce's message pattern on 1,024 chips (64 trn2
   nodes of a 4x4 torus, one 200 Gbps NIC per chip), driven through
   ScriptedSchedule: message (step, r) goes from chip r to chip r+1 when message
   (step-1, r-1) has arrived at chip r (and, in the reduce-scatter half, been
   reduced there).  One channel, 2(n-1) steps, 4 MiB per chip.  Reports events,
   link events, wall and CPU seconds of Engine.run and link-events per CPU
   second (target: >= 5M/s on one core; CPU time because the machine is shared).
2. Footprint at scale: Router + Engine for a 1,048,608-chip trn3-ultraserver cluster
   (144-chip UltraServers: sled switch x rack switch x direct pair, one NIC per
   chip), the engine's own arrays and the process RSS.

Usage: .venv/bin/python benchmarks/engine_throughput.py [--chips 1024] [--steps N]
"""
import argparse
import resource
import time

import numpy as np

from collsim.engine.core import REDUCE, Engine, ScriptedSchedule
from topologies.presets import preset_cluster
from topologies.routing import Router

def ring_allreduce_script(n, steps, chunk_elems):
    """Arrays for ScriptedSchedule: message index = step * n + r."""
    step = np.repeat(np.arange(steps, dtype=np.int64), n)
    r = np.tile(np.arange(n, dtype=np.int64), steps)
    src = r
    dst = (r + 1) % n
    after = np.where(step > 0, (step - 1) * n + (r - 1) % n, -1)
    reduce_nbytes = np.where(step < n - 1, chunk_elems * 4, 0)   # reduce-scatter half reduces
    count = np.full(n * steps, chunk_elems, dtype=np.int64)
    op = np.where(step < n - 1, REDUCE, 0).astype(np.int32)
    return src, dst, count, after, reduce_nbytes, op

def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def rss_mb():
    """Current resident set size (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

def throughput(chips, steps):
    cluster = preset_cluster("trn2", chips // 16)
    n = cluster.chips
    steps = steps or 2 * (n - 1)
    chunk_elems = (4 << 20) // 4 // n
    src, dst, count, after, reduce_nbytes, op = ring_allreduce_script(n, steps, chunk_elems)
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, 4)
    schedule = ScriptedSchedule(src, dst, count, after=after, reduce_nbytes=reduce_nbytes, op=op)
    t0, c0 = time.perf_counter(), time.process_time()
    makespan = engine.run(schedule)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"ring all-reduce pattern, {n} chips, {steps} steps, {n * steps:,} messages of {chunk_elems * 4} B")
    print(f"  makespan          {makespan / 1e6:,.3f} us (simulated)")
    print(f"  events            {engine.events:,}  (link events {engine.link_events:,})")
    print(f"  run               {wall:.3f} s wall, {cpu:.3f} s CPU")
    print(f"  link-events/s     {engine.link_events / cpu / 1e6:.2f} M per CPU second "
          f"(all events {engine.events / cpu / 1e6:.2f} M/s; wall: {engine.link_events / wall / 1e6:.2f} M/s)")
    print(f"  peak in flight    {engine.peak_in_flight:,} messages")
    print(f"  peak RSS          {peak_rss_mb():,.0f} MB (includes the scripted arrays)")

def footprint():
    rss0 = rss_mb()
    cluster = preset_cluster("trn3-ultraserver", 7282)
    router = Router(cluster)
    engine = Engine(router, cluster.topology.chip.reduce_Bps, 2)
    engine.run(ScriptedSchedule([0], [1], [1]))        # touches (zeroes) every array once
    print(f"trn3-ultraserver cluster: {router.num_chips:,} chips, {router.num_links:,} directed links")
    print(f"  engine arrays     {engine.state_bytes() / 2**20:,.1f} MiB; RSS grew {rss_mb() - rss0:,.1f} MiB "
          f"for Router + Engine")
    rng = np.random.default_rng(0)
    m = 200_000
    src = rng.integers(0, router.num_chips, m)
    dst = rng.integers(0, router.num_chips, m)
    schedule = ScriptedSchedule(src, dst, np.full(m, 1024))
    c0 = time.process_time()
    engine.run(schedule)
    cpu = time.process_time() - c0
    print(f"  {m:,} messages between random chips at t=0 (cache-hostile): {engine.link_events:,} link events, "
          f"{cpu:.3f} s CPU ({engine.link_events / cpu / 1e6:.2f} M/s)")
    print(f"  RSS now {rss_mb():,.0f} MiB")

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=0, help="ring steps (default 2(n-1))")
    args = parser.parse_args()
    footprint()
    throughput(args.chips, args.steps)

if __name__ == "__main__":
    main()
