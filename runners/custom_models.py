"""Your own network: a model named by an import path, ``"package.module:builder"``.

``builder()`` returns an ``nn.Module`` (or ``(module, transform)``: a callable from a PIL image to
the network's input tensor; without one, the task's default — for a classifier ImageNet's resize
256, centre crop 224 and normalisation). Weights: a checkpoint path (a state_dict, loaded with
``torch.load(weights_only=True)``: never unpickled code), or none/DEFAULT for the module as the
builder made it. The task is read from the module's type (a classifier unless it is a torchvision
segmentation or detection model). Modules are found on ``sys.path``, in the working folder and in
the folders of ``$VCFC_MODEL_PATH`` (an experiment file's folder is added to it when it is read).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vcfc.errors import InputError

if TYPE_CHECKING:
    from torch import nn

MODEL_PATH = "VCFC_MODEL_PATH"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")  # a weights string ending so names a file


def is_import_path(name: Any) -> bool:
    """``"pkg.module:callable"``: a user's builder, not a torchvision name."""
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, attr = name.split(":")
    return bool(module) and attr.isidentifier() and all(p.isidentifier() for p in module.split("."))


def _model_folders() -> list[str]:
    return [p for p in os.environ.get(MODEL_PATH, "").split(os.pathsep) if p]


def add_model_folder(folder: str | Path) -> None:
    """Let builders in ``folder`` be imported here and in the worker processes started later."""
    folder = str(Path(folder).resolve())
    parts = _model_folders()
    if folder not in parts:
        os.environ[MODEL_PATH] = os.pathsep.join([folder, *parts])


def builder_of(name: str) -> Callable[[], Any]:
    """The callable an import path names, with a one-line error for each way it can be wrong."""
    module_name, attr = name.split(":")
    for folder in [os.getcwd(), *_model_folders()]:
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"model {name}: cannot import {module_name} ({exc}); run from the folder that holds it, "
                         f"install it, or list its folder in ${MODEL_PATH}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputError(f"model {name}: {module_name} has no callable {attr}")
    return fn


def build_custom(name: str, weights: Any, *, seed: int = 0, meta: bool = False) -> tuple[nn.Module, Callable | None]:
    """(module in eval mode, its transform or None) from a user's builder; ``meta``: parameter-less."""
    import torch
    from torch import nn

    fn = builder_of(name)
    with torch.random.fork_rng(devices=[]):  # a seeded init that leaves the caller's RNG alone
        torch.manual_seed(seed)
        if meta:
            with torch.device("meta"):
                out = fn()
        else:
            out = fn()
    model, transform = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
    if not isinstance(model, nn.Module):
        raise InputError(f"model {name}: the builder returned {type(model).__name__}, not a torch.nn.Module")
    if transform is not None and not callable(transform):
        raise InputError(f"model {name}: the builder's transform is not callable")
    if not meta and not (weights is None or str(weights).lower() in ("none", "default", "random")):
        from .weights import load_checkpoint

        path = Path(weights)
        if not path.is_file():
            raise InputError(f"model {name}: checkpoint not found: {path}")
        load_checkpoint(model, path)
    elif not meta and str(weights).lower() in ("none", "random"):
        warnings.warn(f"{name}: no checkpoint: the module as its builder initialised it (seed {seed})",
                      UserWarning, stacklevel=3)
    return model.eval(), transform


# tasks whose output is one tensor per batch, which a generic cut of any module can produce
TENSOR_TASKS = ("classification", "segmentation")


def check_model_options(name: str, task: str | None, transform: str | None, where: str = "",
                        own: bool | None = None) -> None:
    """``task`` and ``transform`` of a model entry: one line for each way they can be wrong
    (the transform's module is imported here, so a typo stops the run before any work).
    ``own``: whether the model is your own network (default: ``name`` is an import path)."""
    if task is not None:
        if not (is_import_path(name) if own is None else own):
            raise InputError(f"{where}task: only for your own network (package.module:builder); "
                             f"{name}'s task comes from torchvision")
        if task not in TENSOR_TASKS:
            raise InputError(f"{where}task: {task!r}: your own network can be {' or '.join(TENSOR_TASKS)} "
                             f"(a detection task needs a torchvision R-CNN)")
    if transform is not None:
        if not is_import_path(transform):
            raise InputError(f"{where}transform: {transform!r} is not an import path (package.module:callable)")
        builder_of(transform)


def transform_of(transform: str | Callable | None) -> Callable | None:
    """The callable a transform option names (an import path), or the callable itself."""
    if transform is None or callable(transform):
        return transform
    return builder_of(transform)
