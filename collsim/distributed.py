"""MPI chip groups: one collective simulated by R ranks, bit-identical to one process (DESIGN.md section 7).

``mpiexec -n R collsim ...`` (or a sweep job on a sub-communicator of R
ranks, see :mod:`collsim.jobcomm`) splits the cluster's nodes into R
contiguous blocks as even as possible (:func:`collsim.engine.core.rank_nodes`;
never a split node).  Each rank runs an :class:`~collsim.engine.core.Engine`
for its block: its chips' state, the links they send on, the NIC downlinks of
its nodes and the leaf trunks of the leaves whose first NIC is in its nodes.
The engine module docstring says how a message moves between ranks; this
module runs the conservative synchronisation around it:

* **lookahead** = the smallest latency of a link after which a message can
  be another rank's business: NIC uplinks and downlinks (a downlink's end is
  a delivery the sender's rank may have to see) and, on an oversubscribed fat
  tree, the leaf trunks.  An event created for another rank lies at least that
  far after the event that created it.
* **windows**: every rank announces the time of its earliest pending event
  (event queue or outbox); with t0 the global minimum, each rank processes every
  event before t0 + lookahead (up to t0 + 2 lookahead for a rank that alone
  holds t0: :func:`horizon`), then the outboxes are exchanged.  Stretches of
  simulated time with no event cost nothing.  Per window: one ``Alltoall``
  of two int64 per rank pair (bytes to send, earliest time), then
  point-to-point messages of packed records (``Isend``/``Irecv`` of uint8
  buffers, only between ranks that have something for each other): never one
  pickled object per message.
* **results**: makespan = global max, events / link events / #wrong = global
  sums (each rank verifies its own chips' buffers).

A single process (no mpirun, or a communicator of one rank) never comes here:
``collectives.event.simulate`` runs the plain ``Engine.run``, unless the
config asks for ``threads=T > 1``: then T partitions, split exactly as T
ranks would be, run their window loops in T threads of this process
(:func:`simulate_in_threads`; the engine releases the GIL while it processes
events) and exchange their outboxes in memory (:func:`run_in_process`, which
also drives the tests' ranks one after the other).  Same windows, same
results.

Failures.  Bad input is found identically on every rank before the first
message (``ConfigError``: exit code 2 everywhere, rank 0 prints); setup errors
that can differ between ranks (memory) are agreed with one ``allgather``.
Anything raised after that on one rank is printed there once and ends the
whole job with ``MPI_Abort``: no rank waits forever.  For tests, the
environment variable ``COLLSIM_TEST_FAIL_RANK=r`` makes rank r raise a
RuntimeError in its first window.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from collsim import jobcomm
from collsim.errors import ConfigError

INT64_MAX = 2**63 - 1
FAIL_RANK_ENV = "COLLSIM_TEST_FAIL_RANK"
"""Test hook: the rank named here raises in its first window (the job must abort, not hang)."""
# How process managers publish the launch size before MPI starts (MPICH/Intel MPI, Open MPI, MVAPICH).
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# A failing rank other than 0 waits this long before printing: when every rank fails
# alike, rank 0's message (printed at once) is the only one before MPI_Abort lands.
_NONZERO_FAIL_DELAY_S = 1.0
_FORWARD_OUTPUT_S = 0.5
_RECORDS_TAG = 4242
OVERSUBSCRIBED_NAP_S = 20e-6
"""Sleep between MPI polls when a host runs more ranks than it has cores."""


# --- which communicator ------------------------------------------------------------


def launch_size() -> int:
    """Processes in this MPI launch (1 without one), from MPI if initialised, else the environment."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_size()
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    if "PMIX_RANK" in os.environ:  # PMIx (srun --mpi=pmix, prterun) publishes no size: ask MPI
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_size()
    return 1


def run_comm() -> Any | None:
    """The communicator a run's simulations spread over, or None for a single process.

    A sweep job placed on a sub-communicator by the MPI launcher uses it;
    otherwise a ``mpiexec -n R`` launch uses the world.  Size 1 is None: the
    plain single-process engine, no MPI at all.
    """
    if jobcomm.has_job_comm():
        comm = jobcomm.job_comm()
    elif launch_size() > 1:
        comm = jobcomm.job_comm()
    else:
        return None
    return comm if comm.Get_size() > 1 else None


# --- checks made identically on every rank ------------------------------------------


def check_partition(cluster, ranks: int) -> None:
    """Refuse more ranks than nodes (a node is never split)."""
    _check_whole_nodes(cluster, ranks, "cluster.nodes", "MPI ranks", "rank")


