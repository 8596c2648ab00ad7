"""Parsing of quantities with units (DESIGN.md section 2).

Internal units: time in integer picoseconds, sizes in integer bytes, bandwidth
in integer bytes per second.  Config strings carry their unit explicitly:
``256GB/s``, ``200Gbps``, ``1.5us``, ``64MiB``.  Decimal prefixes are powers of
1000 (GB = 1e9 bytes, Gbps = 1e9 bits/s), binary prefixes powers of 1024
(GiB = 2**30 bytes).  A bare number is rejected: the unit must be written.

Conversions are exact (``fractions.Fraction``), so ``1.5us`` is exactly
1,500,000 ps and ``0.1GB/s`` exactly 100,000,000 B/s.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

from collsim.errors import ConfigError

PS_PER_S = 10**12

_DECIMAL = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}

_SIZE_UNITS = {**{p + "B": m for p, m in _DECIMAL.items()}, **{p + "B": m for p, m in _BINARY.items()}}
_BANDWIDTH_UNITS = {
    **{p + "B/s": Fraction(m) for p, m in _DECIMAL.items()},
    **{p + "B/s": Fraction(m) for p, m in _BINARY.items()},
    **{p + "bps": Fraction(m, 8) for p, m in _DECIMAL.items()},
    **{p + "bit/s": Fraction(m, 8) for p, m in _DECIMAL.items()},
}
_TIME_UNITS = {"ps": 1, "ns": 10**3, "us": 10**6, "µs": 10**6, "ms": 10**9, "s": 10**12}

_QUANTITY = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ/]*)\s*$")
_UNIT_HELP = {
    "size": "B with a decimal (kB MB GB TB PB) or binary (KiB MiB GiB TiB PiB) prefix",
    "bandwidth": "B/s or bps (bit/s) with a decimal or binary prefix, e.g. GB/s, GiB/s, Gbps",
    "time": "ps, ns, us, ms or s",
}


def _split(field: str, text, kind: str, units: dict) -> tuple[Fraction, object]:
    if isinstance(text, bool) or text is None:
        raise ConfigError(field, f"expected a {kind} with a unit (e.g. {_example(kind)}), got {text!r}")
    match = _QUANTITY.match(str(text))
    if not match:
        raise ConfigError(field, f"cannot parse {text!r} as a {kind} (e.g. {_example(kind)})")
    number, unit = match.groups()
    if unit == "":
        raise ConfigError(field, f"bare number {text!r} has no unit; write e.g. {_example(kind)}")
    if unit not in units:
        raise ConfigError(field, f"unknown {kind} unit {unit!r} in {text!r}; use {_UNIT_HELP[kind]}")
    return Fraction(number), units[unit]


def _example(kind: str) -> str:
    return {"size": "64MiB", "bandwidth": "256GB/s or 200Gbps", "time": "1.5us"}[kind]


def parse_size(text, field: str = "size") -> int:
    """Bytes as an int: ``"64MiB"`` -> 67108864.  Must be a whole, non-negative number of bytes."""
    value, scale = _split(field, text, "size", _SIZE_UNITS)
    if value < 0:
        raise ConfigError(field, f"must be >= 0 bytes, got {text!r}")
    nbytes = value * scale
    if nbytes.denominator != 1:
        raise ConfigError(field, f"{text!r} is not a whole number of bytes")
    return int(nbytes)


def parse_bandwidth(text, field: str = "bandwidth") -> int:
    """Bytes per second as an int (rounded to the nearest byte/s); must be > 0."""
    value, scale = _split(field, text, "bandwidth", _BANDWIDTH_UNITS)
    bps = round(value * scale)
    if bps <= 0:
        raise ConfigError(field, f"bandwidth must be > 0, got {text!r}")
    return int(bps)


def parse_time(text, field: str = "time") -> int:
    """Picoseconds as an int (rounded to the nearest ps); must be >= 0."""
    value, scale = _split(field, text, "time", _TIME_UNITS)
    if value < 0:
        raise ConfigError(field, f"must be >= 0, got {text!r}")
    return int(round(value * scale))


def serialization_ps(nbytes: int, rate_Bps: int) -> int:
    """Time to push ``nbytes`` through a link of ``rate_Bps``: ceil(b * 1e12 / rate) ps.

    Exact integer arithmetic; the Cython engine uses the same formula with
    128-bit integers, so analytic and event results agree to the picosecond.
    """
    return -((-nbytes * PS_PER_S) // rate_Bps)


def format_size(nbytes: int) -> str:
    """Short human form with binary prefixes: 1073741824 -> '1GiB'."""
    for unit, mult in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= mult and nbytes % mult == 0:
            return f"{nbytes // mult}{unit}"
    return f"{nbytes}B"


def ps_to_us(ps: int) -> float:
    return ps / 1e6


def effective_rate(rate_Bps: int, efficiency: float) -> int:
    """Achievable rate: line rate times efficiency, rounded to a whole byte/s (at least 1)."""
    return max(1, int(math.floor(Fraction(rate_Bps) * Fraction(str(efficiency)) + Fraction(1, 2))))
