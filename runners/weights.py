"""Build torchvision models with the weights a user asked for, offline-friendly.

`weights` may be
  * ``"DEFAULT"`` or an enum member name (``"IMAGENET1K_V1"``) or ``"ResNet50_Weights.IMAGENET1K_V2"``,
    or a torchvision ``WeightsEnum`` member: loaded through torchvision, which reads the
    cache ``$TORCH_HOME/hub/checkpoints`` first (so it works offline when the file is there);
  * a local checkpoint path: a state_dict loaded with ``torch.load(weights_only=True)``;
  * ``None`` / ``"none"``: seeded random init, with a loud warning.
Every failure is a one-line `InputError` (no urllib traceback escapes).
"""

from __future__ import annotations

import http.client
import inspect
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from vcfc.errors import InputError

from .custom_models import CHECKPOINT_SUFFIXES, build_custom, is_import_path
from .tasks import task_of_model

log = logging.getLogger(__name__)

RANDOM_MESSAGE = "random weights: results are pipeline checks, not task accuracy"

WeightsSpec = Union[str, os.PathLike, WeightsEnum, None]


def _builder(model_name: str) -> Callable[..., nn.Module]:
    try:
        return torchvision.models.get_model_builder(model_name)
    except ValueError:
        some = ", ".join(sorted(torchvision.models.list_models())[:8])
        raise InputError(f"unknown model '{model_name}' (torchvision models, e.g. {some}, ...)") from None


def _weights_enum(model_name: str) -> type[WeightsEnum] | None:
    try:
        return torchvision.models.get_model_weights(model_name)
    except (ValueError, KeyError):
        return None


def _looks_like_path(s: str) -> bool:
    return os.sep in s or "/" in s or s.endswith(CHECKPOINT_SUFFIXES) or Path(s).exists()


def resolve_weights(model_name: str, weights: WeightsSpec) -> WeightsEnum | Path | None:
    """Normalise a weights spec to an enum member, a checkpoint path, or None (random)."""
    if weights is None or (isinstance(weights, str) and weights.lower() in ("none", "random")):
        return None
    if isinstance(weights, WeightsEnum):
        enum = _weights_enum(model_name)
        if enum is not None and not isinstance(weights, enum):
            raise InputError(f"weights {weights} do not belong to {model_name} (expected {enum.__name__})")
        return weights
    if isinstance(weights, os.PathLike):
        return _existing(Path(weights))
    if not isinstance(weights, str):
        raise InputError(f"weights must be 'DEFAULT', an enum name, a path or None, not {type(weights).__name__}")
    enum = _weights_enum(model_name)
    if "." in weights and not _looks_like_path(weights):   # "ResNet50_Weights.IMAGENET1K_V2"
        try:
            return resolve_weights(model_name, torchvision.models.get_weight(weights))
        except (ValueError, KeyError, AttributeError):
            raise InputError(f"unknown weights '{weights}'") from None
    if enum is not None and weights in enum.__members__:
        return enum[weights]
    if _looks_like_path(weights):
        return _existing(Path(weights))
    names = ", ".join(["DEFAULT", *enum.__members__]) if enum is not None else "none published"
    raise InputError(f"unknown weights '{weights}' for {model_name} (torchvision: {names}; "
                     "or a checkpoint path, or 'none' for random init)")


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    return path


def cache_file(weights: WeightsEnum) -> Path:
    """Where torchvision looks for (and downloads) these weights: $TORCH_HOME/hub/checkpoints/<name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def weights_available(model_name: str, weights: WeightsSpec) -> bool:
    """Whether these weights can be loaded without a download (cached file or local checkpoint)."""
    if is_import_path(model_name):
        return weights is not None and str(weights).lower() not in ("none", "random")
    try:
        resolved = resolve_weights(model_name, weights)
    except InputError:
        return False
    if isinstance(resolved, WeightsEnum):
        return cache_file(resolved).is_file()
    return resolved is not None


def random_weights_hint(model_name: str, weights: WeightsSpec) -> str:
    """What to do to get real weights: the file torchvision wants and where it looks for it."""
    try:
        resolved = resolve_weights(model_name, weights)
    except InputError:
        resolved = None
    if isinstance(resolved, WeightsEnum):
        f = cache_file(resolved)
        return (f"Put {f.name} in {f.parent} (`make weights` copies ../shared/weights into .cache/torch; "
                f"then export TORCH_HOME=$PWD/.cache/torch), or let torchvision download it once online.")
    return "Pass real weights: a torchvision weights name with its file in $TORCH_HOME/hub/checkpoints, or a checkpoint path."


def build_model(model_name: str, weights: WeightsSpec = "DEFAULT", *, seed: int = 0,
                model_kwargs: Mapping[str, Any] | None = None,
                meta: bool = False) -> tuple[nn.Module, Callable]:
    """Construct `model_name` in eval mode with the requested weights; return (model, transforms).

    ``meta=True`` builds parameter-less tensors on the meta device (for shape queries only).
    """
    if is_import_path(model_name):  # your own network: "package.module:builder"
        model, transform = build_custom(model_name, weights, seed=seed, meta=meta)
        return model, transform or task_of_model(model).default_transforms()
    builder = _builder(model_name)
    resolved = None if meta else resolve_weights(model_name, weights)
    kwargs = dict(model_kwargs or {})
    if not isinstance(resolved, WeightsEnum) and "weights_backbone" not in kwargs:
        # torchvision's default backbone weights would trigger a download
        if "weights_backbone" in inspect.signature(builder).parameters:
            kwargs["weights_backbone"] = None

    if meta:
        with torch.device("meta"):
            model = builder(weights=None, **kwargs).eval()
        return model, task_of_model(model).default_transforms()

    if isinstance(resolved, WeightsEnum):
        cached = cache_file(resolved)
        try:
            model = builder(weights=resolved, **kwargs)
        except (OSError, http.client.HTTPException) as e:
            if cached.exists():
                raise InputError(f"cannot read cached weights {cached}: {e}") from None
            reason = getattr(e, "reason", None) or e
            enum = _weights_enum(model_name)
            here = [n for n, w in (enum.__members__.items() if enum else []) if n != "DEFAULT" and cache_file(w).is_file()]
            hint = f"; these are here: --weights {' or '.join(here)}" if here else ""
            raise InputError(
                f"download of {model_name} weights {resolved} failed ({reason}): put "
                f"{cached.name} in {cached.parent}, pass a local checkpoint path, or use weights none{hint}"
            ) from None
        except (RuntimeError, ValueError) as e:   # e.g. corrupt cache file, wrong kwargs
            raise InputError(f"cannot load {model_name} weights {resolved}: {str(e).splitlines()[0]}") from None
        return model.eval(), resolved.transforms()

    with torch.random.fork_rng(devices=[]):   # seeded init without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = builder(weights=None, **kwargs)
    if resolved is None:
        warnings.warn(f"{model_name}: {RANDOM_MESSAGE}", UserWarning, stacklevel=3)
        log.warning("%s: %s", model_name, RANDOM_MESSAGE)
    else:
        load_checkpoint(model, resolved)
    return model.eval(), task_of_model(model).default_transforms()


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a state_dict file into `model` (strict), with a one-line error on any mismatch."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors have many types
        raise InputError(f"cannot load checkpoint {path} (weights_only=True; save a state_dict): "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    for key in ("state_dict", "model"):   # common wrappers of training checkpoints
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"checkpoint {path} is not a state_dict of tensors")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    badshape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or badshape:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", badshape)):
            if keys:
                parts.append(f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})")
        raise InputError(f"checkpoint {path} does not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