def check_threads(cluster, threads: int, ranks: int) -> None:
    """Refuse a ``threads`` setting the split cannot use: next to MPI ranks, or more threads than nodes."""
    if threads > 1 and ranks > 1:
        raise ConfigError(
            "threads",
            f"threads={threads} cannot be combined with {ranks} MPI ranks (each rank runs one engine); use "
            "threads=1 under mpiexec, or threads > 1 in a single process",
        )
    _check_whole_nodes(cluster, threads, "threads", "threads", "thread")


def _check_whole_nodes(cluster, parts: int, field: str, plural: str, singular: str) -> None:
    if parts > cluster.nodes:
        raise ConfigError(
            field,
            f"{cluster.nodes} nodes cannot be split over {parts} {plural} (each {singular} simulates whole "
            f"nodes); use at most {cluster.nodes} {singular}s or more nodes",
        )


def lookahead_ps(cluster) -> int:
    """Smallest latency of a link after which a message may belong to another rank (> 0).

    Only the scale-out network joins nodes: NIC uplinks (next: a leaf trunk or
    another node's NIC downlink), NIC downlinks (their end is a delivery the
    sender's rank may see) and leaf trunks (next: another leaf's trunk or NIC).
    """
    so = cluster.topology.scale_out
    fields = {"nic_up": "topology.scale_out.nic.latency", "nic_down": "topology.scale_out.nic.latency",
              "leaf_up": "topology.scale_out.spine_latency", "leaf_down": "topology.scale_out.spine_latency"}
    groups = [g for g in cluster.link_groups if g.name in fields]
    if not groups:
        raise ConfigError("cluster.nodes", "a single node has no scale-out network to split over MPI ranks")
    shortest = min(groups, key=lambda g: g.spec.latency_ps)
    if shortest.spec.latency_ps <= 0:
        field = fields[shortest.name]
        value = so.spine_latency_ps if field.endswith("spine_latency") else so.nic.latency_ps
        raise ConfigError(
            field,
            f"{value} ps leaves {shortest.name} links with zero latency, so MPI ranks (or threads) could "
            "not run ahead of each other (the conservative lookahead must be > 0; each link of the pair "
            "gets half); give it at least 2 ps or run without mpirun and with threads=1",
        )
    return shortest.spec.latency_ps


# --- the window loop -----------------------------------------------------------------


@dataclass
class WindowStats:
    """What one rank's synchronisation cost (the benchmark prints these)."""

    windows: int = 0
    records_sent: int = 0
    bytes_sent: int = 0
    sync_s: float = 0.0  # in the exchange: MPI calls, including waiting for slower ranks
    compute_s: float = 0.0  # processing events (wall)
    compute_cpu_s: float = 0.0  # processing events (CPU of this process: less than wall when the core is shared)
    window_events: list = field(default_factory=list)  # events processed in each window


def horizon(earliest: np.ndarray, rank: int, lookahead: int, outbox_earliest: int = INT64_MAX) -> int:
    """End (exclusive) of the next window of ``rank``, given every rank's earliest pending time.

    ``earliest[s]`` is s's earliest event queued or in the outbox it has just
    sent; ``outbox_earliest`` is the earliest record of ``rank``'s own outbox.
    Nothing is in flight between windows, so an event at a rank s != rank in
    the window is one of s's queued events (>= earliest[s]), a record s
    receives now (>= its sender's earliest, or >= outbox_earliest when
    ``rank`` sent it), or a message of another rank sent in the window (later
    still).  A message for ``rank`` leaves some s != rank at such an event and
    arrives >= lookahead later:

        horizon = min(min over s != rank of earliest[s], earliest[rank] + lookahead, outbox_earliest)
                  + lookahead

    That is t0 + lookahead (t0 the global earliest) when another rank holds
    t0 or ``rank``'s outbox does, and up to t0 + 2 lookahead for the rank that
    alone holds it in its queue.  (Counting the outbox as the rank's own would
    let a rank that only sent the record at t0 run to t0 + 2 lookahead, past
    the answer the receiver may send at t0 + lookahead.)
    """
    others = np.delete(earliest, rank)
    bound = min(int(others.min()) if others.size else INT64_MAX, int(earliest[rank]) + lookahead, outbox_earliest)
    return min(bound + lookahead, INT64_MAX)


