"""Sweep speed (prints figures; asserts nothing).

1. Analytic cost per algorithm at the largest trn3_scaling point (6,944 Trn3
   UltraServers = 999,936 chips): CPU ms per message size.
2. Hydra's own cost per sweep job: a sweep of tiny jobs (one 1 KiB size on one
   trn2 server), CPU seconds per job.  Hydra composes each job's config twice
   (the basic sweeper validates the batch, then the launcher composes it again).
3. End to end: ``collsim -m experiment=trn3_scaling fidelity=analytic`` (42 jobs,
   144 to 999,936 chips, 23 sizes each) into a temporary directory: wall and
   CPU seconds (CPU because the machine may be shared).

Usage: .venv/bin/python benchmarks/sweep_speed.py [--skip-end-to-end]
"""
import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sweep(args, sweep_dir) -> tuple[float, float]:
    cpu0, wall0 = children_cpu_s(), time.perf_counter()
    subprocess.run([str(BIN / "collsim"), "-m", *args, f"hydra.sweep.dir={sweep_dir}"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - wall0, children_cpu_s() - cpu0


def analytic_costs() -> None:
    from hydra import compose, initialize_config_dir

    import collsim.app  # noqa: F401  (registers the schemas)
    from collectives.registry import algorithm_module
    from collsim.paths import config_dir
    from collsim.runner import build_spec

    with initialize_config_dir(str(config_dir()), version_base=None):
        cfg = compose("config", ["topology=trn3-ultraserver", "cluster.nodes=6944", "sizes.min=1KiB", "sizes.max=4GiB"])
    spec = build_spec(cfg)
    print(f"1. analytic cost at {spec.cluster.chips:,} chips, {len(spec.sizes)} sizes (1 KiB..4 GiB):")
    for name in ("ring", "tree", "hierarchical"):
        module = algorithm_module(name)
        start = time.process_time()
        for size in spec.sizes:
            module.analytic_time_ps(spec.cluster, spec.collective, size // spec.elem_bytes, spec.elem_bytes, spec.params)
        cpu = time.process_time() - start
        print(f"   {name:>12}: {1e3 * cpu / len(spec.sizes):8.2f} ms CPU per size")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--jobs", type=int, default=16, help="tiny jobs for the overhead figure")
    args = parser.parse_args()
    analytic_costs()
    with tempfile.TemporaryDirectory() as tmp:
        nodes = ",".join(str(n) for n in range(1, args.jobs + 1))
        wall, cpu = run_sweep([f"cluster.nodes={nodes}", "algorithm=ring", "sizes.min=1KiB", "sizes.max=1KiB"],
                              Path(tmp) / "tiny")
        one_wall, one_cpu = run_sweep(["cluster.nodes=1", "algorithm=ring", "sizes.min=1KiB", "sizes.max=1KiB"],
                                      Path(tmp) / "one")
        per_job = (cpu - one_cpu) / (args.jobs - 1)
        print(f"2. Hydra cost per sweep job: {per_job:.3f} s CPU "
              f"({args.jobs} tiny jobs: {cpu:.2f} s CPU, {wall:.2f} s wall; 1 job: {one_cpu:.2f} s CPU)")
        if not args.skip_end_to_end:
            wall, cpu = run_sweep(["experiment=trn3_scaling", "fidelity=analytic"], Path(tmp) / "trn3")
            import csv

            with open(Path(tmp) / "trn3" / "combined.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            chips = max(int(r["chips"]) for r in rows)
            compute = sum(float(r["wall_s"]) for r in rows)
            print(f"3. collsim -m experiment=trn3_scaling fidelity=analytic: {wall:.1f} s wall, {cpu:.1f} s CPU; "
                  f"{len(rows)} rows up to {chips:,} chips; {compute:.1f} s of it inside the algorithms")


if __name__ == "__main__":
    main()
