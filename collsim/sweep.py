"""Sweeps (``collsim -m ...``): job keys, resume, the combined table, progress.

How a sweep hangs together (the Hydra side is configured in conf/config.yaml):

* Every job's output directory is named after its **job key**: a hash of the
  job's full resolved config (everything but the ``hydra`` and ``sweep``
  nodes, which do not change results) and of collsim's source code.  ``hydra.sweep.subdir`` resolves it
  with the ``collsim_job_key`` resolver registered here, and
  ``hydra.sweep.dir`` is ``multirun/${sweep.name}``: the same point of the
  same sweep always lands in the same directory.
* :func:`run_sweep_job` is the task function of a multirun job.  It writes
  ``results.csv`` (through :func:`collsim.runner.run`, atomically after every
  size) and then ``done.json``, the completion marker holding the key.  A job
  whose directory already holds a ``done.json`` with its key and a complete
  results file is skipped (``sweep.resume=false`` forces a rerun), so a sweep
  killed half-way loses nothing that had finished.
* :class:`SweepCallback` (a Hydra callback) notes every finished job and, when
  the sweep ends, writes ONE combined table of all the sweep's jobs to the
  sweep directory: ``combined.csv`` (plus ``combined.parquet`` when pyarrow is
  importable), both atomically, in job order.  Under MPI the notes of all
  ranks are gathered and rank 0 alone writes and prints.
* :class:`Progress` prints "jobs done / total, sizes, elapsed, ETA" lines on
  launch rank 0 when stdout is a terminal (``sweep.progress`` forces it on or
  off).  With the basic launcher the callback drives it; the MPI launcher,
  which alone sees every rank's completions, drives it itself.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, TextIO

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from collsim import jobcomm

DONE_FILE = "done.json"
COMBINED_STEM = "combined"
KEY_CHARS = 16  # 64 bits of sha256: collisions are not a concern for sweep sizes
MPI_LAUNCHER_TARGET = "hydra_plugins.collsim_mpi_launcher.mpi_launcher.MpiLauncher"

# Columns the combined table puts in front of / after each job's results.csv columns.
LEAD_COLUMNS = ("job", "job_key", "overrides")
TAIL_COLUMNS = ("scaleup_GBps_per_chip", "scaleout_GBps_per_chip")

# --- job key ----------------------------------------------------------------------

_NOT_RESULTS = ("hydra", "sweep")  # config nodes that do not change a job's results


_CODE_PACKAGES = ("collsim", "collectives", "topologies")
CODE_FINGERPRINT_ENV = "COLLSIM_CODE_FINGERPRINT"
_CODE_SUFFIXES = (".py", ".pyx", ".pxd", ".h")


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """Hash of the simulator's source (the packages that compute results).

    Part of every job key: results computed by other code are never resumed
    into a table (``make demo`` after editing an algorithm recomputes).  The
    environment variable ``COLLSIM_CODE_FINGERPRINT`` replaces it with a fixed
    string, to keep resuming across edits known not to change results (and
    so tests do not depend on others editing the tree meanwhile).
    """
    pinned = os.environ.get(CODE_FINGERPRINT_ENV, "")
    if pinned:
        return pinned
    digest = hashlib.sha256()
    for package in _CODE_PACKAGES:
        root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
        files = sorted(p for p in root.rglob("*") if p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts)
        for path in files:
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def job_key(cfg: DictConfig) -> str:
    """Hash of the job's full resolved config (without ``hydra`` / ``sweep``) and of the code."""
    keep = [k for k in cfg.keys() if k not in _NOT_RESULTS]
    data = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keep), resolve=True, enum_to_str=True)
    text = json.dumps({"config": data, "code": code_fingerprint()}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


def _key_resolver(*, _root_: DictConfig) -> str:
    """``${collsim_job_key:}``: the job key of the config being resolved (for hydra.sweep.subdir)."""
    return job_key(_root_)


OmegaConf.register_new_resolver("collsim_job_key", _key_resolver, replace=True)


def register_mpi_launcher() -> None:
    """Make ``hydra/launcher=mpi`` available however collsim was installed.

    Hydra finds launchers by scanning the ``hydra_plugins`` namespace package;
    a setuptools editable install (``pip install -e .``, what ``make`` does)
    hides that namespace behind an import hook the scan cannot walk.  Importing
    and registering the plugin directly works in every install mode.
    """
    from hydra.core.plugins import Plugins
    from hydra_plugins.collsim_mpi_launcher import config as _config  # noqa: F401  (stores hydra/launcher/mpi)
    from hydra_plugins.collsim_mpi_launcher.mpi_launcher import MpiLauncher

    Plugins.instance().register(MpiLauncher)


# --- one job ----------------------------------------------------------------------


def chip_bandwidths_Bps(topology) -> tuple[int, int]:
    """(scale-up, scale-out) line rate one chip can send at, bytes/s per direction.

    Scale-up: the sum over levels of the chip's out-links (a switch level
    counts its one uplink; ring/torus/direct every port).  Scale-out: the
    node's NIC bandwidth shared by its chips.  These are the denominators of
    the efficiency plot; line rate, not times efficiency.
    """
    scale_up = 0
    for level in topology.levels:
        ports = min(level.ports, 1) if level.fabric.value == "switch" else level.ports
        scale_up += ports * level.link.bandwidth_Bps
    so = topology.scale_out
    scale_out = so.nics_per_node * so.nic.bandwidth_Bps // topology.chips_per_node
    return scale_up, scale_out


def read_done(job_dir: Path, key: str) -> dict | None:
    """The job's completion marker if it matches ``key`` and its results file is complete."""
    marker = Path(job_dir) / DONE_FILE
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(done, dict) or done.get("key") != key:
        return None
    results = Path(job_dir) / str(done.get("results_file", ""))
    try:
        with open(results, newline="") as handle:
            rows = sum(1 for _ in csv.reader(handle)) - 1
    except OSError:
        return None
    return done if rows == done.get("rows") else None


def run_sweep_job(cfg: DictConfig, job_dir: Path, overrides: Iterable[str] = (), out: TextIO | None = None) -> dict:
    """Task function of one multirun job: resume or run, then mark complete.

    Returns the note the :class:`SweepCallback` collects: the job directory,
    the key, and whether it was resumed.  On a multi-rank job communicator the
    leader (rank 0) decides about resume for the whole group, runs with files,
    and writes the marker; the other members run the same job quietly.
    """
    from collsim.runner import run
    from collsim.results import write_text_atomic
    from topologies.loader import load_topology

    out = sys.stdout if out is None else out
    job_dir = Path(job_dir)
    key = job_key(cfg)
    comm = jobcomm.job_comm() if jobcomm.has_job_comm() else None
    leader = comm is None or comm.Get_rank() == 0
    done = read_done(job_dir, key) if (leader and cfg.sweep.resume) else None
    if comm is not None and comm.Get_size() > 1:
        done = comm.bcast(done, root=0)  # one decision per job: members must not run alone
    # The job's point in the sweep; sweep.* settings (resume, progress) are not part of it.
    overrides = [str(o) for o in overrides if not str(o).lstrip("+~").startswith("sweep.")]
    note = {"job_dir": str(job_dir), "key": key, "resumed": done is not None, "overrides": overrides}
    if done is not None:
        if leader:
            print(f"# collsim: {job_dir}: complete results found (job key {key}), not run again", file=out)
            out.flush()
        return dict(note, rows=done["rows"])
    ranks = comm.Get_size() if comm is not None else 1
    if not leader:
        rows = run(cfg, None, out=io.StringIO(), ranks=ranks)
        return dict(note, rows=len(rows))
    rows = run(cfg, job_dir, out=out, ranks=ranks)
    topo_cfg = OmegaConf.to_container(cfg.topology, resolve=True, enum_to_str=True)
    scale_up, scale_out = chip_bandwidths_Bps(load_topology(topo_cfg))
    marker = {
        "key": key,
        "results_file": str(cfg.report.results_file),
        "rows": len(rows),
        "overrides": overrides,
        "scaleup_Bps_per_chip": scale_up,
        "scaleout_Bps_per_chip": scale_out,
    }
    write_text_atomic(job_dir / DONE_FILE, json.dumps(marker, indent=1) + "\n")
    return dict(note, rows=len(rows))


# --- the combined table -------------------------------------------------------------


def combined_rows(jobs: Iterable[tuple[int, str, list[str]]]) -> list[dict]:
    """Rows of every job's results file, in job order, with the job's identity in front.

    ``jobs`` holds (job number, job directory, the job's overrides in this
    sweep).  Raises :class:`ValueError` naming the directory if a job has no
    complete results.
    """
    rows: list[dict] = []
    for num, job_dir, overrides in sorted(jobs):
        marker = Path(job_dir) / DONE_FILE
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"job {num}: no completion marker in {job_dir} ({err})") from None
        with open(Path(job_dir) / done["results_file"], newline="") as handle:
            job_rows = list(csv.DictReader(handle))
        if len(job_rows) != done["rows"]:
            raise ValueError(f"job {num}: {job_dir} holds {len(job_rows)} result rows, expected {done['rows']}")
        lead = {"job": num, "job_key": done["key"], "overrides": " ".join(overrides)}
        tail = {
            "scaleup_GBps_per_chip": done["scaleup_Bps_per_chip"] / 1e9,
            "scaleout_GBps_per_chip": done["scaleout_Bps_per_chip"] / 1e9,
        }
        rows.extend({**lead, **row, **tail} for row in job_rows)
    return rows