def window_loop(engine, schedule, lookahead: int) -> Iterator:
    """One rank's conservative loop, as a generator suspended at every exchange.

    Yields ``(outbox bytes grouped by rank, bytes per rank, earliest local time)``
    and expects back ``(received bytes, every rank's earliest time)``; ends
    when nothing is pending anywhere.  The MPI driver answers with real
    messages, the tests with an in-process exchange between several engines:
    both run exactly this loop.
    """
    engine._window_begin(schedule)
    while True:
        out, counts, out_earliest = engine._take_outbox()
        inbox, earliest = yield out, counts, min(engine._next_event(), out_earliest)
        if int(earliest.min()) == INT64_MAX:
            return
        engine._give_inbox(inbox)
        engine._window_run(schedule, horizon(earliest, engine.rank, lookahead, out_earliest))


def run_in_process(engines, schedules, lookahead: int, parallel: bool = False) -> int:
    """Drive several partitions' loops in one process, outboxes exchanged in memory; returns the windows.

    ``parallel``: the partitions process each window at the same time, one
    thread each (``threads=T``); otherwise one after the other (tests).  The
    loops get the same answers either way, so the results are the same.
    """
    loops = [window_loop(e, s, lookahead) for e, s in zip(engines, schedules)]
    with _stepper(loops, parallel) as step:
        pending = step([None] * len(loops))  # sending None starts a generator
        windows = 0
        while True:
            earliest = np.array([e for _, _, e in pending], dtype=np.int64)
            answers = [(inbox, earliest) for inbox in _inboxes(pending)]
            if int(earliest.min()) == INT64_MAX:
                for loop, answer in zip(loops, answers):
                    with contextlib.suppress(StopIteration):
                        loop.send(answer)
                return windows
            windows += 1
            pending = step(answers)


_NO_RECORDS = np.empty(0, dtype=np.uint8)


def _inboxes(pending: list) -> list[np.ndarray]:
    """Each partition's inbox: what every outbox holds for it (outboxes are grouped by receiver)."""
    parts: list[list[np.ndarray]] = [[] for _ in pending]
    for out, counts, _ in pending:
        if out.shape[0]:
            at = 0
            for dest, size in enumerate(counts.tolist()):
                if size:
                    parts[dest].append(out[at : at + size])
                    at += size
    return [np.concatenate(p) if len(p) > 1 else p[0] if p else _NO_RECORDS for p in parts]


@contextlib.contextmanager
def _stepper(loops: list, parallel: bool) -> Iterator:
    """A function sending each loop its answer and returning what the loops yield next, in loop order."""
    if not parallel or len(loops) < 2:
        yield lambda answers: [loop.send(answer) for loop, answer in zip(loops, answers)]
        return
    with futures.ThreadPoolExecutor(len(loops) - 1, thread_name_prefix="collsim-partition") as pool:

        def step(answers: list) -> list:
            others = [pool.submit(loop.send, answer) for loop, answer in zip(loops[1:], answers[1:])]
            try:
                first = loops[0].send(answers[0])  # on this thread: one hand-off fewer per window
            finally:
                futures.wait(others)  # no thread is left inside a loop, whoever failed
            return [first] + [f.result() for f in others]  # the first failure in partition order raises

        yield step


class MpiExchange:
    """Answers :func:`window_loop`'s yields with MPI: Alltoall of (bytes, earliest), then the records."""

    def __init__(self, comm, stats: WindowStats):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm
        self.stats = stats
        ranks = comm.Get_size()
        self.header = np.zeros((ranks, 2), dtype=np.int64)
        self.received = np.zeros((ranks, 2), dtype=np.int64)
        host = comm.Split_type(MPI.COMM_TYPE_SHARED)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.nap_s = OVERSUBSCRIBED_NAP_S if host.Get_size() > cores else 0.0
        host.Free()

    def __call__(self, out: np.ndarray, counts: np.ndarray, earliest: int) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        MPI, comm = self.MPI, self.comm
        self.header[:, 0] = counts
        self.header[:, 1] = earliest
        _wait([comm.Ialltoall(self.header, self.received)], self.nap_s)
        incoming = self.received[:, 0]
        inbox = np.empty(int(incoming.sum()), dtype=np.uint8)
        requests = []
        at = 0
        for source in np.flatnonzero(incoming):
            size = int(incoming[source])
            requests.append(comm.Irecv([inbox[at : at + size], MPI.BYTE], source=int(source), tag=_RECORDS_TAG))
            at += size
        at = 0
        for dest, size in enumerate(counts.tolist()):
            if size:
                requests.append(comm.Isend([out[at : at + size], MPI.BYTE], dest=dest, tag=_RECORDS_TAG))
                at += size
        _wait(requests, self.nap_s)
        self.stats.bytes_sent += int(out.shape[0])
        self.stats.sync_s += time.perf_counter() - start
        return inbox, self.received[:, 1].copy()


