"""Bjøntegaard deltas (BD-rate, BD-quality) for rate–fidelity / rate–accuracy curves.

Thin layer over the ``bjontegaard`` package (FAU-LMS; its "pchip" matches the JVET CTC sheet)
that first makes task curves usable: fidelity saturates at 1.0 at low QP and accuracy is noisy,
so curves are reduced to their increasing (Pareto) points before interpolating, and cases with
too few points or too little overlap give NaN with a reason instead of a warning or garbage.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import bjontegaard
import numpy as np

METHODS = ("pchip", "akima", "cubic")
DEFAULT_MIN_OVERLAP = 0.2


@dataclass(frozen=True)
class BDResult:
    value: float  # percent for BD-rate, quality units for BD-quality; NaN when not computable
    reason: str | None  # why it is NaN (None otherwise)
    overlap: float  # shared fraction of the integration axis (0..1)
    n_anchor: int  # points used after cleaning
    n_test: int


def clean_curve(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The increasing part of a rate–quality curve, sorted by rate.

    Drops NaN/inf points and non-positive rates (log axis), then keeps a point only if it has
    both more rate and more quality than the last kept one: of a saturated tail (fidelity 1.0
    at several low QPs) only the cheapest point stays, and a noisy dip is skipped. Both axes are
    then strictly increasing, as both interpolation directions need.
    """
    r = np.asarray(rates, dtype=float).ravel()
    q = np.asarray(quality, dtype=float).ravel()
    if r.shape != q.shape:
        raise ValueError(f"rates and quality differ in length ({r.size} vs {q.size})")
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((-q, r))  # by rate; at equal rate the best quality first
    keep_r: list[float] = []
    keep_q: list[float] = []
    for ri, qi in zip(r[order], q[order]):
        if not keep_r or (ri > keep_r[-1] and qi > keep_q[-1]):
            keep_r.append(float(ri))
            keep_q.append(float(qi))
    return np.array(keep_r), np.array(keep_q)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    span = max(a.max(), b.max()) - min(a.min(), b.min())
    return max(hi - lo, 0.0) / span if span > 0 else 0.0


def _bd(kind: str, anchor_rates: Sequence[float], anchor_quality: Sequence[float],
        test_rates: Sequence[float], test_quality: Sequence[float], method: str, min_overlap: float) -> BDResult:
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")
    ar, aq = clean_curve(anchor_rates, anchor_quality)
    tr, tq = clean_curve(test_rates, test_quality)
    need = 4 if method == "cubic" else 2  # a cubic fit needs 4 points; pchip/akima 2
    if len(ar) < need or len(tr) < need:
        return BDResult(math.nan, f"fewer than {need} increasing points (anchor {len(ar)}, test {len(tr)})",
                        0.0, len(ar), len(tr))
    # BD-rate integrates over quality, BD-quality over log-rate
    overlap = _overlap(aq, tq) if kind == "rate" else _overlap(np.log10(ar), np.log10(tr))
    if overlap <= 0 or overlap < min_overlap:
        axis = "quality" if kind == "rate" else "rate"
        return BDResult(math.nan, f"{axis} ranges overlap {overlap:.0%} < {min_overlap:.0%}",
                        overlap, len(ar), len(tr))
    f = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is judged above
        value = float(f(ar, aq, tr, tq, method=method, require_matching_points=False, min_overlap=0.0))
    if not math.isfinite(value):
        return BDResult(math.nan, "interpolation gave a non-finite value", overlap, len(ar), len(tr))
    return BDResult(value, None, overlap, len(ar), len(tr))


def bd_rate_detail(anchor_rates: Sequence[float], anchor_quality: Sequence[float],
                   test_rates: Sequence[float], test_quality: Sequence[float], method: str = "pchip",
                   min_overlap: float = DEFAULT_MIN_OVERLAP) -> BDResult:
    """BD-rate with the reason when it is NaN and the points/overlap it used."""
    return _bd("rate", anchor_rates, anchor_quality, test_rates, test_quality, method, min_overlap)


def bd_quality_detail(anchor_rates: Sequence[float], anchor_quality: Sequence[float],
                      test_rates: Sequence[float], test_quality: Sequence[float], method: str = "pchip",
                      min_overlap: float = DEFAULT_MIN_OVERLAP) -> BDResult:
    """BD-quality with the reason when it is NaN and the points/overlap it used."""
    return _bd("quality", anchor_rates, anchor_quality, test_rates, test_quality, method, min_overlap)


def bd_rate(anchor_rates: Sequence[float], anchor_quality: Sequence[float],
            test_rates: Sequence[float], test_quality: Sequence[float], method: str = "pchip",
            min_overlap: float = DEFAULT_MIN_OVERLAP) -> float:
    """Average rate difference at equal quality, in percent (negative: the test needs fewer bits).

    NaN when either curve has too few increasing points or the quality ranges overlap less than
    ``min_overlap`` of their union; ``bd_rate_detail`` says why.
    """
    return bd_rate_detail(anchor_rates, anchor_quality, test_rates, test_quality, method, min_overlap).value


def bd_quality(anchor_rates: Sequence[float], anchor_quality: Sequence[float],
               test_rates: Sequence[float], test_quality: Sequence[float], method: str = "pchip",
               min_overlap: float = DEFAULT_MIN_OVERLAP) -> float:
    """Average quality difference at equal rate (test − anchor, in the quality's units; BD-PSNR-like)."""
    return bd_quality_detail(anchor_rates, anchor_quality, test_rates, test_quality, method, min_overlap).value
