"""The `Split` classes: a torchvision network cut into a head (image -> features) and a tail
(features -> output). The entry points that build them are in vcfc.runners.models; which class a
model gets is its task's choice (vcfc.runners.tasks).

Three kinds of split, one interface (`Split`):
  * classifiers: the torch.fx graph (torchvision's NodePathTracer, so nodes carry module paths)
    is cut at one node into a head GraphModule and a tail GraphModule; skip connections work
    because the cut must be a node that every path from the input to the output goes through;
  * segmentation (FCN / DeepLabV3): the same cut inside the ResNet backbone; the tail runs the
    rest of the backbone, the classifier and the upsampling to the input size (kept as meta);
  * R-CNN (Faster / Mask / Keypoint, ResNet50-FPN): cut after the FPN; the head returns
    p2..p6 and the resize bookkeeping of GeneralizedRCNNTransform as meta.
`tail(head(x))` runs exactly the ops of the unsplit model, so it is bit-identical in eval mode.
See docs/splits.md.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, fx, nn
from torchvision.models import feature_extraction as _fe
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList

from vcfc.errors import InputError
from vcfc.sensitivity.tail_graphs import penultimate_graph
from vcfc.subgraph import CutBypassed, extract_subgraph

from .presets import FPN_NAMES, presets_of

Shape = tuple[int, ...]


class FeatureDict(OrderedDict):
    """Named feature tensors plus `meta`: the JSON-able bookkeeping the tail needs."""

    meta: dict[str, Any]

    def __init__(self, *args: Any, meta: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meta = dict(meta or {})


class Split:
    """A network cut in two. Use in eval mode; head/tail run under `torch.no_grad()`.

    `meta` (JSON-able dict) is what the tail needs besides the features (input size for
    segmentation, resize bookkeeping for R-CNN, nothing for classifiers). `head` stores it in
    `last_meta` (and on a returned `FeatureDict`); store it beside coded features and pass
    `tail(features, meta=...)` when the tail runs elsewhere.
    """

    task: str  # the class's default; the Task that cuts a model names itself here

    def __init__(self, model: nn.Module, model_name: str, layer: str, module_path: str,
                 transforms: Callable, device: torch.device, task: str | None = None) -> None:
        if task is not None:
            self.task = task
        self.model = model
        self.model_name = model_name
        self.layer = layer                  # what the user asked for (preset or module path)
        self.module_path = module_path      # the module whose output is the cut
        self.transforms = transforms
        self.device = device
        self.last_meta: dict[str, Any] = {}
        self._shapes: dict[tuple[int, int], Shape | dict[str, Shape]] = {}

    def head(self, images: Tensor | Sequence[Tensor]) -> Tensor | FeatureDict:
        raise NotImplementedError

    def tail(self, features: Tensor | Mapping[str, Tensor], meta: Mapping[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def penultimate(self, features: Tensor | Mapping[str, Tensor],
                    meta: Mapping[str, Any] | None = None) -> Tensor:
        """The output before the classifier (see docs/splits.md); not defined for R-CNN."""
        raise InputError(f"{self.model_name}: no penultimate output for task {self.task}")

    def __call__(self, images: Tensor | Sequence[Tensor]) -> Any:
        return self.tail(self.head(images))

    def _meta(self, features: Any, meta: Mapping[str, Any] | None) -> dict[str, Any]:
        if meta is not None:
            return dict(meta)
        return dict(getattr(features, "meta", None) or self.last_meta)

    def feature_shapes(self, input_hw: tuple[int, int]) -> Shape | dict[str, Shape]:
        """(C, H, W) of the cut for one input image of size `input_hw` (dict for R-CNN).

        A dry run of the head on the meta device (no compute, no memory; the model's parameters
        are swapped for meta tensors meanwhile, so do not run the model in another thread);
        falls back to a real run on zeros. Cached per size.
        """
        hw = (int(input_hw[0]), int(input_hw[1]))
        if hw not in self._shapes:
            try:
                out = self._head_on_meta(hw)
            except Exception:  # noqa: BLE001 - an op without a meta kernel: do it for real
                out = self._run_head(torch.zeros(1, 3, *hw, device=self.device), record=False)
            if isinstance(out, Mapping):
                self._shapes[hw] = {k: tuple(v.shape[1:]) for k, v in out.items()}
            else:
                self._shapes[hw] = tuple(out.shape[1:])
        return self._shapes[hw]

    def _head_on_meta(self, hw: tuple[int, int]) -> Any:
        x = torch.zeros(1, 3, *hw, device="meta")
        if next(iter(self.model.parameters())).device.type == "meta":
            return self._run_head(x, record=False)
        state = {"model." + k: torch.empty_like(v, device="meta") for k, v in
                 [*self.model.named_parameters(), *self.model.named_buffers()]}
        # swap every parameter/buffer for a meta tensor while the head runs
        return torch.func.functional_call(_HeadRunner(self), state, (x,), strict=False)

    def _run_head(self, x: Tensor, record: bool = True) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Split({self.model_name!r}, at={self.layer!r} -> {self.module_path!r}, task={self.task!r})"


class _HeadRunner(nn.Module):
    """Exposes `split._run_head` as a module over the split's model (for functional_call)."""

    def __init__(self, split: Split) -> None:
        super().__init__()
        self.model = split.model
        self._split = [split]              # a list: keeps the Split out of the module tree

    def forward(self, x: Tensor) -> Any:
        return self._split[0]._run_head(x, record=False)