def _wait(requests: list, nap_s: float) -> None:
    """Wait for MPI requests, leaving the core to others between polls.

    MPI implementations busy-poll; when ranks share cores a spinning rank
    takes the core from the rank it waits for.  Between polls: sched_yield
    (returns at once when nothing else wants the core, so a rank with a core
    of its own loses nothing), or a short sleep when this host runs more
    ranks than it has cores (yielding alone then leaves too little to the
    others).
    """
    from mpi4py import MPI

    while not MPI.Request.Testall(requests):
        if nap_s:
            time.sleep(nap_s)
        else:
            os.sched_yield()


def run_windows(comm, engine, schedule, lookahead: int, stats: WindowStats) -> None:
    """This rank's share of the run, synchronised with the others over ``comm``."""
    exchange = MpiExchange(comm, stats)
    fail_rank = os.environ.get(FAIL_RANK_ENV, "")
    loop = window_loop(engine, schedule, lookahead)
    request = next(loop)
    while True:
        answer = exchange(*request)
        if int(answer[1].min()) != INT64_MAX:
            stats.windows += 1
            if fail_rank == str(comm.Get_rank()):
                raise RuntimeError(f"{FAIL_RANK_ENV}={fail_rank}: failure injected on MPI rank {fail_rank}")
        start, cpu, events = time.perf_counter(), time.process_time(), engine.events
        try:
            request = loop.send(answer)
        except StopIteration:
            break
        finally:
            stats.compute_s += time.perf_counter() - start
            stats.compute_cpu_s += time.process_time() - cpu
        stats.window_events.append(engine.events - events)
    stats.records_sent = engine.exported


# --- failures ---------------------------------------------------------------------------


@contextlib.contextmanager
def abort_on_failure(comm) -> Iterator[None]:
    """Around code whose ranks communicate: any exception but ConfigError ends the whole job.

    ConfigErrors reaching here were raised alike on every rank (checks made
    before communicating, or agreed with :func:`agree`); they propagate and the
    command exits with code 2 on every rank.  Anything else happened on this
    rank only while the others may wait for it: print it once and MPI_Abort.
    """
    if comm is None:
        yield
        return
    try:
        yield
    except ConfigError:
        raise
    except BaseException as exc:  # noqa: BLE001  (KeyboardInterrupt too: never leave ranks waiting)
        _abort(comm, exc)


def _abort(comm, exc: BaseException) -> None:
    from mpi4py import MPI

    rank = comm.Get_rank()
    if rank != 0:
        time.sleep(_NONZERO_FAIL_DELAY_S)
    # The process's own stderr: a sweep launcher captures a job's stderr on ranks other than
    # the job's leader, and the capture dies with the job.
    stream = sys.__stderr__ or sys.stderr
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
    print(f"collsim: error: MPI rank {rank}: {type(exc).__name__}: {exc}; aborting all ranks",
          file=stream, flush=True)
    time.sleep(_FORWARD_OUTPUT_S)  # mpiexec forwards a rank's output asynchronously; abort drops what is left
    MPI.COMM_WORLD.Abort(1)


def agree(comm, error: ConfigError | None) -> None:
    """Raise, on every rank, the first rank's ConfigError if any rank had one (one allgather)."""
    found = comm.allgather(None if error is None else (error.field, error.message))
    for item in found:
        if item is not None:
            raise ConfigError(*item)


# --- one collective -----------------------------------------------------------------------


@dataclass(frozen=True)
class DistributedResult:
    makespan_ps: int
    events: int
    link_events: int
    wrong: int | None
    stats: WindowStats


