"""Join the SMPI and collsim figures, and format them (Markdown tables, CSV rows).

Pure functions: the runner feeds them parsed rows and process measurements, tests feed them
hand-made ones.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.peers.collsim_run import CollsimRow
from benchmarks.peers.measure import Measured
from benchmarks.peers.smpi_platform import ring_allreduce_ps
from benchmarks.peers.smpi_run import SmpiRow


@dataclass(frozen=True)
class SizeComparison:
    """One (chips, size) row: both simulated times, the hand formula, both wall times."""

    chips: int
    nbytes: int
    lr_path: str  # what SMPI's lr did: ring | ring+remainder | reduce+bcast
    smpi_time_ps: int  # SMPI's seconds rounded to the picosecond
    collsim_time_ps: int
    formula_ps: int  # 2(n-1)(2L + S/(nB)): contention-free ring, free reduction
    diff_pct: float  # (collsim - SMPI) / SMPI x 100
    smpi_wall_s: float  # SMPI host time for this call (rank 0's view, see allreduce_timer.c)
    smpi_cpu_s: float  # SMPI process CPU over the same span
    collsim_wall_s: float  # collsim's own time for this size (results.csv wall_s)
    speedup: float  # smpi_wall_s / collsim_wall_s
    late: bool  # SMPI's common start was missed: row not comparable


@dataclass(frozen=True)
class ChipsSummary:
    """One row per chip count: the largest size, and both whole processes."""

    chips: int
    nbytes: int
    smpi_time_ps: int
    collsim_time_ps: int
    diff_pct: float
    smpi_call_wall_s: float
    smpi_call_cpu_s: float
    collsim_call_wall_s: float
    call_speedup: float
    smpi_process_wall_s: float
    smpi_process_cpu_s: float
    collsim_process_wall_s: float
    collsim_process_cpu_s: float
    process_speedup: float
    smpi_maxrss_mib: float
    smpi_private_mib: float
    collsim_maxrss_mib: float
    collsim_private_mib: float
    max_abs_diff_pct: float  # over this chip count's sizes where lr ran a pure ring


def compare_sizes(smpi: list[SmpiRow], collsim: list[CollsimRow], bandwidth_Bps: int,
                  latency_ps: int) -> list[SizeComparison]:
    """Join on (chips, bytes); every SMPI size must have its collsim twin."""
    by_size = {row.nbytes: row for row in collsim}
    rows = []
    for s in smpi:
        if s.nbytes not in by_size:
            raise ValueError(f"collsim has no result for {s.nbytes} bytes at {s.ranks} chips")
        c = by_size[s.nbytes]
        smpi_ps = round(s.time_s * 1e12)
        rows.append(
            SizeComparison(
                chips=s.ranks,
                nbytes=s.nbytes,
                lr_path=s.lr_path,
                smpi_time_ps=smpi_ps,
                collsim_time_ps=c.time_ps,
                formula_ps=ring_allreduce_ps(s.ranks, s.nbytes, bandwidth_Bps, latency_ps),
                diff_pct=_pct(c.time_ps - smpi_ps, smpi_ps),
                smpi_wall_s=s.wall_s,
                smpi_cpu_s=s.cpu_s,
                collsim_wall_s=c.wall_s,
                speedup=_ratio(s.wall_s, c.wall_s),
                late=s.late,
            )
        )
    return rows


def summarize(rows: list[SizeComparison], smpi_process: Measured, collsim_process: Measured) -> ChipsSummary:
    """Per chip count: the largest size's figures and the two processes' totals."""
    if not rows or len({r.chips for r in rows}) != 1:
        raise ValueError("summarize takes the rows of exactly one chip count")
    top = max(rows, key=lambda r: r.nbytes)
    ring_rows = [r for r in rows if r.lr_path == "ring" and not r.late]
    return ChipsSummary(
        chips=top.chips,
        nbytes=top.nbytes,
        smpi_time_ps=top.smpi_time_ps,
        collsim_time_ps=top.collsim_time_ps,
        diff_pct=top.diff_pct,
        smpi_call_wall_s=top.smpi_wall_s,
        smpi_call_cpu_s=top.smpi_cpu_s,
        collsim_call_wall_s=top.collsim_wall_s,
        call_speedup=top.speedup,
        smpi_process_wall_s=smpi_process.wall_s,
        smpi_process_cpu_s=smpi_process.cpu_s,
        collsim_process_wall_s=collsim_process.wall_s,
        collsim_process_cpu_s=collsim_process.cpu_s,
        process_speedup=_ratio(smpi_process.wall_s, collsim_process.wall_s),
        smpi_maxrss_mib=smpi_process.maxrss_kib / 1024,
        smpi_private_mib=smpi_process.peak_private_kib / 1024,
        collsim_maxrss_mib=collsim_process.maxrss_kib / 1024,
        collsim_private_mib=collsim_process.peak_private_kib / 1024,
        max_abs_diff_pct=max((abs(r.diff_pct) for r in ring_rows), default=float("nan")),
    )


def format_bytes(nbytes: int) -> str:
    for unit, mult in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= mult and nbytes % mult == 0:
            return f"{nbytes // mult} {unit}"
    return f"{nbytes} B"


SIZE_COLUMNS = ("chips", "size", "SMPI lr", "SMPI (us)", "collsim (us)", "formula (us)", "diff %",
                "SMPI wall / CPU (s)", "collsim wall (s)", "speedup")
ACCURACY_COLUMNS = ("chips", "size", "SMPI (us)", "collsim (us)", "diff %", "max |diff| % over ring sizes")
COST_COLUMNS = ("chips", "SMPI call wall / CPU (s)", "collsim call (s)", "call speedup",
                "SMPI process wall / CPU (s)", "collsim process wall / CPU (s)", "process speedup",
                "SMPI maxrss / private (MiB)", "collsim maxrss / private (MiB)")


def size_cells(row: SizeComparison) -> list[str]:
    return [
        str(row.chips),
        format_bytes(row.nbytes),
        row.lr_path + (" (late start)" if row.late else ""),
        f"{row.smpi_time_ps / 1e6:.4f}",
        f"{row.collsim_time_ps / 1e6:.4f}",
        f"{row.formula_ps / 1e6:.4f}",
        f"{row.diff_pct:+.5f}",
        f"{row.smpi_wall_s:.3f} / {row.smpi_cpu_s:.3f}",
        f"{row.collsim_wall_s:.4f}",
        format_ratio(row.speedup),
    ]


def accuracy_cells(row: ChipsSummary) -> list[str]:
    return [
        str(row.chips),
        format_bytes(row.nbytes),
        f"{row.smpi_time_ps / 1e6:.3f}",
        f"{row.collsim_time_ps / 1e6:.3f}",
        f"{row.diff_pct:+.5f}",
        f"{row.max_abs_diff_pct:.5f}",
    ]


def cost_cells(row: ChipsSummary) -> list[str]:
    return [
        str(row.chips),
        f"{row.smpi_call_wall_s:.2f} / {row.smpi_call_cpu_s:.2f}",
        f"{row.collsim_call_wall_s:.4f}",
        format_ratio(row.call_speedup),
        f"{row.smpi_process_wall_s:.1f} / {row.smpi_process_cpu_s:.1f}",
        f"{row.collsim_process_wall_s:.1f} / {row.collsim_process_cpu_s:.1f}",
        format_ratio(row.process_speedup),
        f"{row.smpi_maxrss_mib:,.0f} / {row.smpi_private_mib:,.0f}",
        f"{row.collsim_maxrss_mib:,.0f} / {row.collsim_private_mib:,.0f}",
    ]


def format_ratio(ratio: float) -> str:
    """Speedups: whole numbers from 10x up, two significant digits below (0.13x, 3.2x)."""
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def markdown_table(columns, rows_of_cells) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows_of_cells]
    return "\n".join(lines) + "\n"


def csv_text(records: list) -> str:
    """Dataclass records as CSV (header = field names), readable by pandas."""
    if not records:
        return ""
    out = io.StringIO()
    fields = list(asdict(records[0]))
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(asdict(record))
    return out.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Temporary file + rename: an interrupted run never leaves a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pct(delta: int, base: int) -> float:
    return 100.0 * delta / base if base else float("nan")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("inf")
