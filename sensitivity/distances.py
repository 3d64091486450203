"""Distances between the reference output (features untouched) and outputs of perturbed variants.

Every function maps ref (1, ...) and out (B, ...) to a (B,) tensor, one distance per variant;
all are differentiable except top1 (used by the Taylor estimator).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from vcfc.errors import InputError

# "penultimate": MSE of the output before the classifier (Hu et al.'s choice, the default);
# the other three read the tail's full output (logits for classifiers).
DISTANCES = ("penultimate", "output", "kl", "top1")


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).float()


def mse(ref: Tensor, out: Tensor) -> Tensor:
    return ((_flat(out) - _flat(ref)) ** 2).mean(dim=1)


def kl(ref: Tensor, out: Tensor) -> Tensor:
    """KL(softmax(ref) || softmax(out)) over the class axis (1), averaged over other axes."""
    # float64: the KL of nearly equal outputs is tiny and would round below zero in float32
    p = F.log_softmax(ref.double(), dim=1)
    q = F.log_softmax(out.double(), dim=1)
    k = (p.exp() * (p - q)).sum(dim=1)
    return k.reshape(k.shape[0], -1).mean(dim=1).clamp(min=0)


def top1_flip(ref: Tensor, out: Tensor) -> Tensor:
    """1 where the arg-max class differs from the reference (per pixel averaged for maps)."""
    f = (ref.argmax(dim=1) != out.argmax(dim=1)).float()
    return f.reshape(f.shape[0], -1).mean(dim=1)


def get_distance(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    if name not in DISTANCES:
        raise InputError(f"unknown distance {name!r}; choose from {', '.join(DISTANCES)}")
    return {"penultimate": mse, "output": mse, "kl": kl, "top1": top1_flip}[name]
