"""Results files: one CSV row per size, written atomically (DESIGN.md section 8).

The whole file is rewritten after every completed size through a temporary
file in the same directory and ``os.replace``, so a reader (or a killed run)
only ever sees a complete file holding the sizes finished so far.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path


def write_csv_atomic(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts with identical keys) to ``path`` atomically."""
    path = Path(path)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
