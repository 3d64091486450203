"""Rank statistics for comparing profiles (Taylor vs exact)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN entries are dropped pairwise."""
    from scipy.stats import spearmanr

    x, y = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)
