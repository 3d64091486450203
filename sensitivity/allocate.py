"""QP allocation from a sensitivity profile: the paper's linear rule and a Lagrangian allocator.

Linear (Hu et al.): S̃ = min-max normalised S; QP_i = QP_base − round(QP_range · S̃_i), clipped to
the codec's range (round half up, so 0.5 → 1 deterministically).

Lagrangian: given per-channel rate R_i(q) and distortion D_i(q) on a QP grid, choose
q_i = argmin_q w_i·D_i(q) + λ·R_i(q). Channels are independent given λ, so enumeration is exact.
The total rate is non-increasing in λ, so a target total size (or average QP) is hit by
bisection on λ (the largest rate ≤ target; the rate is a step function of λ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vcfc.errors import InputError


def normalize(s: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1]; a constant profile maps to zeros."""
    s = np.asarray(s, float)
    lo, hi = float(np.min(s)), float(np.max(s))
    return np.zeros_like(s) if hi <= lo else (s - lo) / (hi - lo)

def allocate_linear(sensitivity: Sequence[float] | np.ndarray, qp_base: int, qp_range: int,
                    qp_limits: tuple[int, int] = (0, 51)) -> np.ndarray:
    """QP_i = clip(QP_base − round(QP_range · S̃_i)); the most sensitive channel gets QP_base − QP_range."""
    s = np.asarray(sensitivity, float)
    if s.ndim != 1 or s.size == 0:
        raise InputError("sensitivity must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(s)):
        raise InputError("sensitivity holds NaN/Inf")
    if qp_range < 0:
        raise InputError(f"qp_range must be >= 0, got {qp_range}")
    q = qp_base - np.floor(qp_range * normalize(s) + 0.5).astype(np.int64)
    return np.clip(q, qp_limits[0], qp_limits[1]).astype(np.int64)

def allocate_levels(level_sensitivity: Mapping[str, float], qp_base: int, qp_range: int,
                    qp_limits: tuple[int, int] = (0, 51)) -> dict[str, int]:
    """One QP per pyramid level by the linear rule on the per-level importances."""
    names = list(level_sensitivity)
    q = allocate_linear([level_sensitivity[k] for k in names], qp_base, qp_range, qp_limits)
    return {k: int(v) for k, v in zip(names, q)}

@dataclass
class Allocation:
    qps: np.ndarray          # (C,) chosen QP per channel
    lam: float
    rate: float              # Σ R_i(q_i)   (bytes)
    distortion: float        # Σ w_i D_i(q_i)

def _check_tables(weights: np.ndarray, rate: np.ndarray, dist: np.ndarray, qps: np.ndarray) -> None:
    c, k = rate.shape
    if dist.shape != (c, k) or weights.shape != (c,) or qps.shape != (k,):
        raise InputError(f"table shapes disagree: weights {weights.shape}, rate {rate.shape}, "
                         f"dist {dist.shape}, qps {qps.shape}")

def allocate_lagrangian(weights: Sequence[float] | np.ndarray, rate: np.ndarray, dist: np.ndarray,
                        qps: Sequence[int], lam: float) -> Allocation:
    """Per channel, the QP of `qps` minimising w_i·D_i(q) + λ·R_i(q) (ties: the higher QP).

    rate, dist: (C, K) tables over the K QPs of `qps`."""
    w = np.asarray(weights, float)
    r, d, q = np.asarray(rate, float), np.asarray(dist, float), np.asarray(qps, np.int64)
    _check_tables(w, r, d, q)
    order = np.argsort(-q, kind="stable")           # scan high QP first so ties go to it
    cost = w[:, None] * d[:, order] + lam * r[:, order]
    pick = order[np.argmin(cost, axis=1)]
    rows = np.arange(len(w))
    return Allocation(q[pick], float(lam), float(r[rows, pick].sum()), float((w * d[rows, pick]).sum()))

def lagrangian_curve(weights: np.ndarray, rate: np.ndarray, dist: np.ndarray, qps: Sequence[int],
                     lambdas: Sequence[float]) -> list[Allocation]:
    """The allocation for each λ: a rate/weighted-distortion curve."""
    return [allocate_lagrangian(weights, rate, dist, qps, lam) for lam in lambdas]

def lagrangian_for_target(weights: np.ndarray, rate: np.ndarray, dist: np.ndarray, qps: Sequence[int], *,
                          target_bytes: float | None = None, target_qp: float | None = None,
                          iters: int = 200) -> Allocation:
    """Bisection on λ (log scale): the largest total rate ≤ target_bytes, or the lowest average QP
    ≥ target_qp. Raises InputError when even the coarsest choice misses the target."""
    if (target_bytes is None) == (target_qp is None):
        raise InputError("give exactly one of target_bytes and target_qp")

    def ok(a: Allocation) -> bool:
        return a.rate <= target_bytes if target_bytes is not None else float(a.qps.mean()) >= target_qp

    lo, hi = 0.0, 1.0
    while not ok(allocate_lagrangian(weights, rate, dist, qps, hi)):
        hi *= 10.0
        if hi > 1e30:
            what = f"{target_bytes} bytes" if target_bytes is not None else f"average QP {target_qp}"
            raise InputError(f"target {what} cannot be reached within the QP grid {list(qps)}")
    first = allocate_lagrangian(weights, rate, dist, qps, lo)
    if ok(first):
        return first
    for _ in range(iters):                     # invariant: ok(hi), not ok(lo)
        mid = np.sqrt(lo * hi) if lo > 0 else hi / 2.0
        if mid in (lo, hi):
            break
        if ok(allocate_lagrangian(weights, rate, dist, qps, mid)):
            hi = mid
        else:
            lo = mid
    return allocate_lagrangian(weights, rate, dist, qps, hi)

def task_weights(sensitivity: np.ndarray, dist: np.ndarray, qps: Sequence[int], qp_base: int) -> np.ndarray:
    """w_i = S_i / D_i(QP_base): S_i is the task cost of channel i's noise AT QP_base, so
    w_i·D_i(q) estimates its task cost at q (task cost ∝ feature MSE per channel). Without
    QP_base in the grid, the nearest grid QP is used; D_i = 0 (constant channel) gives w_i = 0."""
    q = np.asarray(qps)
    k = int(np.argmin(np.abs(q - qp_base)))
    d0 = np.asarray(dist, float)[:, k]
    s = np.clip(np.asarray(sensitivity, float), 0, None)
    return np.where(d0 > 0, s / np.where(d0 > 0, d0, 1.0), 0.0)
