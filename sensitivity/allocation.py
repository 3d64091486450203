"""The allocation methods (registry) and the one entry point for profile-based allocation.

`ALLOCATORS` names every method and where its QPs come from: nothing (uniform), a
dataset-level sensitivity profile (linear, lagrangian), or the image being coded (perimage,
rdo: decided at encode time, see sensitivity.perimage and sensitivity.rdo). `vcfc allocate`,
`vcfc eval --allocation` and experiment grids all call `allocate_from_profile`; per-image methods
name their function here (`image_fn`), which takes one `ImageJob` and returns the image's QPs —
adding one is a function in a module plus one line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vcfc.errors import InputError

from .allocate import allocate_lagrangian, allocate_linear, lagrangian_for_target, task_weights

if TYPE_CHECKING:  # the profile module brings pandas; the CLI imports this registry at start-up
    from vcfc.bank import FrameBank

    from .channel_sweep import ChannelSweep
    from .profile import Profile


@dataclass(frozen=True)
class Allocator:
    name: str
    source: str  # "none" | "profile" | "image"
    description: str
    # per-image methods: "module:function" taking an ImageJob, imported on first use (the CLI
    # imports this registry at start-up and must not pull in torch)
    image_fn: str = ""
    needs_lambda: bool = False  # one λ per run, calibrated on held-out images before coding

    def allocate_image(self, job: ImageJob) -> np.ndarray:
        """This image's QP per channel (source "image" only)."""
        if not self.image_fn:
            raise InputError(f"allocation {self.name} does not decide QPs per image")
        module, _, fn = self.image_fn.partition(":")
        return getattr(importlib.import_module(module), fn)(job)


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


ALLOCATORS: dict[str, Allocator] = {a.name: a for a in (
    Allocator("uniform", "none", "every channel at the base QP (the unified-QP anchor)"),
    Allocator("linear", "profile", "Hu et al.'s rule on a dataset profile: QP_i = QP − round(range·S̃_i)"),
    Allocator("lagrangian", "profile", "per channel argmin w_i·D_i(q) + λ·R_i(q) from the profile's R/D tables"),
    Allocator("perimage", "image", "Hu et al.'s Algorithm 1 per image: the linear rule on this image's own sensitivities",
              image_fn="vcfc.sensitivity.perimage:allocate_job"),
    Allocator("rdo", "image", "closed loop per image: argmin KL(task output) + λ·bits over really coded QP vectors",
              image_fn="vcfc.sensitivity.rdo:allocate_job", needs_lambda=True),
    Allocator("rdo-uniform", "image", "the same search over uniform QPs only: one QP per image, chosen by D + λ·R",
              image_fn="vcfc.sensitivity.rdo:allocate_job", needs_lambda=True),
)}


def get_allocator(name: str) -> Allocator:
    if name not in ALLOCATORS:
        raise InputError(f"unknown allocation {name!r}; choose from {', '.join(ALLOCATORS)}")
    return ALLOCATORS[name]


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
    """Per-entry QPs (one per channel, or per level for level profiles) and a note on how.

    linear: QP_i = QP_base − round(QP_range · S̃_i), clipped to the codec's range.
    lagrangian: candidates within QP_base ± QP_range from the profile's R/D grid; task weights
      anchored at the QP the profile was measured at; λ from `target`.
    """
    alloc = get_allocator(method)
    if alloc.source != "profile":
        raise InputError(f"allocation {method!r} does not come from a profile")
    lo, hi = qp_limits
    if not lo <= qp_base <= hi:
        raise InputError(f"base QP {qp_base} is outside the codec's range {lo}..{hi}")
    if method == "linear":
        return allocate_linear(profile.sensitivity, qp_base, qp_range, qp_limits), ""
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
