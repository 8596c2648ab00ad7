"""Figures from a sweep's combined table (``multirun/<sweep>/combined.csv``).

Every figure function takes the table's rows (:func:`load_rows`) and returns a
matplotlib :class:`~matplotlib.figure.Figure` (Agg canvas, no pyplot state), so
tests can read the plotted numbers back from the axes.  The numbers plotted
are the table's own columns, never recomputed:

* :func:`busbw_vs_size`  busbw (GB/s) vs message size, one line per algorithm,
  one panel per chosen chip count.
* :func:`scaling`        time (us) vs chips on log-log axes, one line per
  algorithm, one panel per chosen message size.
* :func:`best_algorithm_map`  the fastest algorithm for every (size, chips).
* :func:`efficiency`     busbw / per-chip scale-out and scale-up line rate
  (the ``scaleout_GBps_per_chip`` / ``scaleup_GBps_per_chip`` columns) vs chips.
* :func:`generations`    topologies side by side: best busbw vs size at a
  common chip count, and best time vs chips.

A "series" is an algorithm, plus any other config column the sweep varied
(fidelity, channels, ...), so sweeps over more than algorithms still plot
one line per distinct configuration.
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never a window

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from collsim.units import format_size  # noqa: E402

ALGORITHM_ORDER = ("ring", "tree", "hierarchical", "auto")
ALGORITHM_COLORS = {"ring": "#1f77b4", "tree": "#ff7f0e", "hierarchical": "#2ca02c", "auto": "#7f7f7f"}
TOPOLOGY_COLORS = ("#9467bd", "#1f77b4", "#17becf", "#d62728", "#8c564b", "#e377c2", "#bcbd22")
# Config columns that, when a sweep varies them, split an algorithm's line in two.
VARIANT_COLUMNS = ("collective", "fidelity", "dtype", "channels", "bidirectional", "chunks", "chunk_size",
                   "in_flight", "top")
_INT_COLUMNS = ("job", "nodes", "chips", "size_bytes", "count", "time_ps", "events", "ranks", "threads", "channels",
                "chunks", "in_flight")
_FLOAT_COLUMNS = ("time_us", "algbw_GBps", "busbw_GBps", "wall_s", "scaleup_GBps_per_chip", "scaleout_GBps_per_chip")
FIGSIZE = (11.0, 3.7)
DPI = 100

matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "collsim", "font.size": 9, "axes.titlesize": 10})
_NO_DATE = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}

# --- the table ----------------------------------------------------------------------


def load_rows(path: str | Path) -> list[dict]:
    """Rows of a combined table (a sweep directory or the CSV itself), numbers typed."""
    path = Path(path)
    if path.is_dir():
        path = path / "combined.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for col in _INT_COLUMNS:
            if row.get(col) not in (None, ""):
                row[col] = int(row[col])
        for col in _FLOAT_COLUMNS:
            if row.get(col) not in (None, ""):
                row[col] = float(row[col])
    return rows


def _algo_rank(name: str) -> int:
    return ALGORITHM_ORDER.index(name) if name in ALGORITHM_ORDER else len(ALGORITHM_ORDER)


def varying_columns(rows: Sequence[dict]) -> list[str]:
    return [c for c in VARIANT_COLUMNS if len({r.get(c) for r in rows}) > 1]


def series_label(row: dict, varying: Sequence[str]) -> str:
    extra = ", ".join(f"{c}={row.get(c)}" for c in varying)
    return f"{row['algorithm']} ({extra})" if extra else str(row["algorithm"])


def series(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Rows grouped by series label, labels in algorithm order."""
    varying = varying_columns(rows)
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[series_label(row, varying)].append(row)
    return dict(sorted(groups.items(), key=lambda kv: (_algo_rank(kv[1][0]["algorithm"]), kv[0])))


def topologies(rows: Sequence[dict]) -> list[str]:
    """Topology names in order of first appearance."""
    return list(dict.fromkeys(r["topology"] for r in rows))


def values(rows: Sequence[dict], column: str) -> list:
    return sorted({r[column] for r in rows})


