"""Run one command; report its wall time and memory (the process and all its descendants).

Two memory figures, because they tell different stories for SMPI:

* ``maxrss_kib``: the kernel's peak resident set (``wait4``'s ru_maxrss, the largest of the
  process tree).  It counts every mapping of a page: SMPI_SHARED_MALLOC maps one small file
  over and over into every rank's buffers, so this figure can exceed the machine's memory
  while the physical use stays small.
* ``peak_private_kib``: the largest sum over the process tree of RssAnon (private heap,
  stacks) seen by sampling /proc every ``sample_s`` seconds: what the simulator really holds.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Measured:
    returncode: int
    wall_s: float
    cpu_s: float  # user + system CPU of the process tree: what other jobs on the machine do not inflate
    maxrss_kib: int
    peak_private_kib: int
    stdout: str
    stderr: str


def run_measured(argv: list[str], cwd: Path, env: dict | None = None, sample_s: float = 0.05) -> Measured:
    """Run ``argv`` to completion (stdout/stderr through files: no pipe can fill up)."""
    cwd = Path(cwd)
    out_path, err_path = cwd / "measured.stdout", cwd / "measured.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, env=env)
        sampler = _PrivateMemorySampler(proc.pid, sample_s)
        sampler.start()
        # wait4 (not Popen.wait) to get this child's rusage, which covers its reaped descendants.
        _, status, usage = os.wait4(proc.pid, 0)
        wall_s = time.perf_counter() - start
        sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        returncode=proc.returncode,
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_kib=int(usage.ru_maxrss),
        peak_private_kib=sampler.peak_kib,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def rss_anon_kib(status_text: str) -> int:
    """RssAnon from the text of /proc/PID/status (0 if absent, e.g. a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    kids = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text()
            kids.extend(int(tok) for tok in text.split())
    except OSError:
        pass
    return kids


def _tree_private_kib(root: int) -> int:
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            total += rss_anon_kib(Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        stack.extend(_children(pid))
    return total


class _PrivateMemorySampler:
    def __init__(self, pid: int, period_s: float):
        self._pid, self._period_s = pid, period_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.peak_kib = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._done.is_set():
            self.peak_kib = max(self.peak_kib, _tree_private_kib(self._pid))
            self._done.wait(self._period_s)
