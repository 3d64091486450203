"""QP allocation: the rules, the allocation methods' registry, and the one entry point for
profile-based allocation.

Rules. Linear (Hu et al.): S̃ = min-max normalised S; QP_i = QP_base − round(QP_range · S̃_i),
clipped to the codec's range (round half up, so 0.5 → 1 deterministically). Lagrangian: given
per-channel rate R_i(q) and distortion D_i(q) on a QP grid, q_i = argmin_q w_i·D_i(q) + λ·R_i(q);
channels are independent given λ, so enumeration is exact, and the total rate is non-increasing
in λ, so a target total size (or average QP) is hit by bisection on λ.

Registry. `ALLOCATORS` (name → Allocator) says where each method's QPs come from: nothing
(uniform), a file (fixed QPs the user gives), a dataset-level sensitivity profile (linear,
lagrangian) or the image being coded (perimage, rdo, rdo-uniform: decided at encode time), which
options it reads, and its function. `vcfc allocate`, `vcfc eval` and experiment grids all go
through the entry: adding a method is a function in a module plus one entry below.
Torch-free: the CLI lists these choices at start-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from vcfc.errors import InputError
from vcfc.registry import Registry

from .options import RdoSettings

if TYPE_CHECKING:  # the profile module brings pandas, the bank PyAV; the CLI imports this registry at start-up
    from vcfc.bank import FrameBank

    from .channel_sweep import ChannelSweep
    from .profile import Profile


# ----------------------------------------------------------------------------- the rules


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


# ----------------------------------------------------------------------------- the registry

# the options rdo and rdo-uniform read: RdoSettings' fields (λ included) but the method's own flag
RDO_OPTIONS = tuple(f.name for f in fields(RdoSettings) if f.name not in ("uniform_only", "tools"))


@dataclass(frozen=True)
class ImageJob:
    """What a per-image allocator gets: one image's features and its codings."""
    features: Any                          # (C,H,W) tensor on the tail's device
    tail: Callable[[Any], Any]             # (B,C,H,W) -> task output
    bank: FrameBank                        # this image coded at any QP (layout frames)
    qp: int                                # the base QP of this configuration
    allocation: str                        # the method's name (one function may serve several)
    options: dict[str, Any]                # the configuration's options (qp_range, rdo's λ, ...)
    sweep: Callable[[str], ChannelSweep]   # a batched one-channel sweep for a distance name