def pick_spread(options: Sequence, count: int = 3) -> list:
    """Up to ``count`` of the sorted ``options``: first, last and the geometric middle ones."""
    options = sorted(options)
    if len(options) <= count:
        return list(options)
    picks = {round(i * (len(options) - 1) / (count - 1)) for i in range(count)}
    return [options[i] for i in sorted(picks)]


def nearest(options: Sequence[int], target: int) -> int:
    """The option closest to ``target`` on a log scale."""
    return min(options, key=lambda v: (abs(math.log(v) - math.log(target)), v))


def _color(label: str, rows: Sequence[dict]) -> str | None:
    return ALGORITHM_COLORS.get(rows[0]["algorithm"]) if "(" not in label else None


# --- axes helpers --------------------------------------------------------------------


def _size_axis(ax, sizes: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    step = max(1, math.ceil(len(sizes) / 7))
    ax.xaxis.set_major_locator(FixedLocator(list(sizes)[::step]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_size(int(round(v)))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("message size (bytes)")


def _chips_axis(ax, chips: Sequence[int]) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(list(chips)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{int(round(v)):,}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("chips")
    for label in ax.get_xticklabels():
        label.set_rotation(30)


def _log_time_axis(ax) -> None:
    # Decades only: minor log ticks cost more to draw than everything else in the figure.
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())


def _log_busbw_axis(ax) -> None:
    # busbw spans 4-5 decades from 1 KiB to 1 GiB: on a linear axis the small sizes vanish.
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))


def _new_figure(panels: int, title: str, sharey: bool = False) -> tuple[Figure, list]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, panels, sharey=sharey, squeeze=False)[0]
    fig.suptitle(title, fontweight="bold")
    return fig, list(axes)


def _context(rows: Sequence[dict]) -> str:
    """'all_reduce, analytic' style subtitle for what every row shares."""
    parts = [str(rows[0][c]) for c in ("collective", "fidelity") if len({r[c] for r in rows}) == 1]
    return ", ".join(parts)


# --- figures --------------------------------------------------------------------------


def busbw_vs_size(rows: Sequence[dict], topology: str, chips: Sequence[int] | None = None) -> Figure:
    """Bus bandwidth vs message size per algorithm; a panel per chip count."""
    rows = [r for r in rows if r["topology"] == topology]
    chips = list(chips) if chips else pick_spread(values(rows, "chips"))
    fig, axes = _new_figure(len(chips), f"{topology}: bus bandwidth vs message size ({_context(rows)})", sharey=True)
    for ax, n in zip(axes, chips):
        at = [r for r in rows if r["chips"] == n]
        for label, group in series(at).items():
            group = sorted(group, key=lambda r: r["size_bytes"])
            ax.plot([r["size_bytes"] for r in group], [r["busbw_GBps"] for r in group], marker="o", markersize=3,
                    label=label, color=_color(label, group))
        _size_axis(ax, values(at, "size_bytes"))
        _log_busbw_axis(ax)
        ax.set_title(f"{n:,} chips ({at[0]['nodes']:,} nodes)" if at else f"{n:,} chips")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("bus bandwidth (GB/s)")
    axes[0].legend(title="algorithm", loc="lower right")
    return fig


