"""Split a torchvision network (or your own module) at a named layer: the entry points.

`split(model, at=...)` builds the model (vcfc.runners.weights), finds its task
(vcfc.runners.tasks) and lets the task cut it (vcfc.runners.splits). `meta_split` checks a
model and layer without weights or compute; `list_models` lists presets and feature shapes.
`tail(head(x))` runs exactly the ops of the unsplit model, so it is bit-identical in eval mode.
See docs/splits.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torchvision
from torch import nn

from vcfc.errors import InputError

from .custom_models import check_model_options, is_import_path, transform_of
from .presets import INPUT, PRESETS, presets_of
from .splits import ClassifierSplit, FeatureDict, InputSplit, Split
from .tasks import Task, get_task, task_of_model
from .weights import WeightsSpec, build_model, load_checkpoint, resolve_weights

__all__ = ["FeatureDict", "Split", "list_models", "meta_split", "split"]


def split(model_name_or_module: str | nn.Module, at: str, weights: WeightsSpec = "DEFAULT", *,
          seed: int = 0, device: str | torch.device = "cpu", send_p6: bool = True,
          model_kwargs: Mapping[str, Any] | None = None, model_name: str | None = None,
          task: str | None = None, transform: str | Callable | None = None) -> Split:
    """Cut a model at `at` (a preset name or a module path) and return the `Split`.

    model_name_or_module: a torchvision model name ("resnet50", "fcn_resnet50",
      "maskrcnn_resnet50_fpn", ...) or an already built module (used as is; `weights` is then
      only honoured when it is a checkpoint path; pass `model_name` to use that model's presets).
    weights: "DEFAULT", an enum name, a WeightsEnum, a checkpoint path, or None/"none" (seeded
      random init; warns). model_kwargs go to the torchvision builder (e.g. min_size=320).
    send_p6: R-CNN only; False drops p6 from the head output and the tail re-derives it.
    task: your own network's task (classification | segmentation; default: from its type);
    transform: a callable (or "package.module:callable") from a PIL image to the input tensor.
    """
    dev = torch.device(device)
    if isinstance(model_name_or_module, nn.Module):
        model = model_name_or_module.eval()
        name = model_name or type(model).__name__.lower()
        own = task_of_model(model)
        transforms = own.default_transforms()
        if weights is not None and not (isinstance(weights, str) and weights in ("DEFAULT", "none")):
            resolved = resolve_weights(name, weights)
            if resolved is not None and not hasattr(resolved, "url"):
                load_checkpoint(model, resolved)
    elif isinstance(model_name_or_module, str):
        name = model_name_or_module
        model, transforms = build_model(name, weights, seed=seed, model_kwargs=model_kwargs)
        own = task_of_model(model)
    else:
        raise InputError(f"model must be a torchvision model name or an nn.Module, "
                         f"not {type(model_name_or_module).__name__}")
    model = model.to(dev)
    if transform is not None:
        transforms = transform_of(transform)
    if task is not None:
        own_network = isinstance(model_name_or_module, nn.Module) or is_import_path(name)
        check_model_options(name, task, None, own=own_network)
        return _make_split(model, name, at, get_task(task), transforms, dev, send_p6, generic=True)
    return _make_split(model, name, at, own, transforms, dev, send_p6)


def _make_split(model: nn.Module, name: str, at: str, task: Task, transforms: Callable,
                device: torch.device, send_p6: bool = True, generic: bool = False) -> Split:
    """``generic``: a task named for your own network: a plain cut whose tail ends in the module's
    own output (one tensor), scored as ``task`` scores."""
    if not isinstance(at, str) or not at:
        raise InputError("the split point must be a non-empty string (preset or module path)")
    if at == INPUT:  # before the network, for every model: the remote-inference anchor
        if generic:  # the module's own output
            return InputSplit(model, name, at, INPUT, transforms, device, task=task.name)
        return InputSplit(model, name, at, INPUT, transforms, device, task=task.name, forward=task.run_model)
    if generic:
        return ClassifierSplit(model, name, at, presets_of(name).get(at, at), transforms, device, task=task.name)
    return task.make_split(model, name, at, presets_of(name).get(at, at), transforms, device, send_p6=send_p6)


def meta_split(model_name: str, at: str, task: str | None = None) -> Split:
    """The split of a parameter-less (meta device) model: checks that the model and the layer
    exist and gives feature shapes and FLOPs, without weights, downloads or compute."""
    model, transforms = _meta_model(model_name)
    if task is not None:
        return _make_split(model, model_name, at, get_task(task), transforms, torch.device("meta"), generic=True)
    return _make_split(model, model_name, at, task_of_model(model), transforms, torch.device("meta"))


@functools.lru_cache(maxsize=8)
def _meta_model(model_name: str) -> tuple[nn.Module, Callable]:
    # built once per name: a meta model holds no data, and splits only read it
    return build_model(model_name, None, meta=True)


def list_models(input_hw: tuple[int, int] = (224, 224)) -> list[dict[str, Any]]:
    """Every model with presets: task, default weights and per preset its module path and the
    feature shape for one `input_hw` image (R-CNN: after the model's own resize, per level).

    Shapes come from meta-device models (no weights, no downloads, no compute).
    """
    rows = []
    for name, presets in PRESETS.items():
        model, transforms = build_model(name, None, meta=True)
        task = task_of_model(model)
        enum = torchvision.models.get_model_weights(name)
        entries = [{"name": INPUT, "module": "(the uint8 network input)", "shape": [3, *input_hw]}]
        for preset in presets:
            s = _make_split(model, name, preset, task, transforms, torch.device("meta"))
            shape = s.feature_shapes(input_hw)
            shape = {k: list(v) for k, v in shape.items()} if isinstance(shape, dict) else list(shape)
            entries.append({"name": preset, "module": s.module_path, "shape": shape})
        rows.append({"model": name, "task": task.name, "default_weights": enum.DEFAULT.name,
                     "presets": entries})
    return rows
