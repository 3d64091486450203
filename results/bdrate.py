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

from vcfc.registry import Registry

# interpolations of a curve: pchip matches the JVET CTC sheet (the default everywhere)
METHODS: Registry[str] = Registry("interpolation method", [
    ("pchip", "piecewise cubic Hermite, monotone"), ("akima", "Akima spline"), ("cubic", "cubic fit (4+ points)")],
    error=ValueError)
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
    METHODS.get(method)
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


# --- bootstrap over images ---------------------------------------------------------------------

DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
MAX_NAN_SHARE = 0.05  # more resamples without a BD-rate than this: no interval


def bootstrap_indices(n: int, n_boot: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """``[n_boot, n]`` image indices drawn with replacement (fixed seed: the same draw every time)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n)) if n else np.zeros((n_boot, 0), int)


def resampled_means(values: np.ndarray, idx: np.ndarray, chunk_cells: int = 4_000_000) -> np.ndarray:
    """Column means of ``values`` ``[images, k]`` over each row of image indices ``idx`` ``[B, n]``.

    NaN cells (an image without a result at that point) are skipped; a column with no value in a
    resample is NaN. Returns ``[B, k]``; works in chunks of resamples to bound the memory.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[:, None]
    ok = np.isfinite(v)
    filled = np.where(ok, v, 0.0)
    okf = ok.astype(float)
    b, n = idx.shape
    out = np.full((b, v.shape[1]), np.nan)
    step = max(1, chunk_cells // max(1, n * v.shape[1]))
    for s in range(0, b, step):
        i = idx[s : s + step]
        total, count = filled[i].sum(axis=1), okf[i].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + step] = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
    return out


def percentile_interval(values: np.ndarray, ci: float = 0.95,
                        max_nan_share: float = MAX_NAN_SHARE) -> tuple[float, float] | None:
    """The ``ci`` percentile interval of the finite resampled ``values``; None when more than
    ``max_nan_share`` of them are NaN (an interval of the lucky resamples would mislead)."""
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if not v.size or v.size - finite.size > max_nan_share * v.size:
        return None
    tail = (1 - ci) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def _means(values: np.ndarray) -> np.ndarray:
    return resampled_means(values, np.arange(np.asarray(values).shape[0])[None, :])[0]


@dataclass(frozen=True)
class BDBootstrap:
    """BD-rate of paired per-image data with its bootstrap confidence interval (percent)."""

    value: float  # BD-rate on all n images (NaN with ``reason``)
    ci_low: float  # percentile interval over the resamples; NaN when not computable (``reason``)
    ci_high: float
    n_images: int  # images in both curves (the resampled unit)
    n_boot: int  # resamples drawn
    nan_resamples: int  # resamples whose BD-rate was NaN (left out of the interval)
    bd_quality: float  # BD-quality on all n images (no interval)
    reason: str | None  # why value or interval is NaN
    points_anchor: int  # curve points (QPs with data) before cleaning
    points_test: int


def bd_rate_bootstrap(anchor_rates: np.ndarray, anchor_quality: np.ndarray, test_rates: np.ndarray,
                      test_quality: np.ndarray, *, quality_of_mean=None, method: str = "pchip",
                      min_overlap: float = DEFAULT_MIN_OVERLAP, n_boot: int = DEFAULT_N_BOOT,
                      seed: int = DEFAULT_SEED, ci: float = 0.95,
                      max_nan_share: float = MAX_NAN_SHARE) -> BDBootstrap:
    """BD-rate of a test curve against an anchor with a paired percentile bootstrap over images.

    Inputs are ``[images, points]`` arrays (one column per QP; NaN where an image has no result);
    row i of the anchor and of the test arrays must be the same image. A curve point is the mean
    rate and the mean quality over images at that QP; ``quality_of_mean`` maps the mean quality
    to the plotted one (e.g. ``lambda m: -10 * np.log10(m)`` for output KL in dB).
    Each of ``n_boot`` resamples draws the images with replacement (the same draw for anchor and
    test), recomputes both curves and their BD-rate (``bd_rate_detail``: curve cleaning, pchip).
    The interval is the ``ci`` percentile interval of the finite resampled BD-rates; when more
    than ``max_nan_share`` of them are NaN it is NaN with a reason. ``n_boot=0``: no interval.
    """
    ar, aq, tr, tq = (np.asarray(x, dtype=float) for x in (anchor_rates, anchor_quality, test_rates, test_quality))
    ar, aq, tr, tq = (x[:, None] if x.ndim == 1 else x for x in (ar, aq, tr, tq))
    if ar.shape != aq.shape or tr.shape != tq.shape or ar.shape[0] != tr.shape[0]:
        raise ValueError(f"paired [images, points] arrays expected: anchor {ar.shape}/{aq.shape}, "
                         f"test {tr.shape}/{tq.shape}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    n = ar.shape[0]
    qf = quality_of_mean or (lambda m: m)
    k_a = int(np.isfinite(_means(ar) + _means(aq)).sum()) if n else 0
    k_t = int(np.isfinite(_means(tr) + _means(tq)).sum()) if n else 0

    def curves(idx: np.ndarray) -> list[np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return [resampled_means(ar, idx), qf(resampled_means(aq, idx)),
                    resampled_means(tr, idx), qf(resampled_means(tq, idx))]

    nan = math.nan
    if n == 0:
        return BDBootstrap(nan, nan, nan, 0, n_boot, 0, nan, "no image has results in both curves", k_a, k_t)
    full = [c[0] for c in curves(np.arange(n)[None, :])]
    point = bd_rate_detail(*full, method=method, min_overlap=min_overlap)
    quality = bd_quality_detail(*full, method=method, min_overlap=min_overlap)
    if math.isnan(point.value):
        return BDBootstrap(nan, nan, nan, n, n_boot, 0, quality.value, point.reason, k_a, k_t)
    if n_boot <= 0:
        return BDBootstrap(point.value, nan, nan, n, 0, 0, quality.value, "no resamples: no interval", k_a, k_t)
    if n < 2:
        return BDBootstrap(point.value, nan, nan, n, n_boot, 0, quality.value, "one image: no interval", k_a, k_t)
    a_r, a_q, t_r, t_q = curves(bootstrap_indices(n, n_boot, seed))
    values = np.empty(n_boot)
    reasons: dict[str, int] = {}
    for b in range(n_boot):
        r = bd_rate_detail(a_r[b], a_q[b], t_r[b], t_q[b], method=method, min_overlap=min_overlap)
        values[b] = r.value
        if r.reason:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    n_nan = int(n_boot - np.isfinite(values).sum())
    interval = percentile_interval(values, ci, max_nan_share)
    if interval is None:
        common = max(reasons, key=reasons.get) if reasons else "non-finite"
        why = (f"{n_nan} of {n_boot} resamples have no BD-rate (> {max_nan_share:.0%}; mostly: {common}): "
               f"no interval")
        return BDBootstrap(point.value, nan, nan, n, n_boot, n_nan, quality.value, why, k_a, k_t)
    return BDBootstrap(point.value, *interval, n, n_boot, n_nan, quality.value, None, k_a, k_t)


def mean_ci(values: np.ndarray, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED, ci: float = 0.95,
            of_mean=None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap ``ci`` interval of the column means of ``values`` ``[images, k]``.

    ``of_mean`` maps a mean to the reported quantity (e.g. KL → dB) before taking percentiles.
    Fewer than 2 finite values in a column: NaN.
    """
    v = np.asarray(values, dtype=float)
    v = v[:, None] if v.ndim == 1 else v
    k = v.shape[1]
    if v.shape[0] < 2 or n_boot <= 0:
        return np.full(k, np.nan), np.full(k, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = resampled_means(v, bootstrap_indices(v.shape[0], n_boot, seed))
        if of_mean is not None:
            m = of_mean(m)
    lo, hi = np.full(k, np.nan), np.full(k, np.nan)
    for j in range(k):
        interval = percentile_interval(m[:, j], ci) if np.isfinite(v[:, j]).sum() >= 2 else None
        if interval is not None:
            lo[j], hi[j] = interval
    return lo, hi