# --------------------------------------------------------------------------- fx graph cutting

class _Cut:
    """A traced module cut at one node: head/tail GraphModules sharing the module's parameters."""

    def __init__(self, module: nn.Module, at: str, model_name: str) -> None:
        # torchvision's defaults (its ops as leaves) as create_feature_extractor uses them
        default = getattr(_fe, "_set_default_tracer_kwargs", None)
        kwargs = default(None) if default else {"autowrap_modules": (math, torchvision.ops)}
        tracer = _fe.NodePathTracer(**kwargs)
        was_training = module.training
        module.eval()   # trace the eval graph (inception/googlenet branch on self.training)
        try:
            self.graph = tracer.trace(module)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{model_name} cannot be traced by torch.fx: {str(e).splitlines()[0]}") from None
        finally:
            module.train(was_training)
        self.root = module
        self.qual = {n: tracer.node_to_qualname.get(n, n.name) for n in self.graph.nodes}
        self.nodes = [n for n in self.graph.nodes if n.op != "output"]
        self.input = next(n for n in self.nodes if n.op == "placeholder")
        output = next(n for n in self.graph.nodes if n.op == "output")
        self.output = output.args[0]
        if not isinstance(self.output, fx.Node):
            raise InputError(f"{model_name}: only single-tensor outputs can be split")
        self.cut = self._find(at, model_name)
        self.head = self._extract(self.input, self.cut, "images", model_name, at)
        self.tail = self._extract(self.cut, self.output, "features", model_name, at)

    def _find(self, at: str, model_name: str) -> fx.Node:
        # the output of module `at` is the last node traced inside it (torchvision semantics)
        found = None
        for n in self.nodes:
            q = self.qual[n]
            if q == at or q.startswith(at + "."):
                found = n
        if found is None:
            raise InputError(f"'{at}' is not a layer of {model_name}; {self.hint(model_name)}")
        return found

    def valid_cuts(self) -> list[str]:
        """Module paths at which the graph can be cut (one tensor every path goes through)."""
        index = {n: i for i, n in enumerate(self.nodes)}
        last_in: dict[str, fx.Node] = {}
        for n in self.nodes:
            parts = self.qual[n].split(".")
            for k in range(1, len(parts) + 1):
                last_in[".".join(parts[:k])] = n
        names = []
        reach = 0   # furthest consumer of any node before position i
        for i, n in enumerate(self.nodes):
            if i > 0 and reach <= i and n.op != "get_attr":
                parts = self.qual[n].split(".")
                for k in range(1, len(parts) + 1):   # shortest path naming this node
                    p = ".".join(parts[:k])
                    if last_in[p] is n:
                        names.append(p)
                        break
            if n.op != "get_attr":   # parameters may be used anywhere
                reach = max([reach, *(index.get(u, i) for u in n.users)])
        return names

    def hint(self, model_name: str) -> str:
        cuts = self.valid_cuts()
        short = sorted(range(len(cuts)), key=lambda i: (cuts[i].count("."), i))[:12]
        some = ", ".join(cuts[i] for i in sorted(short))
        presets = ", ".join(presets_of(model_name)) or "none"
        return f"presets: {presets}; valid cuts include {some} ({len(cuts)} in all)"

    def _extract(self, inp: fx.Node, out: fx.Node, name: str, model_name: str, at: str) -> fx.GraphModule:
        """GraphModule computing `out` from `inp` alone; InputError if a path bypasses `inp`."""
        try:
            return extract_subgraph(self.root, self.graph, out, inp, name)
        except CutBypassed:
            where = f"'{at}'" if self.qual[inp] == at else f"'{at}' (module '{self.qual[inp]}')"
            raise InputError(
                f"{where} is not a valid cut of {model_name}: another path "
                f"(e.g. a residual connection) bypasses it; {self.hint(model_name)}") from None


