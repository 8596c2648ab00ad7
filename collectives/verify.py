"""Data fidelity: known inputs and element-by-element checks, counted like nccl-tests' #wrong.

Chip c starts with ``f(c, i) = ((131 c + 31 i) mod 7) - 3`` at element i: small
integers, so every partial sum an algorithm can form is exactly representable
(float16 up to 682 chips, float32 up to 5.5 million) and the result does not
depend on the order of additions.  Expected results are computed in closed form
from residue counts, never by re-running a collective.
"""
from __future__ import annotations

import numpy as np

from collectives.base import Collective, split_counts
from collsim.errors import ConfigError

_MOD = 7
_SPAN = 3  # |f| <= 3
_EXACT_INTEGER_LIMIT = {"float16": 2**11, "float32": 2**24, "int32": 2**31 - 1}


def check_exact(dtype: str, chips: int) -> None:
    """Refuse data-fidelity runs whose sums would not be exact in ``dtype``."""
    limit = _EXACT_INTEGER_LIMIT[dtype]
    if _SPAN * chips > limit:
        raise ConfigError(
            "dtype",
            f"{dtype} holds exact sums of the check pattern only up to {limit // _SPAN} chips "
            f"(cluster has {chips}); use float32 or int32",
        )


def _pattern(chips: np.ndarray, index: np.ndarray) -> np.ndarray:
    return ((131 * chips[:, None] + 31 * index[None, :]) % _MOD) - _SPAN


def blocks(count: int, n: int) -> np.ndarray:
    """Start offsets of the n blocks (length n + 1) of split_counts(count, n)."""
    return np.concatenate(([0], np.cumsum(split_counts(count, n)))).astype(np.int64)


def init_buffers(buffers: np.ndarray, collective: Collective, count: int, first_chip: int = 0,
                 chips: int | None = None) -> None:
    """Fill every chip's buffer with its inputs (in place, as NCCL's in-place collectives).

    all-gather: chip r's input is its own block r; every other element gets a
    poison value (-99) so a missing copy is always counted wrong.  Row k holds
    chip ``first_chip + k`` of a collective over ``chips`` chips (default: the
    rows are all of them; an MPI rank holds its own chips only).
    """
    rows = buffers.shape[0]
    n = rows if chips is None else chips
    ids = np.arange(first_chip, first_chip + rows, dtype=np.int64)
    index = np.arange(buffers.shape[1], dtype=np.int64)
    if collective is Collective.all_gather:
        buffers[:] = -99
        bounds = blocks(count, n)
        for k in range(rows):
            lo, hi = bounds[ids[k]], bounds[ids[k] + 1]
            buffers[k, lo:hi] = _pattern(ids[k : k + 1], index[lo:hi])[0]
        return
    for lo in range(0, rows, 1024):  # bounded temporaries for large clusters
        hi = min(rows, lo + 1024)
        buffers[lo:hi] = _pattern(ids[lo:hi], index)


def reduced_values(n: int, count: int) -> np.ndarray:
    """sum_c f(c, i) for i < count, from how many chips fall in each residue class."""
    residues = np.bincount((131 * np.arange(n, dtype=np.int64)) % _MOD, minlength=_MOD)
    index = np.arange(count, dtype=np.int64)
    total = np.zeros(count, dtype=np.int64)
    for r, how_many in enumerate(residues):
        total += how_many * (((r + 31 * index) % _MOD) - _SPAN)
    return total


def count_wrong(buffers: np.ndarray, collective: Collective, count: int, first_chip: int = 0,
                chips: int | None = None) -> int:
    """Elements that differ from the exact expected result, over all rows (chips as in init_buffers)."""
    rows = buffers.shape[0]
    n = rows if chips is None else chips
    if count == 0:
        return 0
    if collective is Collective.all_gather:
        bounds = blocks(count, n)
        owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(bounds))
        expected = ((131 * owner + 31 * np.arange(count)) % _MOD) - _SPAN
        return int(np.count_nonzero(buffers[:, :count] != expected.astype(buffers.dtype)[None, :]))
    expected = reduced_values(n, count).astype(buffers.dtype)
    if collective is Collective.all_reduce:
        return int(np.count_nonzero(buffers[:, :count] != expected[None, :]))
    bounds = blocks(count, n)
    wrong = 0
    for k in range(rows):
        lo, hi = bounds[first_chip + k], bounds[first_chip + k + 1]
        wrong += int(np.count_nonzero(buffers[k, lo:hi] != expected[lo:hi]))
    return wrong
