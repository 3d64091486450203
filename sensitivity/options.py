"""Sweep and rdo options and the choices they take; torch-free so the CLI and the experiment
loader can list them without importing torch (`vcfc --help` would otherwise pay ~2 s)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from vcfc.errors import InputError
from vcfc.registry import Registry

METHODS: Registry[str] = Registry("method", [
    ("exact", "every channel's variant through the tail, batched"),
    ("taylor", "gradient estimate, one batched backward pass per image"),
    ("naive", "per channel one ffmpeg run and one batch-1 forward (Algorithm 1 as written; slow, for checks)"),
])
PRECISIONS: Registry[str] = Registry("precision", [
    ("fp32", "exact float32 (TF32 off), the default on every device"),
    ("tf32", "TF32 matmuls and convolutions (faster on GPUs, inexact)"),
    ("bf16", "autocast to bfloat16 (faster on GPUs, inexact)"),
])


@dataclass(frozen=True)
class SweepOptions:
    """How the per-channel variants of an image are evaluated.

    method: exact (batched, chunks of ≤ max_batch variants and ≤ max_bytes), naive (per channel
      one ffmpeg run and a batch-1 forward; `naive_channels` limits it, the rest NaN) or taylor
      (one backward pass per image, `taylor_probes` random probes; 0 = plain gradient·noise).
    linear: on|off|auto -- the leading-conv trick for exact (auto: timed on the first image).
    dtype: compute precision of the tensors, a torch dtype or its name (float64 for equality
      tests: MSEs of small output differences cancel in float32).
    precision: fp32 (exact, the default on every device) | tf32 | bf16 (faster on GPUs, inexact).
    """

    method: str = "exact"
    device: Any = "auto"
    max_batch: int = 64
    max_bytes: int | None = None
    linear: str = "auto"
    taylor_probes: int = 16
    dtype: Any = "float32"
    precision: str = "fp32"
    naive_channels: Sequence[int] | None = None

    def checked(self) -> SweepOptions:
        METHODS.get(self.method)
        PRECISIONS.get(self.precision)
        if self.linear not in ("auto", "on", "off"):
            raise InputError(f"linear must be auto, on or off, got {self.linear!r}")
        if self.max_batch < 1:
            raise InputError(f"max_batch must be >= 1, got {self.max_batch}")
        return self

    @classmethod
    def build(cls, options: SweepOptions | None, overrides: dict[str, Any]) -> SweepOptions:
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown sweep option(s) {', '.join(sorted(unknown))}")
        return replace(options or cls(), **overrides).checked()


DISTORTIONS: Registry[str] = Registry("distortion", [
    ("kl", "KL(softmax(reference) ‖ softmax(coded)) of the task output"),
    ("kl-flip", "KL plus flip_penalty when the top-1 class changes"),
])


# What the closed-loop search may do to a channel besides choosing its QP. Each is judged in the
# same loop (KL + λ·bits of the real file) and is switched on by name: allocation "rdo+skip".
RDO_TOOLS: Registry[str] = Registry("rdo tool", [
    ("skip", "the channel is not coded: the decoder fills it with its mean code (sent in the header)"),
])


@dataclass(frozen=True)
class RdoSettings:
    lam: float                 # nats of KL per bit per feature element
    span: int = 6              # candidate QPs within base ± span ...
    step: int = 3              # ... on the grid of multiples of step (plus the base QP)
    groups: int = 8            # channels move in groups of similar sensitivity
    rounds: int = 8            # greedy rounds at most
    uniform_only: bool = False  # search per-image uniform QPs only (no per-channel moves)
    distortion: str = "kl"     # kl | kl-flip (KL + flip_penalty when the top-1 class changes)
    flip_penalty: float = 1.0
    tools: str = ""            # coding tools besides the QP, "+"-separated (RDO_TOOLS): "skip"

    @property
    def tool_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.tools.split("+") if t.strip())

    def checked(self) -> RdoSettings:
        for t in self.tool_set:
            RDO_TOOLS.get(t)
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise InputError(f"rdo: λ must be a finite number >= 0, got {self.lam}")
        DISTORTIONS.get(self.distortion)
        if self.span < 0 or self.step < 1 or self.groups < 1 or self.rounds < 0:
            raise InputError("rdo: span >= 0, step >= 1, groups >= 1 and rounds >= 0")
        return self