def scaling(rows: Sequence[dict], topology: str, sizes: Sequence[int] | None = None) -> Figure:
    """Collective time vs chips on log-log axes per algorithm; a panel per message size."""
    rows = [r for r in rows if r["topology"] == topology]
    available = values(rows, "size_bytes")
    sizes = [nearest(available, s) for s in sizes] if sizes else pick_spread(available)
    sizes = list(dict.fromkeys(sizes))
    fig, axes = _new_figure(len(sizes), f"{topology}: scaling, time vs chips ({_context(rows)})")
    chips = values(rows, "chips")
    for ax, size in zip(axes, sizes):
        at = [r for r in rows if r["size_bytes"] == size]
        for label, group in series(at).items():
            group = sorted(group, key=lambda r: r["chips"])
            ax.plot([r["chips"] for r in group], [r["time_us"] for r in group], marker="o", markersize=3,
                    label=label, color=_color(label, group))
        _log_time_axis(ax)
        _chips_axis(ax, chips)
        ax.set_title(f"{format_size(size)} per chip")
        ax.set_ylabel("time (us)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(title="algorithm", loc="upper left")
    return fig


def best_algorithm_grid(rows: Sequence[dict], topology: str) -> tuple[list[int], list[int], list[list[str]]]:
    """(sizes, chips, best[size][chips]): the series with the least time_ps at each point.

    Ties go to the first series in algorithm order (ring, tree, hierarchical),
    the order collsim's ``auto`` uses.  "" where the table has no row.
    """
    rows = [r for r in rows if r["topology"] == topology]
    sizes, chips = values(rows, "size_bytes"), values(rows, "chips")
    best: dict[tuple[int, int], tuple[int, str]] = {}
    for label, group in series(rows).items():  # algorithm order: the first minimum wins ties
        for r in group:
            point = (r["size_bytes"], r["chips"])
            if point not in best or r["time_ps"] < best[point][0]:
                best[point] = (r["time_ps"], label)
    grid = [[best.get((s, n), (0, ""))[1] for n in chips] for s in sizes]
    return sizes, chips, grid


def best_algorithm_map(rows: Sequence[dict], topology: str) -> Figure:
    """Which algorithm is fastest at each (message size, chips), as a colour map."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    sizes, chips, grid = best_algorithm_grid(rows, topology)
    labels = [label for label in series([r for r in rows if r["topology"] == topology]) if any(label in g for g in grid)]
    colors = [ALGORITHM_COLORS.get(label, TOPOLOGY_COLORS[i % len(TOPOLOGY_COLORS)]) for i, label in enumerate(labels)]
    index = np.array([[labels.index(x) if x else np.nan for x in line] for line in grid], dtype=float)
    fig = Figure(figsize=(7.5, 4.6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.pcolormesh(np.arange(len(chips) + 1), np.arange(len(sizes) + 1), index,
                  cmap=ListedColormap(colors), vmin=-0.5, vmax=len(labels) - 0.5, edgecolors="white", linewidth=0.5)
    ax.set_xticks(np.arange(len(chips)) + 0.5, [f"{n:,}" for n in chips], rotation=30)
    step = max(1, math.ceil(len(sizes) / 12))
    ax.set_yticks(np.arange(len(sizes))[::step] + 0.5, [format_size(s) for s in sizes][::step])
    ax.set_xlabel("chips")
    ax.set_ylabel("message size (bytes)")
    subset = [r for r in rows if r["topology"] == topology]
    fig.suptitle(f"{topology}: fastest algorithm per message size and chip count\n({_context(subset)})",
                 fontweight="bold")
    ax.legend(handles=[Patch(color=c, label=l) for c, l in zip(colors, labels)], title="fastest",
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def efficiency(rows: Sequence[dict], topology: str, size: int | None = None) -> Figure:
    """busbw as a percentage of the per-chip scale-out and scale-up line rate, vs chips.

    The scale-out panel leaves out single-node points: they do not use EFA.
    """
    rows = [r for r in rows if r["topology"] == topology]
    available = values(rows, "size_bytes")
    size = nearest(available, size) if size else available[-1]
    at = [r for r in rows if r["size_bytes"] == size]
    fig, axes = _new_figure(2, f"{topology}: efficiency at {format_size(size)} per chip ({_context(rows)})")
    panels = (("scaleout_GBps_per_chip", "scale-out (EFA)"), ("scaleup_GBps_per_chip", "scale-up (NeuronLink)"))
    chips = values(rows, "chips")
    for ax, (column, name) in zip(axes, panels):
        for label, group in series(at).items():
            if column == "scaleout_GBps_per_chip":  # a single node sends nothing over EFA
                group = [r for r in group if r["nodes"] > 1]
            group = sorted(group, key=lambda r: r["chips"])
            ax.plot([r["chips"] for r in group], [100.0 * r["busbw_GBps"] / r[column] for r in group], marker="o",
                    markersize=3, label=label, color=_color(label, group))
        ax.axhline(100.0, color="black", linewidth=0.8, linestyle="--")
        _chips_axis(ax, chips)
        per_chip = at[0][column] if at else float("nan")
        ax.set_title(f"busbw / {name} line rate per chip ({per_chip:g} GB/s)")
        ax.set_ylabel("efficiency (% of line rate)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(title="algorithm", loc="best")
    return fig


def best_per_point(rows: Sequence[dict]) -> dict[tuple[str, int, int], dict]:
    """(topology, chips, size) -> the row with the least time_ps (ties: algorithm order)."""
    best: dict[tuple[str, int, int], dict] = {}
    for r in sorted(rows, key=lambda r: _algo_rank(r["algorithm"])):
        point = (r["topology"], r["chips"], r["size_bytes"])
        if point not in best or r["time_ps"] < best[point]["time_ps"]:
            best[point] = r
    return best


def generations(rows: Sequence[dict], chips: int | None = None, size: int | None = None) -> Figure:
    """Topologies side by side (best algorithm at every point): busbw vs size, time vs chips."""
    names = topologies(rows)
    best = best_per_point(rows)
    common = sorted(set.intersection(*({r["chips"] for r in rows if r["topology"] == t} for t in names)))
    if not common:
        raise ValueError("the topologies share no chip count; sweep them with cluster.chips=...")
    chips = chips if chips in common else common[-1]
    available = values(rows, "size_bytes")
    size = nearest(available, size) if size else available[-1]
    fig, axes = _new_figure(2, f"Generations side by side: best algorithm at each point ({_context(rows)})")
    left, right = axes
    for i, name in enumerate(names):
        color = TOPOLOGY_COLORS[i % len(TOPOLOGY_COLORS)]
        pts = sorted((k[2], v["busbw_GBps"]) for k, v in best.items() if k[0] == name and k[1] == chips)
        left.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, color=color, label=name)
        pts = sorted((k[1], v["time_us"]) for k, v in best.items() if k[0] == name and k[2] == size)
        right.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, color=color, label=name)
    _size_axis(left, available)
    _log_busbw_axis(left)
    left.set_ylabel("bus bandwidth (GB/s)")
    left.set_title(f"bus bandwidth vs message size at {chips:,} chips")
    _log_time_axis(right)
    _chips_axis(right, values(rows, "chips"))
    right.set_ylabel("time (us)")
    right.set_title(f"time vs chips at {format_size(size)} per chip")
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    left.legend(title="topology", loc="lower right")
    return fig


# --- all of them -------------------------------------------------------------------------


def make_figures(rows: Sequence[dict], sizes: Sequence[int] | None = None) -> dict[str, Figure]:
    """Every figure the table supports, by file stem."""
    if not rows:
        raise ValueError("the combined table has no rows")
    figures: dict[str, Figure] = {}
    for topo in topologies(rows):
        figures[f"busbw_vs_size_{topo}"] = busbw_vs_size(rows, topo)
        if len(values([r for r in rows if r["topology"] == topo], "chips")) > 1:
            figures[f"scaling_{topo}"] = scaling(rows, topo, sizes)
            figures[f"efficiency_{topo}"] = efficiency(rows, topo, max(sizes) if sizes else None)
        figures[f"best_algorithm_{topo}"] = best_algorithm_map(rows, topo)
    if len(topologies(rows)) > 1:
        figures["generations"] = generations(rows, size=max(sizes) if sizes else None)
    return figures


def save(figures: dict[str, Figure], out_dir: str | Path, formats: Iterable[str] = ("png", "svg")) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, fig in figures.items():
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            if fmt == "png":
                _save_small_png(fig, path)
            else:
                # re-running must give identical files: no dates in the metadata, and (rcParams
                # svg.hashsalt above) SVG element ids hashed from the content, not a fresh uuid4
                fig.savefig(path, format=fmt, metadata=_NO_DATE.get(fmt))
            written.append(path)
    return written


def _save_small_png(fig: Figure, path: Path) -> None:
    """PNG with a 256-colour palette: line plots lose nothing visible and shrink 2-3x (README figures)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    with Image.open(buf) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
