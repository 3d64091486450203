"""Where and in what precision the sweep runs: the device resolver and the TF32/bf16 switch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from vcfc.errors import InputError

from .options import PRECISIONS


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a GPU is an InputError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device available (use auto or cpu)")
    return dev


@contextlib.contextmanager
def precision(mode: str, device: torch.device) -> Iterator[None]:
    """fp32: exact float32 (TF32 off for cuBLAS and cuDNN, restored afterwards: PyTorch's Hopper
    defaults run fp32 convolutions in TF32, measured 1.3e-2 off the naive loop on an H100);
    tf32: allow TF32; bf16: autocast to bfloat16. Rank agreement with fp32: the sensitivity benchmark."""
    PRECISIONS.get(mode)
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
    try:
        if mode == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
