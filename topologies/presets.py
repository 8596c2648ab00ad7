"""The shipped topology presets (conf/topology/*.yaml), loaded without Hydra.

For tests, benchmarks and scripts; the command line selects presets through
Hydra's config group ``topology=NAME`` instead.
"""
from __future__ import annotations

from omegaconf import OmegaConf

from collsim.errors import ConfigError
from collsim.paths import config_dir
from topologies.loader import load_topology, make_cluster
from topologies.model import Cluster, Topology


def preset_names() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "topology").glob("*.yaml"))


def load_preset(name: str) -> Topology:
    path = config_dir() / "topology" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError("topology", f"unknown preset {name!r}; available: {', '.join(preset_names())}")
    return load_topology(OmegaConf.to_container(OmegaConf.load(path), resolve=True))


def preset_cluster(name: str, nodes: int = 1) -> Cluster:
    return make_cluster(load_preset(name), nodes)