@dataclass(frozen=True)
class Workload:
    """One event/data simulation, as each partition (MPI rank or thread) builds its share of it.

    ``count`` is the effective per-chip count (> 0) and the cluster has more
    than one chip; :func:`collectives.event.simulate` handles the rest.
    """

    cluster: Any
    collective: Any
    algorithm: str
    count: int
    dtype: str
    elem_bytes: int
    params: Any
    verify: bool

    def partition(self, part: int, parts: int, router) -> Partition:
        """Engine, schedule and (data fidelity) buffers of partition ``part`` of ``parts``: its block of nodes."""
        from collectives.registry import algorithm_module
        from collectives.verify import check_exact, init_buffers
        from collsim.engine.core import Engine, rank_nodes
        from collsim.engine.data import DataPlane

        cluster = self.cluster
        first_node, last_node = rank_nodes(cluster.nodes, parts, part)
        per_node = cluster.topology.chips_per_node
        chip_lo, chip_hi = first_node * per_node, last_node * per_node
        data = None
        if self.verify:
            check_exact(self.dtype, cluster.chips)
            data = DataPlane(chip_hi - chip_lo, self.count, self.dtype)  # this partition's chips only
            init_buffers(data.buffers, self.collective, self.count, first_chip=chip_lo, chips=cluster.chips)
        engine = Engine(router, cluster.topology.chip.reduce_Bps, self.elem_bytes, data, part, parts)
        schedule = algorithm_module(self.algorithm).make_schedule(cluster, self.collective, self.count,
                                                                  self.elem_bytes, self.params)
        return Partition(self, engine, schedule, chip_lo)

    def result(self, totals: np.ndarray, stats: WindowStats) -> DistributedResult:
        """The whole run's result from every partition's :meth:`Partition.totals` (one row each)."""
        return DistributedResult(
            makespan_ps=int(totals[:, 0].max()),
            events=int(totals[:, 1].sum()),
            link_events=int(totals[:, 2].sum()),
            wrong=int(totals[:, 3].sum()) if self.verify else None,
            stats=stats,
        )


@dataclass(frozen=True)
class Partition:
    """A block of whole nodes: its engine (owning those chips and their links) and its schedule."""

    workload: Workload
    engine: Any
    schedule: Any
    first_chip: int

    def totals(self) -> np.ndarray:
        """Makespan, events, link events and (data fidelity) wrong elements of this partition's chips."""
        work, engine = self.workload, self.engine
        wrong = 0
        if work.verify:
            from collectives.verify import count_wrong

            wrong = count_wrong(engine.data.buffers, work.collective, work.count, first_chip=self.first_chip,
                                chips=work.cluster.chips)
        return np.array([engine.makespan_ps, engine.events, engine.link_events, wrong], dtype=np.int64)


def simulate(comm, cluster, collective, algorithm: str, count: int, dtype: str, elem_bytes: int, params,
             verify: bool) -> DistributedResult:
    """This rank's part of one event/data simulation (a :class:`Workload`); every rank returns the global result."""
    from topologies.routing import Router

    ranks, rank = comm.Get_size(), comm.Get_rank()
    check_partition(cluster, ranks)
    lookahead = lookahead_ps(cluster)
    work = Workload(cluster, collective, algorithm, count, dtype, elem_bytes, params, verify)
    with abort_on_failure(comm):
        comm = comm.Dup()  # our own message space: a sweep's or the caller's traffic never mixes in
        error = None
        try:
            mine = work.partition(rank, ranks, Router(cluster))
        except ConfigError as err:  # e.g. memory, which differs between ranks: agreed below
            error = err
        try:
            agree(comm, error)
        except ConfigError:
            comm.Free()  # every rank raises alike
            raise
        stats = WindowStats()
        try:
            run_windows(comm, mine.engine, mine.schedule, lookahead, stats)
            totals = mine.totals()
        except ConfigError as err:  # from here on nothing is agreed: a rank that stops must abort
            raise RuntimeError(str(err)) from err
        table = np.zeros((ranks, totals.shape[0]), dtype=np.int64)
        comm.Allgather(totals, table)
        comm.Free()
    return work.result(table, stats)


def simulate_in_threads(threads: int, cluster, collective, algorithm: str, count: int, dtype: str, elem_bytes: int,
                        params, verify: bool) -> DistributedResult:
    """One event/data simulation split into ``threads`` partitions, as many ranks would, run by as many threads.

    Every partition's engine holds the per-link and per-chip arrays of the
    whole cluster and every schedule its per-chip records, so memory grows
    with ``threads``; the data buffers are split (each partition holds its
    own chips'), so they take what one engine's would.
    """
    from collsim.engine.data import check_fits
    from topologies.routing import Router

    check_threads(cluster, threads, 1)
    lookahead = lookahead_ps(cluster)
    if verify:  # the buffers of all partitions together, as one engine would hold them
        check_fits(cluster.chips, count, dtype)
    work = Workload(cluster, collective, algorithm, count, dtype, elem_bytes, params, verify)
    router = Router(cluster)  # read-only while the engines run: shared
    parts = [work.partition(t, threads, router) for t in range(threads)]
    stats = WindowStats()
    stats.windows = run_in_process([p.engine for p in parts], [p.schedule for p in parts], lookahead, parallel=True)
    return work.result(np.stack([p.totals() for p in parts]), stats)
