"""Reading and writing feature files (.npy, .safetensors) and QP lists for the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

FEATURE_SUFFIXES = (".npy", ".safetensors")


def load_features(path: str | Path) -> Any:
    """A .npy file gives one array; a .safetensors file gives a dict of tensors (bf16 kept)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".npy":
        try:
            # allow_pickle=False: a .npy from elsewhere must never run code.
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({_short(exc)})") from None
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .safetensors file ({_short(exc)})") from None
        if not tensors:
            raise InputError(f"{path}: the .safetensors file holds no tensors")
        return dict(tensors)
    raise InputError(f"{path}: features must be .npy or .safetensors")


def save_features(path: str | Path, features: Any) -> None:
    path = Path(path)
    if path.suffix == ".npy":
        if isinstance(features, dict):
            raise InputError(f"{path}: the file holds {len(features)} tensors; write .safetensors instead of .npy")
        arr = features.float().numpy() if hasattr(features, "numpy") and str(features.dtype) == "torch.bfloat16" else features
        np.save(path, np.asarray(arr))
        return
    if path.suffix == ".safetensors":
        import torch
        from safetensors.torch import save_file

        items = features if isinstance(features, dict) else {"x": features}
        save_file({k: (v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))).contiguous() for k, v in items.items()}, str(path))
        return
    raise InputError(f"{path}: output must end in .npy or .safetensors")


def load_qps(path: str | Path) -> list[int]:
    """One integer per line (blank lines and # comments ignored)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read QP file ({_short(exc)})") from None
    qps = []
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            qps.append(int(line))
        except ValueError:
            raise InputError(f"{path}:{n}: expected one integer QP per line, got {line!r}") from None
    if not qps:
        raise InputError(f"{path}: no QPs in file")
    return qps


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
