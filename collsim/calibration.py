"""Simulated vs measured for the single-node cases of calibration.md.

``python -m collsim.calibration`` prints the table that the README records.  The
defaults it checks (set in conf/topology/*.yaml, each with its source):

* link efficiency: NVLink 0.8124 from case B1 (ring all-reduce busbw 365.6 of
  450 GB/s); EFA 0.9686 from case C (ib_write_bw 193.72 of 200 Gbps);
  NeuronLink 0.9 assumed (no Trainium case isolates a link, see below).
* per-hop latency: NeuronLink 1.5 us (Neuron docs: 1-2 us per hop); NVLink
  0.3 us per link = NCCL's 0.6 us per ring step through NVSwitch (case B2).
* launch overhead: Trainium 4.7 us from case A3 (1 KiB all-gather in 6.2 us,
  minus one hop); DGX H100 6.6 us, NCCL's base latency (case B2).

What collsim cannot match, and why, is part of the table: the Trainium
measurements run several ranks per chip (LNC=2, KangaRing, mesh algorithms
inside a chip) and NVLS in-switch reduction on the DGX, none of which the
chip-level model has.  Nothing is fitted to those rows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from collectives.base import AlgorithmParams, Collective, bus_factor
from collectives.event import simulate
from topologies.model import Cluster
from topologies.presets import load_preset

GIB = 2**30


@dataclass(frozen=True)
class Case:
    case: str  # calibration.md label
    description: str
    preset: str
    chips: int  # chips of the preset's first level actually used (a sub-switch for B1)
    collective: Collective
    algorithm: str
    size_bytes: int
    measured_us: float | None
    measured_busbw: float | None  # in the unit of the measurement
    gib: bool  # measurement printed in GiB/s (nccom-test)
    note: str
    ranks: int = 0  # ranks the measurement's busbw factor counts (nccom-test: NeuronCores); 0 = chips


CASES = (
    *(
        Case("B1", f"H100 ring all-reduce, {g} GPUs, 8 GiB", "dgx-h100", g, Collective.all_reduce, "ring", 8 * GIB,
             None, bw, False, "efficiency 0.8124 is taken from the 8-GPU row")
        for g, bw in ((4, 363.3), (5, 364.4), (6, 365.1), (7, 365.7), (8, 365.6))
    ),
    Case("B1", "H100 ring all-reduce, 8 GPUs, 16 GiB", "dgx-h100", 8, Collective.all_reduce, "ring", 16 * GIB,
         None, 367.2, False, ""),
    Case("B1", "H100 ring all-gather, 8 GPUs, 16 GiB", "dgx-h100", 8, Collective.all_gather, "ring", 16 * GIB,
         None, 361.4, False, ""),
    Case("B1", "H100 ring reduce-scatter, 8 GPUs, 16 GiB", "dgx-h100", 8, Collective.reduce_scatter, "ring", 16 * GIB,
         None, 362.9, False, ""),
    Case("B2", "DGX H100 all-reduce, 8 B (latency floor)", "dgx-h100", 8, Collective.all_reduce, "ring", 8,
         13.67, None, False, "measured with NVLS; the floor is launch + ring steps"),
    Case("B2", "DGX H100 all-reduce, 1 GiB", "dgx-h100", 8, Collective.all_reduce, "ring", GIB,
         4029.4, 466.33, False, "NVLS in-switch reduction beats any ring: not modelled"),
    Case("A3", "trn1 all-gather, 16 chips (32 ranks), 1 KiB", "trn1", 16, Collective.all_gather, "ring", 1024,
         6.2, None, True, "runtime uses a one-step mesh; collsim's ring needs 15 hops", 32),
    Case("A3", "trn1 all-gather, 16 chips (32 ranks), 512 KiB", "trn1", 16, Collective.all_gather, "ring", 512 * 1024,
         23.2, 21.9, True, "as above", 32),
    Case("A2", "Trn2 all-reduce, 4 chips (16 ranks), 512 MiB", "trn2", 4, Collective.all_reduce, "ring", 512 * 2**20,
         9690.0, 103.89, True, "4 ranks per chip (LNC=2, KangaRing) and HBM traffic are not modelled", 16),
)


def _cluster(case: Case) -> Cluster:
    """The preset's node, cut down to ``case.chips`` chips on its first level when fewer are used."""
    topo = load_preset(case.preset)
    if case.chips != topo.chips_per_node:
        first = topo.levels[0]
        # A sub-group of a switch is a smaller switch; of a torus row, a ring with the same links.
        fabric = first.fabric if first.fabric.value == "switch" else type(first.fabric)("ring")
        level = dataclasses.replace(first, size=case.chips, fabric=fabric, dims=())
        so = dataclasses.replace(topo.scale_out, nics_per_node=case.chips)
        topo = dataclasses.replace(topo, levels=(level,), scale_out=so)
    return Cluster(topo, 1)


@dataclass(frozen=True)
class Row:
    case: Case
    simulated_us: float
    simulated_busbw: float  # in the measurement's unit

    @property
    def ratio(self) -> float | None:
        """simulated / measured, on busbw when measured, else on time."""
        if self.case.measured_busbw is not None:
            return self.simulated_busbw / self.case.measured_busbw
        if self.case.measured_us is not None:
            return self.simulated_us / self.case.measured_us
        return None


def simulate_case(case: Case) -> Row:
    cluster = _cluster(case)
    elem_bytes = 4
    count = case.size_bytes // elem_bytes
    params = AlgorithmParams(channels=2, bidirectional=True)
    result = simulate(cluster, case.collective, case.algorithm, count, "float32", elem_bytes, params, verify=False)
    seconds = result.time_ps * 1e-12
    unit = float(GIB) if case.gib else 1e9
    busbw = case.size_bytes / seconds / unit * bus_factor(case.collective, case.ranks or cluster.chips)
    return Row(case, result.time_ps / 1e6, busbw)


def table() -> list[Row]:
    return [simulate_case(case) for case in CASES]


def markdown(rows: list[Row]) -> str:
    lines = [
        "| case | what | measured | simulated (event) | sim / meas | note |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        c = row.case
        unit = "GiB/s" if c.gib else "GB/s"
        if c.measured_busbw is not None:
            measured = f"{c.measured_busbw:.1f} {unit} busbw"
            simulated = f"{row.simulated_busbw:.1f} {unit} ({row.simulated_us:.1f} us)"
        else:
            measured = f"{c.measured_us:.2f} us"
            simulated = f"{row.simulated_us:.2f} us"
        lines.append(f"| {c.case} | {c.description} | {measured} | {simulated} | {row.ratio:.3f} | {c.note} |")
    return "\n".join(lines)


def main() -> None:
    print(markdown(table()))


if __name__ == "__main__":
    main()
