"""Data hygiene before fitting: collection gaps and level shifts.

A run of zeros is a *collection gap* (the scraper or log was down), not quiet traffic, when
the level around it makes a run that long implausible; fitting on it would teach a model
that demand drops to zero. Gaps are filled, from one season earlier when known, else by
interpolation. Level shifts are found so that selection can fit on the data after them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from forecaster.models.base import FloatArray

BoolArray = npt.NDArray[np.bool_]


def zero_runs(y: FloatArray) -> list[tuple[int, int]]:
    """``(start, stop)`` index pairs of maximal runs of exact zeros."""
    z = np.concatenate([[0], (y == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(z))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def gap_mask(y: FloatArray, *, min_run: int = 3, expected_total: float = 20.0) -> BoolArray:
    """Boolean mask of zeros that are collection gaps.

    A run of ``k >= min_run`` zeros is a gap when the mean of the ``k`` values on each side
    times ``k`` (the count the run would have held at that level) is at least
    ``expected_total``: at that level, a Poisson run of zeros has probability below e^-20.
    Bursty traffic whose quiet periods are real (neighbours near zero) is left alone.
    """
    mask = np.zeros(y.shape[0], dtype=bool)
    for a, b in zero_runs(y):
        k = b - a
        if k < min_run:
            continue
        around = np.concatenate([y[max(0, a - k) : a], y[b : b + k]])
        if around.size and float(around.mean()) * k >= expected_total:
            mask[a:b] = True
    return mask


def fill_gaps(y: FloatArray, season_length: int = 0) -> tuple[FloatArray, int]:
    """``y`` with collection gaps filled, and how many points were filled."""
    mask = gap_mask(y)
    if not mask.any():
        return y, 0
    out = y.copy()
    idx = np.flatnonzero(mask)
    good = np.flatnonzero(~mask)
    interp = np.interp(idx, good, y[good]) if good.size else np.zeros(idx.size)
    for j, i in enumerate(idx):
        src = i - season_length
        out[i] = out[src] if season_length > 0 and src >= 0 and not mask[src] else interp[j]
    return out, int(idx.size)


def last_level_shift(y: FloatArray, window: int, *, ratio: float = 2.0) -> int | None:
    """Index where the latest level shift begins, or None.

    Compares the median of each ``window``-long block with the block before it, walking
    back from the end; a factor of ``ratio`` or more either way is a shift.
    """
    if window < 2 or y.shape[0] < 2 * window:
        return None
    z = np.log1p(y)
    for end in range(y.shape[0], 2 * window - 1, -window):
        after = float(np.median(z[end - window : end]))
        before = float(np.median(z[end - 2 * window : end - window]))
        if abs(after - before) >= np.log(ratio):
            return end - window
    return None
