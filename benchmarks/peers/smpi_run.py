"""The SMPI side: install SimGrid when missing, compile allreduce_timer.c, run it, parse it.

Debian's ``libsimgrid-dev`` (SimGrid 3.32 on bookworm) ships ``/usr/bin/smpicc`` and
``/usr/bin/smpirun``.  We call them by absolute path when they are there: the project's
``.venv/bin`` holds MPICH's ``mpicc``/``mpirun``, which must not be picked up by mistake.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peers.measure import Measured, run_measured
from benchmarks.peers.smpi_platform import SMPI_OPTIONS, hostfile, platform_xml

SOURCE = Path(__file__).with_name("allreduce_timer.c")
DEBIAN_PACKAGE = "libsimgrid-dev"
# SMPI_SHARED_MALLOC maps one file block after block over each buffer (every block is one kernel
# mapping, populated at once).  With SimGrid's default 1 MiB block, 1,024 ranks x 2 buffers x
# 1,024 blocks would pass Linux's 65,530 mappings per process (vm.max_map_count), and every
# mapping costs a system call: a block as large as the buffer makes it 2 mappings per rank
# (measured at 64 ranks, 1 GiB: 6.5 s for the whole run instead of 18 s with 64 MiB blocks).
MIN_BLOCK_BYTES = 1 << 20  # SimGrid's default smpi/shared-malloc-blocksize


@dataclass(frozen=True)
class SmpiRow:
    """One ``ALLREDUCE`` line of allreduce_timer."""

    ranks: int
    nbytes: int
    count: int
    op: str
    lr_path: str
    time_s: float
    start_skew_s: float
    late: bool
    wall_s: float
    cpu_s: float


_LINE = re.compile(r"^ALLREDUCE((?:\s+[a-z_]+=\S+)+)\s*$")
_FIELDS = {
    "ranks": int,
    "bytes": int,
    "count": int,
    "op": str,
    "lr_path": str,
    "time_s": float,
    "start_skew_s": float,
    "late": int,
    "wall_s": float,
    "cpu_s": float,
}
LR_PATHS = ("ring", "ring+remainder", "reduce+bcast")


def parse_timer_output(text: str) -> list[SmpiRow]:
    """Rows of allreduce_timer's stdout; other lines (comments, SimGrid logs) are skipped.

    A line that starts with ``ALLREDUCE`` but lacks a field, has an unknown one or a bad
    value raises ValueError naming the line: a silently dropped size would skew a table.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("ALLREDUCE"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"line {number}: malformed ALLREDUCE line: {line!r}")
        values = {}
        for token in match.group(1).split():
            key, _, raw = token.partition("=")
            if key not in _FIELDS:
                raise ValueError(f"line {number}: unknown field {key!r} in {line!r}")
            try:
                values[key] = _FIELDS[key](raw)
            except ValueError:
                raise ValueError(f"line {number}: bad value for {key}: {raw!r}") from None
        missing = [key for key in _FIELDS if key not in values]
        if missing:
            raise ValueError(f"line {number}: missing {', '.join(missing)} in {line!r}")
        if values["lr_path"] not in LR_PATHS:
            raise ValueError(f"line {number}: unknown lr_path {values['lr_path']!r}")
        rows.append(
            SmpiRow(
                ranks=values["ranks"],
                nbytes=values["bytes"],
                count=values["count"],
                op=values["op"],
                lr_path=values["lr_path"],
                time_s=values["time_s"],
                start_skew_s=values["start_skew_s"],
                late=bool(values["late"]),
                wall_s=values["wall_s"],
                cpu_s=values["cpu_s"],
            )
        )
    return rows


def shared_block_bytes(max_bytes: int) -> int:
    """smpi/shared-malloc-blocksize: the smallest power of two >= the buffer (and >= 1 MiB)."""
    block = MIN_BLOCK_BYTES
    while block < max_bytes:
        block *= 2
    return block


