"""Name -> algorithm module.  Each module exposes ``analytic_time_ps`` and ``make_schedule``
(the contract is stated in collectives/base.py's docstring and the README)."""
from __future__ import annotations

import importlib
from types import ModuleType

from collectives.base import ALGORITHMS


def algorithm_module(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        raise KeyError(name)
    return importlib.import_module(f"collectives.{name}")
