"""Ring analytic model: accuracy against the event engine and its own speed (prints figures; asserts nothing).

1. Accuracy: for each ``--preset NAME:NODES``, every collective and size, the event
   time, the analytic time and their ratio (default ring: 2 bidirectional channels,
   or ``--channels``).  Heterogeneous rings use the longest-path model of
   collectives/ring.py; homogeneous ones the symmetric ring.
2. Speed: analytic wall time at about a million chips (trn2, trn2-ultraserver and
   trn3-ultraserver presets), all-reduce of 256 MiB.

Usage: .venv/bin/python benchmarks/ring_analytic.py [--preset trn2:16 trn1:4] [--channels 2] [--unidirectional]
"""
import argparse
import time

from collectives.base import AlgorithmParams, Collective
from collectives.event import simulate
from collectives.ring import analytic_time_ps
from topologies.presets import preset_cluster

SIZES = [64 << 10, 1 << 20, 16 << 20, 256 << 20]


def accuracy(name: str, nodes: int, params: AlgorithmParams) -> None:
    cluster = preset_cluster(name, nodes)
    print(f"{name} x {nodes} nodes ({cluster.chips} chips), channels {params.channels}, "
          f"bidirectional {params.bidirectional}")
    worst = 1.0
    for coll in Collective:
        for size in SIZES:
            count = size // 4
            t0 = time.perf_counter()
            ev = simulate(cluster, coll, "ring", count, "float32", 4, params, False).time_ps
            t1 = time.perf_counter()
            an = analytic_time_ps(cluster, coll, count, 4, params)
            t2 = time.perf_counter()
            worst = max(worst, an / ev, ev / an)
            print(f"  {coll.value:15s} {size >> 10:>8d} KiB  event {ev / 1e6:11.2f} us ({t1 - t0:6.2f} s)  "
                  f"analytic {an / 1e6:11.2f} us ({(t2 - t1) * 1e3:6.2f} ms)  analytic/event {an / ev:.4f}")
    print(f"  worst ratio {worst:.4f}")


def speed() -> None:
    params = AlgorithmParams()
    for name, nodes in (("trn2", 65_538), ("trn2-ultraserver", 16_384), ("trn3-ultraserver", 7_282)):
        cluster = preset_cluster(name, nodes)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            an = analytic_time_ps(cluster, Collective.all_reduce, (256 << 20) // 4, 4, params)
            best = min(best, time.perf_counter() - t0)
        print(f"  {name:18s} {cluster.chips:>9,d} chips: analytic all-reduce 256 MiB = {an / 1e9:9.3f} ms, "
              f"computed in {best * 1e3:6.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", nargs="+", default=["trn2:4", "trn2:16", "trn1:4", "trn2-ultraserver:2"])
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--unidirectional", action="store_true")
    args = parser.parse_args()
    params = AlgorithmParams(channels=args.channels, bidirectional=not args.unidirectional)
    for item in args.preset:
        name, nodes = item.split(":")
        accuracy(name, int(nodes), params)
    print("analytic speed at about a million chips")
    speed()


if __name__ == "__main__":
    main()