@dataclass(frozen=True)
class Allocator:
    """One allocation method.

    source: "none" (every channel at the base QP), "fixed" (QPs given by the user, e.g. a file),
    "profile" (from a dataset-level profile) or "image" (decided per image while coding it).
    fn: "module:function", imported on first use (per-image ones import torch): for "profile"
    ``fn(profile, qp_base, qp_range, qp_limits, target) -> (QPs, note)``, for "image"
    ``fn(ImageJob) -> QPs``. options: the configuration options it reads (``qp_range``, rdo's
    settings and ``lam``). needs_lambda: one λ per run, calibrated on held-out images first.
    per_channel: it gives channels QPs of their own (so it needs one picture per channel; a
    picture, layout image, has one QP). selectable: offered by `--allocation` and experiment `methods` ("file" is chosen by
    `vcfc eval --channel-qps`).
    """

    name: str
    source: str
    description: str
    fn: str = ""
    options: tuple[str, ...] = ()
    needs_lambda: bool = False
    per_channel: bool = False
    selectable: bool = True

    def function(self) -> Callable[..., Any]:
        if not self.fn:
            raise InputError(f"allocation {self.name} has no allocation function (its QPs come from {self.source})")
        module, _, name = self.fn.partition(":")
        return getattr(importlib.import_module(module), name)

    def allocate_image(self, job: ImageJob) -> np.ndarray:
        """This image's QP per channel (source "image" only)."""
        if self.source != "image":
            raise InputError(f"allocation {self.name} does not decide QPs per image")
        return self.function()(job)

    def pick_options(self, available: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The options this method reads, from what a run offers (None values left out), sorted."""
        return tuple(sorted((k, v) for k, v in available.items() if k in self.options and v is not None))


ALLOCATORS: Registry[Allocator] = Registry("allocation", [(a.name, a) for a in (
    Allocator("uniform", "none", "every channel at the base QP (the unified-QP anchor)"),
    Allocator("file", "fixed", "the QPs of a file, one per channel (vcfc eval --channel-qps)", selectable=False),
    Allocator("linear", "profile", "Hu et al.'s rule on a dataset profile: QP_i = QP − round(range·S̃_i)",
              fn=f"{__name__}:linear_from_profile", per_channel=True),
    Allocator("lagrangian", "profile", "per channel argmin w_i·D_i(q) + λ·R_i(q) from the profile's R/D tables",
              fn=f"{__name__}:lagrangian_from_profile", per_channel=True),
    Allocator("perimage", "image", "Hu et al.'s Algorithm 1 per image: the linear rule on this image's own sensitivities",
              fn="vcfc.sensitivity.perimage:allocate_job", options=("qp_range",), per_channel=True),
    Allocator("rdo", "image", "closed loop per image: argmin KL(task output) + λ·bits over really coded QP vectors",
              fn="vcfc.sensitivity.rdo:allocate_job", options=RDO_OPTIONS, needs_lambda=True, per_channel=True),
    Allocator("rdo+skip", "image", "rdo whose search may also leave a channel uncoded (the decoder fills it with "
              "its mean code): judged by the same KL + λ·bits",
              fn="vcfc.sensitivity.rdo:allocate_job", options=RDO_OPTIONS, needs_lambda=True, per_channel=True),
    Allocator("rdo-fast", "image", "rdo at a bounded cost (≈ 2 uniform encodes): codes only the QPs its search can use "
              "(base for all, base+step for the least sensitive half, base−step for the most sensitive quarter), with skip",
              fn="vcfc.sensitivity.rdo_fast:allocate_job", options=RDO_OPTIONS, needs_lambda=True, per_channel=True),
    Allocator("rdo-uniform", "image", "the same search over uniform QPs only: one QP per image, chosen by D + λ·R",
              fn="vcfc.sensitivity.rdo:allocate_job", options=RDO_OPTIONS, needs_lambda=True),
)])


def selectable_allocators() -> list[str]:
    """The methods a user may name (CLI --allocation, experiment methods)."""
    return [name for name, a in ALLOCATORS.items() if a.selectable]


@dataclass(frozen=True)
class Target:
    """What the Lagrangian aims at: a payload size, an average QP, a fixed λ, or (default) the
    size the uniform allocation at the base QP has according to the profile's tables."""

    bytes: float | None = None
    qp: float | None = None
    lam: float | None = None

    def describe(self) -> str:
        if self.lam is not None:
            return f"λ={self.lam:g}"
        if self.bytes is not None:
            return f"{self.bytes:g} payload bytes per image"
        if self.qp is not None:
            return f"average QP {self.qp:g}"
        return "the uniform rate at the base QP"


def allocate_from_profile(method: str, profile: Profile, qp_base: int, qp_range: int,
                          qp_limits: tuple[int, int], target: Target = Target()) -> tuple[np.ndarray, str]:
    """Per-entry QPs (one per channel, or per level for level profiles) and a note on how, by
    the profile method ``method`` (the function its registry entry names)."""
    alloc = ALLOCATORS.get(method)
    if alloc.source != "profile":
        raise InputError(f"allocation {method!r} does not come from a profile")
    lo, hi = qp_limits
    if not lo <= qp_base <= hi:
        raise InputError(f"base QP {qp_base} is outside the codec's range {lo}..{hi}")
    return alloc.function()(profile, qp_base, qp_range, qp_limits, target)


def linear_from_profile(profile: Profile, qp_base: int, qp_range: int, qp_limits: tuple[int, int],
                        target: Target) -> tuple[np.ndarray, str]:
    """QP_i = QP_base − round(QP_range · S̃_i), clipped to the codec's range."""
    return allocate_linear(profile.sensitivity, qp_base, qp_range, qp_limits), ""


def lagrangian_from_profile(profile: Profile, qp_base: int, qp_range: int, qp_limits: tuple[int, int],
                            target: Target) -> tuple[np.ndarray, str]:
    """Candidates within QP_base ± QP_range from the profile's R/D grid; task weights anchored at
    the QP the profile was measured at; λ from ``target``."""
    lo, hi = qp_limits
    rd = profile.rd()
    if rd is None:
        raise InputError("the Lagrangian allocator needs rate/distortion tables in the profile (measure with --rd-qps)")
    grid, rate, dist = rd
    keep = [k for k, q in enumerate(grid) if abs(q - qp_base) <= qp_range and lo <= q <= hi]
    if not keep:
        raise InputError(f"no QP of the profile grid {grid} within {qp_base}±{qp_range}")
    # The additive cost model is local: candidates stay within QP_base ± range, like the linear rule.
    # S_i was measured at the profile's QP: the weights are anchored there, not at qp_base.
    weights = task_weights(profile.sensitivity, dist, grid, int(profile.meta.get("qp_base", qp_base)))
    cand = [grid[k] for k in keep]
    r, d = rate[:, keep], dist[:, keep]
    if target.lam is not None:
        a = allocate_lagrangian(weights, r, d, cand, target.lam)
    elif target.bytes is not None or target.qp is not None:
        a = lagrangian_for_target(weights, r, d, cand, target_bytes=target.bytes, target_qp=target.qp)
    else:
        if qp_base not in grid:
            raise InputError(f"QP {qp_base} is not in the profile's R/D grid {grid}: give a target")
        a = lagrangian_for_target(weights, r, d, cand, target_bytes=float(rate[:, grid.index(qp_base)].sum()))
    return a.qps, f"λ={a.lam:.4g}, predicted payload {a.rate:.0f} B/image ({target.describe()})"


def per_channel(profile: Profile, qps: np.ndarray) -> list[int]:
    """One QP per channel: level profiles repeat each level's QP for its channels."""
    if profile.meta.get("mode") != "level":
        return [int(q) for q in qps]
    counts = profile.meta.get("level_channels") or {}
    levels = list(profile.table["level"])
    if set(levels) - set(counts):
        raise InputError("per-level profile without channel counts")
    return [int(q) for lv, q in zip(levels, qps) for _ in range(int(counts[lv]))]
