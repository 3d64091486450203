"""The exact sweep is exact on every device: TF32 is off around it (and restored after); on CUDA
the batched sweep matches the one-variant-at-a-time loop to 1e-4 (with TF32 on, as PyTorch ships
for Hopper, it was measured 1.3e-2 off on an H100)."""

from __future__ import annotations

import warnings

import pytest
import torch

from vcfc.errors import InputError
from vcfc.runners.models import split
from vcfc.sensitivity.channel_sweep import ChannelSweep
from vcfc.sensitivity.device import precision
from vcfc.sensitivity.distances import get_distance
from vcfc.sensitivity.noise import roundtrip
from vcfc.sensitivity.options import SweepOptions
from vcfc.spec import CodingSpec

SPEC = CodingSpec("x265", layout="frames").checked()


def test_precision_context_sets_and_restores_the_tf32_flags():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # PyTorch's Hopper default
    try:
        with precision("fp32", torch.device("cpu")):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with precision("tf32", torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32
        with pytest.raises(InputError, match="precision"):
            with precision("fp8", torch.device("cpu")):
                pass
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _sweep_vs_naive(device: str, mode: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = split("squeezenet1_1", "pool1", weights=None, seed=0, device=device)
    g = torch.Generator().manual_seed(0)
    x = sp.head(torch.rand(1, 3, 224, 224, generator=g).to(device))            # (1, 64, 55, 55)
    xn = roundtrip(x[0].cpu(), 37, SPEC)[None].to(device)                      # real codec noise at QP 37
    pen = sp.penultimate_module()
    dist = get_distance("penultimate")
    s = ChannelSweep(pen, dist, SweepOptions(device=device, precision=mode, linear="off"), SPEC, 32)(x, xn)
    # the reference: one variant at a time, float32 on the same device, TF32 off
    with torch.no_grad(), precision("fp32", torch.device(device)):
        base = pen(x)
        naive = []
        for i in range(x.shape[1]):
            v = x.clone()
            v[0, i] = xn[0, i]
            naive.append(float(dist(base, pen(v))[0]))
    naive = torch.tensor(naive, dtype=torch.float64)
    # relative to each value, floored at 1e-3 of the largest (channels the codec left untouched are ~0)
    return float(((s - naive).abs() / (naive.abs() + 1e-3 * naive.abs().max())).max())


def test_sweep_equals_the_naive_loop_on_cpu():
    # float32 MSEs of nearly equal outputs cancel; batched channels-last CPU convolutions round
    # differently from single ones: 1.3e-4 measured (float64: 1e-5, tests/test_sensitivity.py)
    assert _sweep_vs_naive("cpu", "fp32") < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sweep_is_exact_on_cuda_by_default_and_tf32_is_not():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # as PyTorch ships
    assert _sweep_vs_naive("cuda", "fp32") < 1e-4
    print(f"tf32 relative difference: {_sweep_vs_naive('cuda', 'tf32'):.2e}")
