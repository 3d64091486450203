"""Distances between the reference output (features untouched) and outputs of perturbed variants.

Registry: DISTANCES (name → Distance). Each maps ref (1, ...) and out (B, ...) to a (B,) tensor,
one distance per variant; `reads` says which output it compares: "penultimate" (the input of the
classifier layer) or "output" (the tail's full output, logits for classifiers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vcfc.registry import Registry

if TYPE_CHECKING:  # torch is imported where a distance is computed, not by the CLI listing them
    from torch import Tensor


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).float()


def mse(ref: Tensor, out: Tensor) -> Tensor:
    return ((_flat(out) - _flat(ref)) ** 2).mean(dim=1)


def kl(ref: Tensor, out: Tensor) -> Tensor:
    """KL(softmax(ref) ‖ softmax(out)) per variant (results.metrics.kl_rows)."""
    # Deferred (measured): results.metrics imports torch at once, and `vcfc info` imports this
    # registry for its option lists; torch's import costs ~2 s there.
    from vcfc.results.metrics import kl_rows

    return kl_rows(ref, out)


def top1_flip(ref: Tensor, out: Tensor) -> Tensor:
    """1 where the arg-max class differs from the reference (per pixel averaged for maps)."""
    f = (ref.argmax(dim=1) != out.argmax(dim=1)).float()
    return f.reshape(f.shape[0], -1).mean(dim=1)


@dataclass(frozen=True)
class Distance:
    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    reads: str              # "penultimate" or "output"
    differentiable: bool    # usable by the Taylor estimator
    description: str

    def __call__(self, ref: Tensor, out: Tensor) -> Tensor:
        return self.fn(ref, out)


DISTANCES: Registry[Distance] = Registry("distance", [(d.name, d) for d in (
    Distance("penultimate", mse, "penultimate", True,
             "MSE of the penultimate output (the classifier layer's input, pooled); Hu et al.'s choice"),
    Distance("output", mse, "output", True, "MSE of the tail's output (logits)"),
    Distance("kl", kl, "output", True, "KL(softmax(reference) ‖ softmax(coded)) of the logits, nats"),
    Distance("top1", top1_flip, "output", False, "1 when the top-1 class changes"),
)])


def get_distance(name: str) -> Distance:
    return DISTANCES.get(name)