def write_combined(sweep_dir: Path, rows: list[dict]) -> list[Path]:
    """Write ``combined.csv`` (and ``combined.parquet`` if pyarrow is importable) atomically."""
    from collsim.results import write_csv_atomic

    sweep_dir = Path(sweep_dir)
    csv_path = sweep_dir / f"{COMBINED_STEM}.csv"
    write_csv_atomic(csv_path, rows)
    written = [csv_path]
    try:
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq
    except ImportError:
        return written
    # Read back the CSV just written so the Parquet columns get the same types pandas infers.
    table = pa_csv.read_csv(csv_path)
    parquet_path = sweep_dir / f"{COMBINED_STEM}.parquet"
    fd, tmp = tempfile.mkstemp(prefix=f".{parquet_path.name}.", suffix=".tmp", dir=sweep_dir)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, parquet_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    written.append(parquet_path)
    return written


# --- progress -----------------------------------------------------------------------


def count_jobs(config: DictConfig) -> int | None:
    """Jobs Hydra's basic sweeper will launch for this multirun config (None if unknown)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = sweeper.get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    try:
        overrides = OverridesParser.create().parse_overrides(args)
        choices = {}
        for override in overrides:
            if override.is_sweep_override():
                choices[override.get_key_element()] = len(list(override.sweep_string_iterator()))
            else:
                choices[override.get_key_element()] = 1
    except Exception:  # glob sweeps need the config loader: no total, progress still counts
        return None
    return math.prod(choices.values())


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """'sweep: done/total jobs, sizes, elapsed, ETA' lines for a person watching a terminal."""

    def __init__(self, total: int | None, stream: TextIO | None = None, enabled: bool | None = None,
                 clock=time.monotonic):
        self.total = total
        self.stream = sys.stdout if stream is None else stream
        if enabled is None:
            enabled = jobcomm.launch_rank() == 0 and _isatty(self.stream)
        self.enabled = bool(enabled)
        self._clock = clock
        self._start = clock()
        self.jobs = 0
        self.sizes = 0

    def line(self) -> str:
        elapsed = self._clock() - self._start
        total = "?" if self.total is None else str(self.total)
        text = f"# sweep: {self.jobs}/{total} jobs, {self.sizes} sizes, elapsed {_clock(elapsed)}"
        if self.total and self.jobs:
            remaining = elapsed / self.jobs * max(self.total - self.jobs, 0)
            text += f", ETA {_clock(remaining)}"
        return text

    def update(self, jobs: int, sizes: int) -> None:
        """Set the totals done so far and print a line if they changed."""
        if (jobs, sizes) == (self.jobs, self.sizes):
            return
        self.jobs, self.sizes = jobs, sizes
        if self.enabled:
            print(self.line(), file=self.stream, flush=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_enabled(config: DictConfig) -> bool | None:
    """``sweep.progress`` (true/false) or None for 'when stdout is a terminal'."""
    value = OmegaConf.select(config, "sweep.progress")
    return None if value is None else bool(value)


# --- the callback -------------------------------------------------------------------


class SweepCallback(Callback):
    """Collects finished jobs; at the end of a multirun writes the combined table."""

    def __init__(self) -> None:
        self.jobs: dict[int, dict] = {}
        self.progress: Progress | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.jobs = {}
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
        # The MPI launcher alone sees every rank's completions; it drives progress itself.
        if launcher != MPI_LAUNCHER_TARGET:
            self.progress = Progress(count_jobs(config), enabled=progress_enabled(config))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if job_return.status != JobStatus.COMPLETED or not isinstance(job_return.return_value, dict):
            return
        num = int(config.hydra.job.num)
        self.jobs[num] = job_return.return_value
        if self.progress is not None:
            self.progress.update(len(self.jobs), sum(n["rows"] for n in self.jobs.values()))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = _gather_notes(self.jobs)
        if jobs is None:  # not launch rank 0
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            rows = combined_rows((num, note["job_dir"], note["overrides"]) for num, note in jobs.items())
            written = write_combined(sweep_dir, rows)
        except (OSError, ValueError) as err:
            # Hydra turns callback exceptions into warnings; a sweep without its table has failed.
            print(f"collsim: error: combined table of {sweep_dir} not written: {err}", file=sys.stderr)
            raise SystemExit(1) from None
        resumed = sum(1 for note in jobs.values() if note["resumed"])
        names = ", ".join(str(p) for p in written)
        print(f"# collsim sweep: {len(jobs)} jobs ({resumed} resumed), {len(rows)} rows -> {names}", flush=True)


def _gather_notes(local: dict[int, dict]) -> dict[int, dict] | None:
    """All ranks' job notes on launch rank 0 (None elsewhere); members of one job agree."""
    if jobcomm.world_size() == 1:
        return dict(local) if jobcomm.launch_rank() == 0 else None
    from mpi4py import MPI

    parts = MPI.COMM_WORLD.gather(local, root=0)
    if parts is None:
        return None
    merged: dict[int, dict] = {}
    for part in parts:
        for num, note in part.items():
            merged.setdefault(num, note)
    return merged