def smpirun_argv(smpirun: str, binary: Path, ranks: int, platform: Path, hosts: Path, sizes: tuple[int, int, int],
                 op: str, block_bytes: int) -> list[str]:
    lo, hi, factor = sizes
    return [
        smpirun,
        "-no-privatize",  # one shared buffer for all ranks; the program keeps no per-rank globals
        "-np",
        str(ranks),
        "-platform",
        str(platform),
        "-hostfile",
        str(hosts),
        str(binary),
        str(lo),
        str(hi),
        str(factor),
        op,
        *SMPI_OPTIONS,
        f"--cfg=smpi/shared-malloc-blocksize:{block_bytes}",
    ]


def tool(name: str) -> str | None:
    """Absolute path of a SimGrid tool: /usr/bin first (never the venv's MPICH), then PATH."""
    system = Path("/usr/bin") / name
    if system.exists():
        return str(system)
    found = shutil.which(name)
    if found and ".venv" not in found:
        return found
    return None


def ensure_simgrid(log=print) -> tuple[str, str]:
    """(smpicc, smpirun), installing Debian's libsimgrid-dev first when they are missing."""
    if tool("smpicc") and tool("smpirun"):
        return tool("smpicc"), tool("smpirun")
    if shutil.which("apt-get") is None:
        raise SystemExit("bench-peers: SimGrid's smpicc/smpirun are missing and apt-get is not available; "
                         "install SimGrid 3.32+ (https://simgrid.org) and retry")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and shutil.which("sudo") is None:
        raise SystemExit(f"bench-peers: SimGrid is missing; run as root or: sudo apt-get install -y {DEBIAN_PACKAGE}")
    log(f"bench-peers: installing {DEBIAN_PACKAGE} (SimGrid SMPI) with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", DEBIAN_PACKAGE]):
        done = subprocess.run(prefix + argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench-peers: {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    if not (tool("smpicc") and tool("smpirun")):
        raise SystemExit(f"bench-peers: {DEBIAN_PACKAGE} installed but smpicc/smpirun not found")
    return tool("smpicc"), tool("smpirun")


def simgrid_version(smpirun: str) -> str:
    done = subprocess.run([smpirun, "-version"], capture_output=True, text=True)
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"


def compile_timer(smpicc: str, build_dir: Path) -> Path:
    """Compile allreduce_timer.c with smpicc (again only when the source is newer)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "allreduce_timer"
    if binary.exists() and binary.stat().st_mtime >= SOURCE.stat().st_mtime:
        return binary
    done = subprocess.run([smpicc, "-O2", "-Wall", "-o", str(binary), str(SOURCE)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench-peers: smpicc failed:\n{done.stdout}{done.stderr}")
    return binary


def run_smpi(smpirun: str, binary: Path, ranks: int, bandwidth_Bps: int, latency_ps: int,
             sizes: tuple[int, int, int], op: str, work_dir: Path) -> tuple[list[SmpiRow], Measured]:
    """One smpirun process timing every size; returns its rows and the process measurement."""
    work_dir.mkdir(parents=True, exist_ok=True)
    platform = work_dir / f"flat-{ranks}.xml"
    hosts = work_dir / f"hosts-{ranks}.txt"
    platform.write_text(platform_xml(ranks, bandwidth_Bps, latency_ps))
    hosts.write_text(hostfile(ranks))
    argv = smpirun_argv(smpirun, binary, ranks, platform, hosts, sizes, op, shared_block_bytes(sizes[1]))
    measured = run_measured(argv, cwd=work_dir)
    if measured.returncode != 0:
        raise RuntimeError(
            f"smpirun failed (exit {measured.returncode}) at {ranks} ranks:\n{measured.stderr[-3000:]}"
        )
    rows = parse_timer_output(measured.stdout)
    if not rows:
        raise RuntimeError(f"smpirun printed no ALLREDUCE line at {ranks} ranks:\n{measured.stdout[-2000:]}")
    return rows, measured
