"""One collsim run: validate the config, evaluate every size, report, write results.

Kept free of Hydra so tests, benchmarks and the sweep launcher can call
:func:`run` with any OmegaConf / dict config.
"""
from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from omegaconf import DictConfig, OmegaConf

from collectives.base import ALGORITHMS, AlgorithmParams, Collective, bus_factor, effective_count
from collectives.registry import algorithm_module
from collsim import distributed, report
from collsim.config import DTYPE_BYTES, NCCL_TYPE_NAMES, DType
from collsim.errors import ConfigError
from collsim.results import write_csv_atomic
from collsim.units import parse_size
from topologies.loader import load_topology, make_cluster
from topologies.model import Cluster


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs, validated and in internal units."""

    cluster: Cluster
    collective: Collective
    algorithm: str  # ring | tree | hierarchical | auto
    fidelity: str  # analytic | event | data
    dtype: DType
    params: AlgorithmParams
    sizes: tuple[int, ...]
    gib: bool
    threads: int = 1  # engine threads in this process (event and data fidelity)

    @property
    def elem_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class SizeResult:
    size_bytes: int
    count: int
    algorithm: str
    time_ps: int
    events: int
    wrong: int | None
    wall_s: float


def _name(value) -> str:
    return value.value if hasattr(value, "value") else str(value)


def size_list(cfg) -> tuple[int, ...]:
    lo = parse_size(cfg.min, "sizes.min")
    hi = parse_size(cfg.max, "sizes.max")
    if lo > hi:
        raise ConfigError("sizes.min", f"{cfg.min} is larger than sizes.max={cfg.max}")
    factor = cfg.factor
    if lo == hi:
        return (lo,)
    if not isinstance(factor, int) or factor < 2:
        raise ConfigError("sizes.factor", f"must be an integer >= 2, got {factor!r}")
    if lo == 0:
        raise ConfigError("sizes.min", "must be > 0 when sizes.max differs (a geometric sweep cannot start at 0)")
    sizes, size = [], lo
    while size <= hi:
        sizes.append(size)
        size *= factor
    return tuple(sizes)


def cluster_nodes(cluster_cfg, chips_per_node: int):
    """``cluster.nodes``, or ``cluster.chips`` / chips per node when chips is set (sweeps at equal chips)."""
    chips = cluster_cfg.get("chips")
    if chips is None:
        return cluster_cfg.nodes
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1 or chips % chips_per_node:
        raise ConfigError("cluster.chips", f"must be a positive multiple of the {chips_per_node} chips per node, got {chips!r}")
    return chips // chips_per_node


def build_spec(cfg: DictConfig) -> RunSpec:
    topo_cfg = OmegaConf.to_container(cfg.topology, resolve=True, enum_to_str=True)
    topology = load_topology(topo_cfg)
    cluster = make_cluster(topology, cluster_nodes(cfg.cluster, topology.chips_per_node))
    alg = cfg.algorithm
    chunk_bytes = 0 if alg.chunk_size in (None, "") else parse_size(alg.chunk_size, "algorithm.chunk_size")
    if alg.chunk_size not in (None, "") and chunk_bytes == 0:
        raise ConfigError("algorithm.chunk_size", "must be > 0 bytes (or unset to use algorithm.chunks)")
    params = AlgorithmParams(
        channels=alg.channels,
        bidirectional=alg.bidirectional,
        chunks=alg.chunks,
        chunk_bytes=chunk_bytes,
        in_flight=alg.in_flight,
        top=alg.top,
    ).validate()
    dtype = DType(_name(cfg.dtype))
    sizes = size_list(cfg.sizes)
    threads = cfg.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError("threads", f"must be an integer >= 1 (engine threads in this process), got {threads!r}")
    return RunSpec(
        cluster=cluster,
        collective=Collective(_name(cfg.collective.name)),
        algorithm=_name(alg.name),
        fidelity=_name(cfg.fidelity.name),
        dtype=dtype,
        params=params,
        sizes=sizes,
        gib=bool(cfg.report.gib),
        threads=threads,
    )


def evaluate(spec: RunSpec, algorithm: str, count: int, comm: Any = None) -> tuple[int, int, int | None]:
    """(time_ps, events, wrong) of one concrete algorithm at one size (``comm``: MPI ranks to spread over).

    Event and data fidelity run ``spec.threads`` engine threads; analytic ignores them.
    """
    if spec.fidelity == "analytic":
        module = algorithm_module(algorithm)
        return module.analytic_time_ps(spec.cluster, spec.collective, count, spec.elem_bytes, spec.params), 0, None
    from collectives.event import simulate

    result = simulate(
        spec.cluster,
        spec.collective,
        algorithm,
        count,
        spec.dtype.value,
        spec.elem_bytes,
        spec.params,
        verify=spec.fidelity == "data",
        comm=comm,
        threads=spec.threads,
    )
    return result.time_ps, result.events, result.wrong


def evaluate_size(spec: RunSpec, size_bytes: int, comm: Any = None) -> SizeResult:
    """One row: under ``auto`` the fastest algorithm (ties: ring, tree, hierarchical order)."""
    start = time.perf_counter()
    count = effective_count(spec.collective, size_bytes // spec.elem_bytes, spec.cluster.chips)
    candidates = ALGORITHMS if spec.algorithm == "auto" else (spec.algorithm,)
    best = None
    events_total = 0
    for name in candidates:
        time_ps, events, wrong = evaluate(spec, name, count, comm)
        events_total += events
        if best is None or time_ps < best[1]:
            best = (name, time_ps, wrong)
    name, time_ps, wrong = best
    return SizeResult(
        size_bytes=count * spec.elem_bytes,
        count=count,
        algorithm=name,
        time_ps=time_ps,
        events=events_total,
        wrong=wrong,
        wall_s=time.perf_counter() - start,
    )


def _csv_row(cfg: DictConfig, spec: RunSpec, res: SizeResult, row: report.Row, factor: float, ranks: int) -> dict:
    alg = cfg.algorithm
    return {
        "collective": spec.collective.value,
        "algorithm": spec.algorithm,
        "algorithm_used": res.algorithm,
        "topology": spec.cluster.topology.name,
        "nodes": spec.cluster.nodes,
        "chips": spec.cluster.chips,
        "fidelity": spec.fidelity,
        "dtype": spec.dtype.value,
        "channels": alg.channels,
        "bidirectional": alg.bidirectional,
        "chunks": alg.chunks,
        "chunk_size": alg.chunk_size if alg.chunk_size is not None else "",
        "in_flight": alg.in_flight,
        "top": alg.top,
        "size_bytes": res.size_bytes,
        "count": res.count,
        "time_ps": res.time_ps,
        "time_us": res.time_ps / 1e6,
        "algbw_GBps": row.algbw(),
        "busbw_GBps": row.busbw(factor),
        "wrong": "" if res.wrong is None else res.wrong,
        "events": res.events,
        "wall_s": round(res.wall_s, 6),
        "ranks": ranks,
        "threads": spec.threads,
    }


def _check_data_fits(spec, ranks: int) -> None:
    """Data fidelity: refuse, before any output, a largest size whose buffers cannot be held.

    Each rank holds the buffers of its own chips (whole nodes, the first ranks one node more).
    """
    from collsim.engine.data import check_fits

    cluster = spec.cluster
    if cluster.chips < 2 or not spec.sizes:
        return  # no data plane is built (nothing moves)
    count = effective_count(spec.collective, max(spec.sizes) // spec.elem_bytes, cluster.chips)
    chips_per_rank = -(-cluster.nodes // ranks) * cluster.topology.chips_per_node
    check_fits(chips_per_rank, count, spec.dtype.value)


def run(cfg: DictConfig, output_dir: Path | None, out: TextIO = sys.stdout, ranks: int = 1) -> list[dict]:
    """Validate, evaluate every size, print the table, write results.csv; return the rows.

    Under MPI (``mpiexec -n R collsim ...``, or a sweep job on R ranks) every
    event/data simulation is spread over the R ranks (collsim/distributed.py);
    rank 0 alone prints and writes.  With ``threads=T > 1`` (and one rank) it
    is spread over T threads of this process instead.
    """
    spec = build_spec(cfg)
    comm = distributed.run_comm()
    if comm is not None:
        ranks = comm.Get_size()
        if comm.Get_rank() != 0:
            out, output_dir = io.StringIO(), None
    if spec.fidelity != "analytic":  # refused before the header, identically on every rank
        distributed.check_threads(spec.cluster, spec.threads, ranks)
        if comm is not None:
            distributed.check_partition(spec.cluster, ranks)
        if comm is not None or spec.threads > 1:
            distributed.lookahead_ps(spec.cluster)
    n = spec.cluster.chips
    if spec.fidelity != "analytic" and spec.algorithm in ("hierarchical", "auto"):
        from collectives.hierarchical import check_event_limits

        check_event_limits(spec.cluster, spec.collective, spec.params)
    if spec.fidelity == "data":
        _check_data_fits(spec, ranks)
    factor = bus_factor(spec.collective, n)
    show_algo = spec.algorithm == "auto"
    title = {
        "topology": spec.cluster.topology.name,
        "nodes": spec.cluster.nodes,
        "chips": n,
        "collective": spec.collective.value,
        "algorithm": spec.algorithm,
        "fidelity": spec.fidelity,
    }
    report.print_lines(report.header_lines(title) + report.table_header(spec.gib, show_algo), out)
    rows, table = [], []
    results_path = output_dir / cfg.report.results_file if output_dir is not None else None
    with distributed.abort_on_failure(comm):  # a failure on one rank must not leave the others waiting
        for size in spec.sizes:
            res = evaluate_size(spec, size, comm)
            row = report.Row(
                size_bytes=res.size_bytes,
                count=res.count,
                type_name=NCCL_TYPE_NAMES[spec.dtype],
                redop="sum",
                root=-1,
                time_ps=res.time_ps,
                wrong=res.wrong,
                algorithm=res.algorithm,
            )
            table.append(row)
            report.print_lines([report.format_row(row, factor, spec.gib, show_algo)], out)
            rows.append(_csv_row(cfg, spec, res, row, factor, ranks))
            if results_path is not None:
                write_csv_atomic(results_path, rows)
    report.print_lines(report.footer_lines(table, factor, spec.gib), out)
    return rows
