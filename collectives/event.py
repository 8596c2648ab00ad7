"""Run one collective through the discrete-event engine (fidelities ``event`` and ``data``).

The algorithm module supplies the Schedule; this driver owns everything around
it: router, engine, the data plane and its verification.  Time reported =
chip launch overhead + the engine's makespan (the schedule starts at t = 0;
the makespan covers the last event and the end of the last reduction).

With ``comm`` (an MPI communicator of more than one rank) the ranks simulate
one chip group each (collsim/distributed.py); with ``threads`` > 1 so do as
many threads of this process.  Results are identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collectives.base import AlgorithmParams, Collective, effective_count
from collectives.registry import algorithm_module
from collectives.verify import check_exact, count_wrong, init_buffers
from topologies.model import Cluster


@dataclass(frozen=True)
class EventResult:
    time_ps: int
    events: int
    link_events: int
    wrong: int | None  # None unless data fidelity


def simulate(
    cluster: Cluster,
    collective: Collective,
    algorithm: str,
    count: int,
    dtype: str,
    elem_bytes: int,
    params: AlgorithmParams,
    verify: bool,
    comm: Any = None,
    threads: int = 1,
) -> EventResult:
    """Simulate ``count`` elements per chip (nccl-tests sizing); verify data if asked.

    ``comm``: MPI ranks to spread over; ``threads``: engine threads in this
    process (> 1 only without MPI ranks).
    """
    from collsim.engine.core import Engine
    from collsim.engine.data import DataPlane
    from topologies.routing import Router

    n = cluster.chips
    count = effective_count(collective, count, n)
    launch_ps = cluster.topology.chip.launch_overhead_ps
    ranks = comm.Get_size() if comm is not None else 1
    if ranks > 1 or threads > 1:
        from collsim import distributed

        # before the shortcut: the same answer for every size
        distributed.check_threads(cluster, threads, ranks)
        distributed.check_partition(cluster, ranks)
        if count > 0 and n > 1:
            if ranks > 1:
                res = distributed.simulate(comm, cluster, collective, algorithm, count, dtype, elem_bytes, params,
                                           verify)
            else:
                res = distributed.simulate_in_threads(threads, cluster, collective, algorithm, count, dtype,
                                                      elem_bytes, params, verify)
            return EventResult(launch_ps + res.makespan_ps, res.events, res.link_events, res.wrong)
    if count == 0 or n == 1:
        return EventResult(launch_ps, 0, 0, 0 if verify else None)
    data = None
    if verify:
        check_exact(dtype, n)
        data = DataPlane(n, count, dtype)
        init_buffers(data.buffers, collective, count)
    engine = Engine(Router(cluster), cluster.topology.chip.reduce_Bps, elem_bytes, data)
    schedule = algorithm_module(algorithm).make_schedule(cluster, collective, count, elem_bytes, params)
    engine.run(schedule)
    wrong = count_wrong(data.buffers, collective, count) if verify else None
    return EventResult(launch_ps + engine.makespan_ps, engine.events, engine.link_events, wrong)