def _batch(images: Tensor | Sequence[Tensor], device: torch.device) -> Tensor:
    if isinstance(images, Tensor):
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"images must be (N,3,H,W), got {tuple(images.shape)}")
        return images.to(device)
    return torch.stack([torch.as_tensor(i) for i in images]).to(device)


# --------------------------------------------------------------------------- classification

class ClassifierSplit(Split):
    task = "classification"

    def __init__(self, model: nn.Module, model_name: str, at: str, module_path: str,
                 transforms: Callable, device: torch.device, task: str | None = None) -> None:
        super().__init__(model, model_name, at, module_path, transforms, device, task)
        self._cut = _Cut(model, module_path, model_name)
        self.head_module = self._cut.head
        self.tail_module = self._cut.tail
        self._pre: nn.Module | None = None

    def _run_head(self, x: Tensor, record: bool = True) -> Tensor:
        with torch.no_grad():
            return self.head_module(x)

    def head(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        self.last_meta = {}
        return self._run_head(_batch(images, self.device))

    def tail(self, features: Tensor | Mapping[str, Tensor], meta: Mapping[str, Any] | None = None) -> Tensor:
        with torch.no_grad():
            return self.tail_module(_single(features).to(self.device))

    def penultimate(self, features: Tensor | Mapping[str, Tensor],
                    meta: Mapping[str, Any] | None = None) -> Tensor:
        """Input of the last classifier layer, globally average-pooled if it is a map."""
        with torch.no_grad():
            return self.penultimate_module()(_single(features).to(self.device))

    def penultimate_module(self) -> nn.Module:
        """features -> penultimate output as a differentiable module (for the sensitivity sweep)."""
        if self._pre is None:
            try:
                self._pre = penultimate_graph(self.tail_module)
            except InputError as exc:
                raise InputError(f"{self.model_name} cut at '{self.layer}': {exc}") from None
        return self._pre

    def valid_cuts(self) -> list[str]:
        return self._cut.valid_cuts()


def _single(features: Tensor | Mapping[str, Tensor]) -> Tensor:
    if isinstance(features, Tensor):
        return features
    if isinstance(features, Mapping) and len(features) == 1:
        return next(iter(features.values()))
    raise InputError("this split takes a single feature tensor")


# --------------------------------------------------------------------------- segmentation

class SegmentationSplit(Split):
    """FCN / DeepLabV3 cut inside the ResNet backbone; tail -> logits (N, classes, H, W)."""

    task = "segmentation"

    def __init__(self, model: nn.Module, model_name: str, at: str, module_path: str,
                 transforms: Callable, device: torch.device, task: str | None = None) -> None:
        super().__init__(model, model_name, at, module_path, transforms, device, task)
        backbone = model.backbone   # IntermediateLayerGetter: the ResNet children up to layer4
        out_layer = [k for k, v in backbone.return_layers.items() if v == "out"][0]
        names = list(backbone.keys())
        # a plain Sequential of the same modules traces to a single-output graph
        self.body = nn.Sequential(OrderedDict((k, backbone[k]) for k in names[: names.index(out_layer) + 1]))
        path = module_path[len("backbone."):] if module_path.startswith("backbone.") else module_path
        self._cut = _Cut(self.body, path, model_name)
        self.module_path = "backbone." + path
        self.head_module = self._cut.head
        self.tail_module = self._cut.tail

    def _run_head(self, x: Tensor, record: bool = True) -> Tensor:
        if record:
            self.last_meta = {"input_hw": [int(x.shape[-2]), int(x.shape[-1])]}
        with torch.no_grad():
            return self.head_module(x)

    def head(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        return self._run_head(_batch(images, self.device))

    def _input_hw(self, features: Any, meta: Mapping[str, Any] | None) -> tuple[int, int]:
        m = self._meta(features, meta)
        if "input_hw" not in m:
            raise InputError("segmentation tail needs the input size: pass meta={'input_hw': [H, W]} "
                             "(split.last_meta after head)")
        return int(m["input_hw"][0]), int(m["input_hw"][1])

    def tail(self, features: Tensor | Mapping[str, Tensor], meta: Mapping[str, Any] | None = None) -> Tensor:
        """Per-pixel class logits at input resolution (the model's "out"; aux head not run)."""
        hw = self._input_hw(features, meta)
        with torch.no_grad():
            x = self.model.classifier(self.tail_module(_single(features).to(self.device)))
            return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)

    def penultimate(self, features: Tensor | Mapping[str, Tensor],
                    meta: Mapping[str, Any] | None = None) -> Tensor:
        """Input of the last 1×1 classifier conv (a map at output stride 8), not pooled."""
        with torch.no_grad():
            x = self.tail_module(_single(features).to(self.device))
            for layer in list(self.model.classifier)[:-1]:
                x = layer(x)
            return x

    def valid_cuts(self) -> list[str]:
        return ["backbone." + c for c in self._cut.valid_cuts()]


# --------------------------------------------------------------------------- R-CNN

class RCNNSplit(Split):
    """Faster/Mask/Keypoint R-CNN cut after the FPN: head -> FeatureDict p2..p6 (+meta)."""

    def __init__(self, model: GeneralizedRCNN, model_name: str, at: str, module_path: str,
                 transforms: Callable, device: torch.device, task: str = "detection", send_p6: bool = True) -> None:
        super().__init__(model, model_name, at, module_path, transforms, device, task)  # detection, instance, keypoints
        self.send_p6 = send_p6

    def _run_head(self, x: Tensor | Sequence[Tensor], record: bool = True) -> FeatureDict:
        images = list(x.unbind(0)) if isinstance(x, Tensor) else [i.to(self.device) for i in x]
        original = [[int(i.shape[-2]), int(i.shape[-1])] for i in images]
        with torch.no_grad():
            batch, _ = self.model.transform(images)
            feats = self.model.backbone(batch.tensors)
        if list(feats) != list(FPN_NAMES):
            raise InputError(f"{self.model_name}: expected FPN levels {list(FPN_NAMES)}, got {list(feats)}")
        meta = {"image_sizes": [[int(h), int(w)] for h, w in batch.image_sizes],
                "original_sizes": original,
                "batch_hw": [int(batch.tensors.shape[-2]), int(batch.tensors.shape[-1])]}
        out = FeatureDict(((FPN_NAMES[k], v) for k, v in feats.items()
                           if self.send_p6 or FPN_NAMES[k] != "p6"), meta=meta)
        if record:
            self.last_meta = meta
        return out

    def head(self, images: Tensor | Sequence[Tensor]) -> FeatureDict:
        """images: (N,3,H,W) or a list of (3,H,W) in [0,1]; sizes may differ in a list."""
        if isinstance(images, Tensor):
            images = _batch(images, self.device)
        return self._run_head(images)

    def tail(self, features: Tensor | Mapping[str, Tensor], meta: Mapping[str, Any] | None = None) -> list[dict]:
        """List (one per image) of dicts boxes/labels/scores(/masks/keypoints), original coordinates."""
        if not isinstance(features, Mapping):
            raise InputError("R-CNN tail takes a dict of pyramid features p2..p5 (p6 optional)")
        m = self._meta(features, meta)
        if not {"image_sizes", "original_sizes", "batch_hw"} <= set(m):
            raise InputError("R-CNN tail needs meta with image_sizes, original_sizes and batch_hw "
                             "(FeatureDict.meta or split.last_meta from head)")
        missing = [n for n in ("p2", "p3", "p4", "p5") if n not in features]
        if missing:
            raise InputError(f"R-CNN tail: missing pyramid levels {missing}")
        fmap = OrderedDict((k, features[n].to(self.device)) for k, n in FPN_NAMES.items() if n != "p6")
        # p6 = LastLevelMaxPool of p5 (F.max_pool2d(p5, 1, 2, 0)): derived, need not be coded
        fmap["pool"] = (features["p6"].to(self.device) if "p6" in features
                        else F.max_pool2d(fmap["3"], 1, 2, 0))
        image_sizes = [(int(h), int(w)) for h, w in m["image_sizes"]]
        original = [(int(h), int(w)) for h, w in m["original_sizes"]]
        n = fmap["0"].shape[0]
        # the RPN's anchor generator only reads the padded batch's shape: a zero-stride view
        dummy = fmap["0"].new_zeros(()).expand(n, 3, *m["batch_hw"])
        images = ImageList(dummy, image_sizes)
        with torch.no_grad():
            proposals, _ = self.model.rpn(images, fmap)
            detections, _ = self.model.roi_heads(fmap, proposals, image_sizes)
            return self.model.transform.postprocess(detections, image_sizes, original)

    def feature_shapes(self, input_hw: tuple[int, int]) -> dict[str, Shape]:
        return super().feature_shapes(input_hw)   # type: ignore[return-value]


# --------------------------------------------------------------------------- the network input

class UInt8Input:
    """PIL image -> the uint8 (3, H, W) network input: the model transforms' resize and centre
    crop, without their float conversion and normalisation (torchvision's ImageClassification,
    SemanticSegmentation and ObjectDetection presets; any transform without those attributes
    gives the picture as it is)."""

    def __init__(self, transforms: Callable) -> None:
        self.resize = getattr(transforms, "resize_size", None)
        self.crop = getattr(transforms, "crop_size", None)
        self.interpolation = getattr(transforms, "interpolation", torchvision.transforms.InterpolationMode.BILINEAR)
        self.antialias = getattr(transforms, "antialias", True)
        mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
        self.normalize = None if mean is None or std is None else (list(mean), list(std))

    def __call__(self, img: Any) -> Tensor:
        tf = torchvision.transforms.functional
        if self.resize:
            img = tf.resize(img, self.resize, interpolation=self.interpolation, antialias=self.antialias)
        if self.crop:
            img = tf.center_crop(img, self.crop)
        return tf.pil_to_tensor(img)


class RemoteTail(nn.Module):
    """uint8 network input -> the task output: the float conversion and normalisation the
    transforms would have done, then the whole network (``forward``: the task's way to run it)."""

    def __init__(self, model: nn.Module, normalize: tuple[list[float], list[float]] | None,
                 forward: Callable[[nn.Module, Tensor], Any]) -> None:
        super().__init__()
        self.model = model
        self._forward = forward
        self.normalize = normalize is not None
        if normalize is not None:
            self.register_buffer("mean", torch.tensor(normalize[0]).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(normalize[1]).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Any:
        x = x.float() / 255.0  # what convert_image_dtype does to uint8 (also for codec output as float)
        if self.normalize:
            x = (x - self.mean) / self.std
        return self._forward(self.model, x)


class InputSplit(Split):
    """The cut before the network (`at="input"`), for every model: the remote-inference anchor.

    head = the preprocessing up to the uint8 network input (resize and crop: the split's
    `transforms`, applied when images are loaded), so the features are that RGB picture;
    tail = normalisation + the whole network. Coded with layout image (one colour picture), it is
    what sending the image instead of features costs.
    """

    def __init__(self, model: nn.Module, model_name: str, at: str, module_path: str, transforms: Callable,
                 device: torch.device, task: str | None = None,
                 forward: Callable[[nn.Module, Tensor], Any] = lambda m, x: m(x)) -> None:
        front = UInt8Input(transforms)
        super().__init__(model, model_name, at, "input", front, device, task)
        self.tail_module = RemoteTail(model, front.normalize, forward).to(device).eval()

    def _run_head(self, x: Any, record: bool = True) -> Any:
        return x

    def head(self, images: Tensor | Sequence[Tensor]) -> Tensor | list[Tensor]:
        self.last_meta = {}
        if isinstance(images, Tensor):
            return (images[None] if images.dim() == 3 else images).to(self.device)
        return [torch.as_tensor(i).to(self.device) for i in images]

    def tail(self, features: Tensor | Sequence[Tensor], meta: Mapping[str, Any] | None = None) -> Any:
        with torch.no_grad():
            if isinstance(features, Tensor):
                return self.tail_module(features.to(self.device))
            return [out for f in features for out in _as_list(self.tail_module(f[None].to(self.device)))]


def _as_list(out: Any) -> list[Any]:
    return list(out) if isinstance(out, list) else [out]
