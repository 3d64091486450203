"""Hu et al.'s Algorithm 1 as written: allocation per image, at encode time.

Its input is ONE feature tensor X: the C one-channel variants of X (channel i replaced by its
own codec round trip at QP_base) go through the network, and X itself is coded with the QPs
the linear rule gives. The round trip at QP_base is X coded uniformly at QP_base (layout
frames), which the frame bank keeps: the uniform point at that QP and the perimage file share
it, and the perimage file codes only the channels whose QP moved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcfc.bank import FrameBank
from vcfc.errors import InputError
from vcfc.spec import CodingSpec

from .allocation import ImageJob, allocate_linear
from .channel_sweep import ChannelSweep, as_batch, sweep_function
from .distances import get_distance
from .options import SweepOptions

DISTANCE = "penultimate"  # Hu et al.'s distance for Algorithm 1


def image_sensitivity(x: Any, bank: FrameBank, qp: int, sweep: ChannelSweep) -> np.ndarray:
    """(C,) distances of this image's one-channel variants, the noise being its own coding at qp."""
    if not bank.q.single:
        raise InputError("per-image channel allocation takes one feature tensor (not a dict of tensors)")
    bank.ensure({qp: None})
    xn = bank.reconstruct(qp)
    s = sweep(as_batch(x, sweep.device, sweep.dtype), as_batch(xn, sweep.device, sweep.dtype))
    return s.numpy()


def perimage_qps(x: Any, bank: FrameBank, qp: int, qp_range: int, sweep: ChannelSweep) -> tuple[np.ndarray, np.ndarray]:
    """(QP per channel, sensitivities): the linear rule on this image's own sensitivities."""
    s = image_sensitivity(x, bank, qp, sweep)
    return allocate_linear(s, qp, qp_range, bank.spec.qp_limits), s


def allocate_job(job: ImageJob) -> np.ndarray:
    """The `perimage` allocator of a run (registered in vcfc.sensitivity.allocation.ALLOCATORS)."""
    with torch.no_grad():
        return perimage_qps(job.features, job.bank, job.qp, int(job.options.get("qp_range", 5)), job.sweep(DISTANCE))[0]


def allocate_image(features: Any, *, tail: Callable[[Tensor], Tensor], qp: int, qp_range: int = 5,
                   penultimate: Callable[[Tensor], Tensor] | None = None, spec: CodingSpec | None = None,
                   distance: str = DISTANCE, options: SweepOptions | None = None,
                   bank: FrameBank | None = None) -> np.ndarray:
    """QP vector of ONE image's features (C×H×W or 1×C×H×W) by Algorithm 1.

    tail / penultimate: callables on (B,C,H,W) batches, e.g. a split's `tail_module` and
    `penultimate_module()` (the distance says which one is read). spec: how the features are
    coded (layout frames; default x265). bank: reuse an existing FrameBank of these features.

        qps = allocate_image(feats, tail=sp.tail_module, penultimate=sp.penultimate_module(), qp=32)
        data = vcfc.encode(feats, channel_qps=qps, layout="frames")
    """
    spec = (spec or CodingSpec(layout="frames")).checked()
    x = features[0] if isinstance(features, Tensor) and features.dim() == 4 else features
    bank = bank or FrameBank(x.detach().cpu() if isinstance(x, Tensor) else x, spec)
    dist = get_distance(distance)
    sweep = ChannelSweep(sweep_function(dist, tail, penultimate), dist, SweepOptions.build(options, {}), spec, qp)
    with torch.no_grad():
        return perimage_qps(x, bank, qp, qp_range, sweep)[0]
