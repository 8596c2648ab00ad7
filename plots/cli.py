"""``collsim-plot SWEEP_DIR``: every figure of a sweep, as PNG and SVG.

    collsim -m experiment=demo
    collsim-plot multirun/demo                      # -> multirun/demo/figures/
    collsim-plot multirun/demo --out plots/figures --sizes 1MiB,1GiB

Bad input (no such directory, no combined table, a bad size) ends with one
line on stderr and exit code 2, like ``collsim`` itself.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collsim.errors import ConfigError
from collsim.units import parse_size

EXIT_USAGE = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="collsim-plot", description="Plot a collsim sweep's combined table.")
    parser.add_argument("sweep_dir", help="a sweep directory holding combined.csv (e.g. multirun/demo), or the CSV")
    parser.add_argument("--out", help="where to write the figures (default: SWEEP_DIR/figures)")
    parser.add_argument("--sizes", help="message sizes for the scaling plot, e.g. 1MiB,256MiB,1GiB "
                                        "(default: smallest, middle, largest in the table)")
    parser.add_argument("--format", default="png,svg", help="comma-separated image formats (default: png,svg)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from plots.figures import load_rows, make_figures, save

    args = parse_args(argv)
    source = Path(args.sweep_dir)
    table = source if source.suffix == ".csv" else source / "combined.csv"
    if not table.is_file():
        _fail(f"{table} not found: run the sweep first (collsim -m experiment=demo writes multirun/demo/combined.csv)")
    try:
        sizes = [parse_size(s.strip(), "--sizes") for s in args.sizes.split(",")] if args.sizes else None
    except ConfigError as err:
        _fail(str(err))
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        _fail(f"--format: allowed png, svg, pdf; got {args.format!r}")
    out = Path(args.out) if args.out else (table.parent / "figures")
    try:
        rows = load_rows(table)
        figures = make_figures(rows, sizes)
    except (KeyError, ValueError) as err:
        _fail(f"{table}: not a collsim combined table ({type(err).__name__}: {err})")
    written = save(figures, out, formats)
    print(f"# collsim-plot: {len(figures)} figures ({', '.join(formats)}) from {len(rows)} rows -> {out}")
    for path in written:
        print(path)


def _fail(message: str) -> None:
    print(f"collsim-plot: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
