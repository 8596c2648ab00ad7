"""nccl-tests style tables (DESIGN.md section 8).

Column meanings follow nccl-tests: ``algbw = S / t`` and ``busbw = algbw x
factor`` (2(n-1)/n for all-reduce, (n-1)/n for reduce-scatter / all-gather), in
GB/s (1e9 B/s), or GiB/s with ``report.gib=true`` for comparison with
nccom-test, which prints GiB/s under a "GB/s" label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

GB = 1e9
GIB = float(2**30)


@dataclass(frozen=True)
class Row:
    """One size of one run, in the units the table prints."""

    size_bytes: int
    count: int
    type_name: str
    redop: str
    root: int
    time_ps: int
    wrong: int | None  # None: not checked (analytic / event fidelity)
    algorithm: str  # the algorithm that ran (differs from the request under auto)

    @property
    def time_us(self) -> float:
        return self.time_ps / 1e6

    def algbw(self, unit: float = GB) -> float:
        return 0.0 if self.time_ps == 0 else self.size_bytes / (self.time_ps * 1e-12) / unit

    def busbw(self, factor: float, unit: float = GB) -> float:
        return self.algbw(unit) * factor


def header_lines(title: dict[str, object]) -> list[str]:
    """'# key: value' lines naming topology, nodes, chips, algorithm, fidelity..."""
    return ["# collsim " + "  ".join(f"{k}: {v}" for k, v in title.items())]


def table_header(gib: bool, show_algorithm: bool) -> list[str]:
    bw = "(GiB/s)" if gib else "(GB/s)"
    algo = "  algorithm" if show_algorithm else ""
    return [
        "#",
        f"# {'size':>12} {'count':>12} {'type':>6} {'redop':>6} {'root':>6} {'time':>11} {'algbw':>8} {'busbw':>8} {'#wrong':>7}{algo}",
        f"# {'(B)':>12} {'(elements)':>12} {'':>6} {'':>6} {'':>6} {'(us)':>11} {bw:>8} {bw:>8} {'':>7}",
    ]


def format_row(row: Row, factor: float, gib: bool, show_algorithm: bool) -> str:
    unit = GIB if gib else GB
    wrong = "N/A" if row.wrong is None else str(row.wrong)
    algo = f"  {row.algorithm}" if show_algorithm else ""
    return (
        f"  {row.size_bytes:>12} {row.count:>12} {row.type_name:>6} {row.redop:>6} {row.root:>6} "
        f"{row.time_us:>11.2f} {row.algbw(unit):>8.2f} {row.busbw(factor, unit):>8.2f} {wrong:>7}{algo}"
    )


def footer_lines(rows: list[Row], factor: float, gib: bool) -> list[str]:
    unit = GIB if gib else GB
    avg = sum(r.busbw(factor, unit) for r in rows) / len(rows) if rows else 0.0
    name = "GiB/s" if gib else "GB/s"
    wrong = [r.wrong for r in rows if r.wrong is not None]
    lines = [f"# Out of bounds values : {sum(wrong)} {'FAILED' if sum(wrong) else 'OK'}"] if wrong else []
    return lines + [f"# Avg bus bandwidth    : {avg:.4f} {name}", "#"]


def print_lines(lines: list[str], out: TextIO) -> None:
    for line in lines:
        print(line, file=out)
    out.flush()
