"""collsim speed suite (``make bench``): wall time, peak memory, events and events/s per point.

For each preset (trn2: 16 chips per server; trn3-ultraserver: 144 chips per
UltraServer), each algorithm (ring, tree, hierarchical with its default
``top=auto`` -- the closed form picks ring or tree across nodes -- and hierarchical
``top=ring``) and each fidelity (analytic,
event), a 1 GiB all-reduce (fp32) is simulated at cluster sizes growing by 4x
from one node to about a million chips.  Every run is a fresh Python
subprocess (``--child``) so that its peak RSS (``resource.getrusage`` in the
child) is its own; each figure is the median of 3 runs (1 run when a point
takes over ~20 s).

Points that would take too long are not run: before each point the events
and wall time are extrapolated from the two previous points of the same
series (events ~ chips^k, k fitted, at least 1; wall = events / the events/s
just measured) and the point is skipped, with the reason printed, when the
estimate exceeds the per-point budget (``--budget-s``, default 120 s).  A
series stops at its first skipped point (bigger ones cost more).

Outputs (benchmarks/results/): bench.csv, bench.md (table + machine), bench.png
(wall time vs chips, log-log).  ``--quick`` runs a small subset (up to ~10k chips,
one run per point) into bench_quick.*.

    .venv/bin/python benchmarks/run_all.py [--quick] [--budget-s 120] [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SIZE_BYTES = 2**30          # 1 GiB all-reduce, fp32
ELEM_BYTES = 4
LONG_RUN_S = 20.0           # above this, one run instead of the median of several
MEMORY_BUDGET_BYTES = 16 * 2**30   # skip points whose extrapolated peak RSS exceeds this

# (preset, node counts): 4x steps from one node up to ~1M chips (trn2: 16 * 4^k chips;
# trn3: 144 * 4^k chips, then the 7,282 UltraServers = 1,048,608 chips of the issue).
PRESETS = {
    "trn2": [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536],
    "trn3-ultraserver": [1, 4, 16, 64, 256, 1024, 4096, 7282],
}
QUICK_PRESETS = {
    "trn2": [1, 4, 16, 64],
    "trn3-ultraserver": [1, 4, 16],
}
# series name -> (algorithm module, AlgorithmParams overrides)
ALGORITHMS = {
    "ring": ("ring", {}),
    "tree": ("tree", {}),
    "hierarchical": ("hierarchical", {}),                       # default top=auto (ring or tree across nodes)
    "hierarchical_top_ring": ("hierarchical", {"top": "ring"}),
}
FIDELITIES = ("analytic", "event")
FIELDS = ["preset", "nodes", "chips", "algorithm", "fidelity", "runs", "wall_s", "setup_s", "run_s",
          "run_cpu_s", "cpu_s", "peak_rss_mib", "events", "link_events", "events_per_s", "sim_time_us", "status"]


# --- child: one measured point ----------------------------------------------------------

def child(preset: str, nodes: int, series: str, fidelity: str) -> dict:
    """Simulate one point in this (fresh) process; return its figures."""
    import resource

    from collectives.base import AlgorithmParams, Collective
    from collectives.registry import algorithm_module
    from topologies.presets import preset_cluster

    name, overrides = ALGORITHMS[series]
    module = algorithm_module(name)
    params = AlgorithmParams(**overrides).validate()
    count = SIZE_BYTES // ELEM_BYTES
    wall0, cpu0 = time.perf_counter(), time.process_time()
    cluster = preset_cluster(preset, nodes)
    events = link_events = 0
    run_cpu_s = 0.0
    if fidelity == "analytic":
        sim_ps = module.analytic_time_ps(cluster, Collective.all_reduce, count, ELEM_BYTES, params)
        setup_s = run_s = time.perf_counter() - wall0
    else:
        from collsim.engine.core import Engine
        from topologies.routing import Router

        # what collectives.event.simulate does (no data plane), timed in two parts
        engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, ELEM_BYTES, None)
        schedule = module.make_schedule(cluster, Collective.all_reduce, count, ELEM_BYTES, params)
        setup_s = time.perf_counter() - wall0
        run0, run_cpu0 = time.perf_counter(), time.process_time()
        engine.run(schedule)
        run_s = time.perf_counter() - run0
        run_cpu_s = time.process_time() - run_cpu0
        sim_ps = cluster.topology.chip.launch_overhead_ps + engine.makespan_ps
        events, link_events = engine.events, engine.link_events
    return {
        "chips": cluster.chips,
        "wall_s": time.perf_counter() - wall0,
        "setup_s": setup_s,
        "run_s": run_s,
        "run_cpu_s": run_cpu_s,
        "cpu_s": time.process_time() - cpu0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "events": events,
        "link_events": link_events,
        "sim_time_us": sim_ps / 1e6,
    }


def run_child(preset: str, nodes: int, series: str, fidelity: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", preset, str(nodes), series, fidelity],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- parent: the sweep ------------------------------------------------------------------

def measure(preset: str, nodes: int, series: str, fidelity: str, repeats: int) -> dict:
    """Median over runs of every figure (one run when the first takes over LONG_RUN_S)."""
    runs = [run_child(preset, nodes, series, fidelity)]
    while len(runs) < repeats and runs[0]["wall_s"] <= LONG_RUN_S:
        runs.append(run_child(preset, nodes, series, fidelity))
    row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    row["chips"] = runs[0]["chips"]
    row["events"] = runs[0]["events"]             # deterministic: identical in every run
    row["link_events"] = runs[0]["link_events"]
    row["sim_time_us"] = runs[0]["sim_time_us"]
    row["runs"] = len(runs)
    # per CPU second of Engine.run: the machine is shared, CPU time is the stable figure
    row["events_per_s"] = row["events"] / row["run_cpu_s"] if row["events"] and row["run_cpu_s"] > 0 else 0.0
    return row


def estimate(history: list[dict], chips: int) -> tuple[float, float, float]:
    """Extrapolated (events, wall seconds, peak RSS bytes) of the next point of a series."""
    last = history[-1]
    k = 2.0                               # no fit yet: assume the worst of the shipped algorithms
    if len(history) >= 2 and history[-2]["events"] > 0 and last["events"] > 0:
        k = max(1.0, math.log(last["events"] / history[-2]["events"]) / math.log(last["chips"] / history[-2]["chips"]))
    ratio = chips / last["chips"]
    events = last["events"] * ratio**k
    # setup scales ~ chips; the run ~ events at the wall rate just measured, with a margin of 2
    # (the rate drops as the event heap outgrows the caches, and the machine is shared)
    rate = last["events"] / last["run_s"] if last["run_s"] > 0 else 0.0
    wall = last["setup_s"] * ratio + (2.0 * events / rate if rate > 0 else 0.0)
    rss = last["peak_rss_mib"] * 2**20 * ratio
    return events, wall, rss


def sweep(presets: dict, repeats: int, budget_s: float, only: set | None) -> list[dict]:
    rows = []
    for preset, node_steps in presets.items():
        for series in ALGORITHMS:
            if only and series not in only:
                continue
            for fidelity in FIDELITIES:
                history: list[dict] = []
                for nodes in node_steps:
                    base = {"preset": preset, "nodes": nodes, "algorithm": series, "fidelity": fidelity}
                    if history and fidelity == "event":
                        chips = history[-1]["chips"] * nodes // history[-1]["nodes"]
                        events, wall, rss = estimate(history, chips)
                        reason = ""
                        if wall > budget_s:
                            reason = f"estimated {events:.2e} events, {wall:,.0f} s > budget {budget_s:.0f} s"
                        elif rss > MEMORY_BUDGET_BYTES:
                            reason = f"estimated peak RSS {rss / 2**30:.1f} GiB > {MEMORY_BUDGET_BYTES / 2**30:.0f} GiB"
                        if reason:
                            print(f"  skip {preset:>16} x{nodes:<6} {chips:>9,} chips {series:<22} {fidelity:<8} "
                                  f"{reason}", flush=True)
                            rows.append({**base, "chips": chips, "status": "skipped: " + reason})
                            break
                    row = {**base, **measure(preset, nodes, series, fidelity, repeats), "status": "ok"}
                    history.append(row)
                    rows.append(row)
                    print(f"  {preset:>16} x{nodes:<6} {row['chips']:>9,} chips {series:<22} {fidelity:<8} "
                          f"wall {row['wall_s']:8.3f} s  rss {row['peak_rss_mib']:7.0f} MiB  "
                          f"events {row['events']:>13,}  {row['events_per_s'] / 1e6:6.2f} M ev/s  "
                          f"sim {row['sim_time_us']:12.1f} us  (runs {row['runs']})", flush=True)
    return rows


# --- machine description, outputs ------------------------------------------------------

def machine() -> dict:
    import Cython
    import numpy

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": f"{mem / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "cython": Cython.__version__,
        "numpy": numpy.__version__,
    }


def fmt(row: dict, key: str) -> str:
    value = row.get(key, "")
    if value == "" or value is None:
        return ""
    if key in ("wall_s", "setup_s", "run_s", "cpu_s"):
        return f"{value:.3f}"
    if key == "peak_rss_mib":
        return f"{value:,.0f}"
    if key in ("events", "link_events", "chips"):
        return f"{int(value):,}"
    if key == "events_per_s":
        return f"{value / 1e6:.2f} M" if value else ""
    if key == "sim_time_us":
        return f"{value:,.1f}"
    return str(value)


def write_outputs(rows: list[dict], info: dict, stem: str, title: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / f".{stem}.csv.tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, RESULTS / f"{stem}.csv")
    cols = ["preset", "chips", "algorithm", "fidelity", "wall_s", "run_s", "peak_rss_mib", "events",
            "events_per_s", "sim_time_us", "runs", "status"]
    heads = ["preset", "chips", "algorithm", "fidelity", "wall (s)", "engine run (s)", "peak RSS (MiB)",
             "events", "events/CPU s", "simulated (us)", "runs", "status"]
    lines = [f"# {title}", "", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             "1 GiB fp32 all-reduce; wall = the whole simulation in a fresh process (cluster, router, "
             "schedule, run; not the interpreter start-up); engine run = Engine.run only; events/s = "
             "events / CPU seconds of engine run (the machine is shared); peak RSS = getrusage(RUSAGE_SELF).ru_maxrss of that process (includes "
             "~33 MiB of Python + numpy). Median of `runs` runs.", "",
             "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row, c) for c in cols) + " |")
    tmp = RESULTS / f".{stem}.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, RESULTS / f"{stem}.md")
    plot(rows, RESULTS / f"{stem}.png", title)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, preset in zip(axes, PRESETS):
        for series in ALGORITHMS:
            for fidelity, style in (("analytic", "--"), ("event", "-")):
                pts = [(r["chips"], r["wall_s"]) for r in rows if r["preset"] == preset and r["algorithm"] == series
                       and r["fidelity"] == fidelity and r.get("status") == "ok"]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, style, marker="o", ms=3, label=f"{series} ({fidelity})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(preset)
        ax.set_xlabel("chips")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("wall time (s), 1 GiB all-reduce")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name("." + path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        preset, nodes, series, fidelity = sys.argv[2:6]
        print(json.dumps(child(preset, int(nodes), series, fidelity)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subset, one run per point")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip points estimated to take longer (default 120 s; 15 s with --quick)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per point (median)")
    parser.add_argument("--only", nargs="*", choices=list(ALGORITHMS), help="restrict to these series")
    args = parser.parse_args()
    info = machine()
    print("collsim bench: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    presets = QUICK_PRESETS if args.quick else PRESETS
    repeats = 1 if args.quick else args.repeats
    budget_s = args.budget_s if args.budget_s is not None else (15.0 if args.quick else 120.0)
    rows = sweep(presets, repeats, budget_s, set(args.only) if args.only else None)
    stem = "bench_quick" if args.quick else "bench"
    write_outputs(rows, info, stem, "collsim speed, 1 GiB all-reduce" + (" (quick subset)" if args.quick else ""))
    print(f"wrote {RESULTS / stem}.csv, .md, .png")


if __name__ == "__main__":
    main()
