#!/usr/bin/env python3
"""collsim vs SimGrid SMPI, side by side, on the same flat cluster (``make bench-peers``).

For each chip count N: one smpirun of benchmarks/peers/allreduce_timer.c (ring all-reduce,
``smpi/allreduce:lr``, pure max-min CM02 model, no simulated computation) over the sizes,
then one ``collsim`` command on the equivalent cluster (one switch level of N chips,
ring, one channel).  Prints both simulated times, their difference, both wall times and
peak memories, and the speedups; writes CSV + Markdown under benchmarks/results/.

Only one SMPI job runs at a time, and collsim runs after it, so neither competes with the
other for the CPU.

    python benchmarks/smpi_vs_collsim.py                 # N = 16, 64, 256, 1024
    python benchmarks/smpi_vs_collsim.py --quick         # N = 16, 64
    python benchmarks/smpi_vs_collsim.py --chips 16 --sizes-max 1MiB --op sum
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.peers import compare  # noqa: E402
from benchmarks.peers.collsim_run import run_collsim  # noqa: E402
from benchmarks.peers.smpi_platform import SMPI_OPTIONS  # noqa: E402
from benchmarks.peers.smpi_run import compile_timer, ensure_simgrid, run_smpi, simgrid_version  # noqa: E402
from collsim.errors import ConfigError  # noqa: E402
from collsim.units import parse_bandwidth, parse_size, parse_time  # noqa: E402

DEFAULT_CHIPS = (16, 64, 256, 1024)
QUICK_CHIPS = (16, 64)
RESULTS_DIR = REPO / "benchmarks" / "results"
STEM = "smpi_vs_collsim"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chips", type=int, nargs="+", help=f"chip (= SMPI host) counts; default {DEFAULT_CHIPS}")
    p.add_argument("--quick", action="store_true", help=f"chips {QUICK_CHIPS} only")
    p.add_argument("--sizes-min", default="1KiB", help="smallest all-reduce buffer (default 1KiB)")
    p.add_argument("--sizes-max", default="1GiB", help="largest all-reduce buffer (default 1GiB)")
    p.add_argument("--factor", type=int, default=32,
                   help="size step factor (default 32: 1 KiB, 32 KiB, 1 MiB, 32 MiB, 1 GiB; SMPI pays ~a minute "
                        "per size at 1,024 chips)")
    p.add_argument("--bandwidth", default="100GB/s", help="per-direction link bandwidth B (default 100GB/s)")
    p.add_argument("--latency", default="1us", help="per-link latency L (default 1us)")
    p.add_argument("--fidelity", default="event", choices=("event", "analytic"), help="collsim fidelity")
    p.add_argument("--op", default="noop", choices=("noop", "sum"),
                   help="SMPI reduction: noop (default: SMPI's simulation cost alone) or MPI_SUM (the host "
                        "also performs the real additions)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the CSV and Markdown go")
    p.add_argument("--work-dir", type=Path, help="keep platforms and run directories here (default: a temp dir)")
    args = p.parse_args(argv)
    chips = tuple(args.chips) if args.chips else (QUICK_CHIPS if args.quick else DEFAULT_CHIPS)
    if any(n < 2 for n in chips):
        p.error("--chips: every count must be >= 2")
    try:
        lo = parse_size(args.sizes_min, "--sizes-min")
        hi = parse_size(args.sizes_max, "--sizes-max")
        bandwidth_Bps = parse_bandwidth(args.bandwidth, "--bandwidth")
        latency_ps = parse_time(args.latency, "--latency")
    except ConfigError as exc:
        p.error(str(exc))
    if lo < 4 or lo % 4 or hi % 4 or hi < lo or args.factor < 2:
        p.error("sizes must be whole floats (multiples of 4 bytes), min <= max, factor >= 2")
    return args, chips, (lo, hi, args.factor), bandwidth_Bps, latency_ps


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_description(simgrid: str) -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, Linux {platform.release()}",
        "python": platform.python_version(),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "simgrid": simgrid,
        "collsim": rev.stdout.strip() or "unknown",
    }


def run_one(chips: int, sizes, bandwidth_Bps, latency_ps, args, smpirun, binary, work: Path):
    log(f"[{chips} chips] SMPI: smpirun -np {chips} ({args.op}) ...")
    smpi_rows, smpi_proc = run_smpi(smpirun, binary, chips, bandwidth_Bps, latency_ps, sizes, args.op,
                                    work / f"smpi-{chips}")
    log(f"[{chips} chips] SMPI done in {smpi_proc.wall_s:.1f} s; collsim fidelity={args.fidelity} ...")
    collsim_rows, collsim_proc = run_collsim(chips, bandwidth_Bps, latency_ps, sizes, args.fidelity,
                                             work / f"collsim-{chips}")
    log(f"[{chips} chips] collsim done in {collsim_proc.wall_s:.1f} s")
    rows = compare.compare_sizes(smpi_rows, collsim_rows, bandwidth_Bps, latency_ps)
    return rows, compare.summarize(rows, smpi_proc, collsim_proc)


def report_text(meta: dict, settings: dict, summaries, size_rows) -> str:
    fallback = sorted({(r.chips, r.nbytes) for r in size_rows if r.lr_path != "ring"})
    notes = [
        "- diff % = (collsim - SMPI) / SMPI; formula = 2(n-1)(2L + S/(nB)), the contention-free ring "
        "with free reduction.",
        "- SMPI wall = host seconds for that one MPI_Allreduce (rank 0's view), CPU = the SMPI process's CPU "
        "seconds over the same span (all ranks live in that one process); collsim wall = its own time "
        "for that size (results.csv wall_s; the first size also pays the lazy imports). Speedups are wall / wall. "
        "Process = the whole command (SMPI: all sizes + start-up and teardown of the shared buffers; "
        "collsim: all sizes + Python/Hydra start-up).",
        "- maxrss counts every mapping of SMPI's shared buffer (the same file pages mapped into every rank); "
        "private = peak RssAnon of the process tree, the memory really held.",
    ]
    if fallback:
        pairs = ", ".join(f"{c} chips / {compare.format_bytes(b)}" for c, b in fallback)
        notes.append(f"- SMPI's lr did not run a pure ring for: {pairs} (fewer elements than ranks: "
                     "reduce+bcast; or a remainder: ring + default allreduce of the rest). "
                     "Those rows are excluded from max |diff|.")
    head = [
        "# collsim vs SimGrid SMPI: ring all-reduce on a flat cluster",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}; Python {meta['python']}; load average at start {meta['load']}",
        f"- SimGrid: {meta['simgrid']}; collsim: git {meta['collsim']}",
        f"- cluster: {settings['cluster']}",
        f"- SMPI: `{settings['smpi']}`",
        f"- collsim: `{settings['collsim']}`",
        "",
        "## Simulated time, largest size",
        "",
        compare.markdown_table(compare.ACCURACY_COLUMNS, [compare.accuracy_cells(s) for s in summaries]),
        "## Cost of the simulation: largest size (call) and whole command (process)",
        "",
        compare.markdown_table(compare.COST_COLUMNS, [compare.cost_cells(s) for s in summaries]),
        "## Every size",
        "",
        compare.markdown_table(compare.SIZE_COLUMNS, [compare.size_cells(r) for r in size_rows]),
    ]
    return "\n".join(head + notes) + "\n"


def main(argv=None) -> int:
    args, chips_list, sizes, bandwidth_Bps, latency_ps = parse_args(argv)
    smpicc, smpirun = ensure_simgrid(log)
    meta = machine_description(simgrid_version(smpirun))
    settings = {
        "cluster": f"N hosts, private full-duplex link {args.bandwidth} per direction and {args.latency} per link "
                   "into a non-blocking crossbar (2 links per message); sizes "
                   f"{compare.format_bytes(sizes[0])}..{compare.format_bytes(sizes[1])} x{sizes[2]}, float32",
        "smpi": f"smpirun -no-privatize ... allreduce_timer {args.op} " + " ".join(SMPI_OPTIONS),
        "collsim": f"collsim topology=<1 switch level of N> cluster.nodes=1 algorithm=ring algorithm.channels=1 "
                   f"fidelity={args.fidelity} (efficiency 1, launch overhead 0, reduce 1e18 B/s)",
    }
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        work = args.work_dir or Path(tmp)
        binary = compile_timer(smpicc, work / "bin")
        summaries, size_rows = [], []
        for chips in chips_list:
            rows, summary = run_one(chips, sizes, bandwidth_Bps, latency_ps, args, smpirun, binary, work)
            size_rows += rows
            summaries.append(summary)
            # Rewritten after every chip count: an interrupted run keeps what it finished.
            text = report_text(meta, settings, summaries, size_rows)
            compare.write_atomic(args.out / f"{STEM}.md", text)
            compare.write_atomic(args.out / f"{STEM}_sizes.csv", compare.csv_text(size_rows))
            compare.write_atomic(args.out / f"{STEM}_summary.csv", compare.csv_text(summaries))
    print(text, end="")
    log(f"written: {args.out / (STEM + '.md')}, {STEM}_sizes.csv, {STEM}_summary.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
