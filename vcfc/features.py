"""Normalising user features (torch / numpy, tensor / dict) to numpy (C,H,W) arrays and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import InputError

SINGLE = "x"  # the tensor name used when the input is a single tensor
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclass
class TensorMeta:
    name: str
    shape: list[int]  # the shape as given (2-D, 3-D or 1×C×H×W)
    dtype: str  # the dtype as given, restored on decode
    kind: str  # "torch" or "numpy"


def to_arrays(features: Any) -> tuple[dict[str, np.ndarray], list[TensorMeta], bool]:
    """Return ({name: float (C,H,W) array}, metadata, single) for a tensor or a dict of tensors."""
    if isinstance(features, Mapping):
        if not features:
            raise InputError("empty feature dict")
        items = list(features.items())
        single = False
    else:
        items = [(SINGLE, features)]
        single = True
    arrays: dict[str, np.ndarray] = {}
    metas: list[TensorMeta] = []
    for name, value in items:
        if not isinstance(name, str) or not name:
            raise InputError(f"tensor names must be non-empty strings, got {name!r}")
        arr, meta = _one(name, value)
        arrays[name] = arr
        metas.append(meta)
    return arrays, metas, single


def _one(name: str, value: Any) -> tuple[np.ndarray, TensorMeta]:
    kind = "numpy"
    if type(value).__module__.startswith("torch"):
        kind = "torch"
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype not in _FLOAT_DTYPES:
            raise InputError(f"tensor {name!r}: features must be floating point, got {dtype}")
        # bf16 has no numpy dtype; float32 holds every bf16 value exactly.
        arr = value.detach().to("cpu").float().numpy() if dtype == "bfloat16" else value.detach().cpu().numpy()
    elif isinstance(value, np.ndarray):
        arr = value
        dtype = str(arr.dtype)
        if dtype not in _FLOAT_DTYPES:
            raise InputError(f"tensor {name!r}: features must be floating point, got {dtype}")
    else:
        raise InputError(f"tensor {name!r}: expected a torch tensor or numpy array, got {type(value).__name__}")
    shape = list(arr.shape)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 4:
        raise InputError(f"tensor {name!r}: encode one image at a time (got a batch of {arr.shape[0]}, shape {shape})")
    elif arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3:
        raise InputError(f"tensor {name!r}: expected C×H×W (or 1×C×H×W, H×W), got shape {shape}")
    if arr.size == 0:
        raise InputError(f"tensor {name!r} is empty (shape {shape})")
    return np.ascontiguousarray(arr), TensorMeta(name, shape, dtype, kind)


def from_arrays(arrays: dict[str, np.ndarray], metas: list[TensorMeta], single: bool) -> Any:
    """Inverse of to_arrays: restore each tensor's shape, dtype and kind."""
    out = {}
    for meta in metas:
        arr = arrays[meta.name].reshape(meta.shape)
        if meta.kind == "torch":
            import torch  # deferred: the CLI should not pay torch's import time for numpy files

            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
            out[meta.name] = t.to(getattr(torch, meta.dtype))
        else:
            out[meta.name] = arr.astype(meta.dtype, copy=False)
    return out[metas[0].name] if single else out
