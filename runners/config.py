"""Experiment files (TOML): what to run, with a sane default for every field.

    name = "squeezenet-fire3"

    [[datasets]]                       # one or more
    path = "data/kodak"                # relative paths are relative to the experiment file
    kind = "auto"                      # auto | folder | imagenet | coco | voc
    limit = 24                         # optional: first N images

    [[models]]                         # one or more
    name = "squeezenet1_1"
    weights = "DEFAULT"                # torchvision name, checkpoint path, or "none"
    layers = ["fire3"]
    # your own network: name = "mynets:build", checkpoint = "mynet.pt" (see docs/examples/my_network.toml)
    # task = "classification"          # optional: what its output is (default: from the module's type)
    # transform = "mynets:preprocess"  # optional: PIL image -> input tensor (default: the builder's)

    [coding]
    codecs = ["x265"]                  # any registered codec: x265 | vvenc | av1 | jpeg | lossless
    presets = { x265 = "fast" }        # optional, per codec (default: the codec's)
    quant = "minmax"                   # minmax | minmax-channel | log | zscore, or a list to compare
    bits = 8
    layouts = ["frames"]
    reorder = "none"                   # none | similarity
    qps = [27, 32, 37, 42]

    [allocation]
    methods = ["uniform", "perimage", "rdo"]   # uniform | linear | lagrangian | perimage | rdo
    qp_range = 5                       # linear rules: QP_i = QP - round(qp_range * S~_i)
    profile_images = 6                 # images used to measure sensitivity / calibrate λ (held out)
    profile_qp = 32                    # QP_base of the codec noise in the dataset-level sweep
    distance = "penultimate"           # penultimate | output | kl | top1
    # profile_data = "other/folder"    # measure on another dataset instead (then nothing is held out)

    [run]
    executor = "local"                 # local | dask
    workers = 2                        # worker processes (default: one per core)
    # threads_per_worker = 1           # default: cores ÷ workers
    batch_size = 4                     # images per task (one head/tail pass)
    device = "cpu"                     # auto | cpu | cuda
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from vcfc.codecs import CODECS
from vcfc.errors import InputError
from vcfc.packing.layouts import LAYOUTS
from vcfc.packing.quantizers import QUANTIZERS
from vcfc.packing.reorder import REORDERS
from vcfc.picture import IMAGE_LAYOUT
from vcfc.sensitivity.allocation import ALLOCATORS
from vcfc.sensitivity.distances import DISTANCES
from vcfc.sensitivity.options import RdoSettings
from vcfc.spec import CodingSpec

from .custom_models import CHECKPOINT_SUFFIXES, add_model_folder, check_model_options
from .grid.executors import EXECUTORS
from .kinds import KINDS
from .presets import INPUT
from .schema import Device, Int, NonNegative, NotEmpty, Positive, Str, choices, error_line, unique_list

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# The field types say what a file may hold (vcfc.runners.schema: pydantic checks them, strictly:
# 32 is not "32"); the registries give the choices.
Codec, Layout, Quant, Reorder = choices(CODECS), choices(LAYOUTS), choices(QUANTIZERS), choices(REORDERS)
Method, Distance, Executor, Kind = choices(ALLOCATORS), choices(DISTANCES), choices(EXECUTORS), choices(KINDS)
STRICT = ConfigDict(extra="forbid")  # an unknown field is an error, not ignored


@dataclass
class DatasetSpec:
    __pydantic_config__ = STRICT
    path: Str
    kind: Kind = "auto"
    limit: Positive | None = None


OPTIONAL_MODEL_KEYS = ("task", "transform")


@dataclass
class ModelSpec:
    __pydantic_config__ = STRICT
    name: Str
    weights: Str = "DEFAULT"
    layers: unique_list(Str) = field(default_factory=lambda: ["pool1"])
    # your own network (name = "package.module:builder"): what its output means, and its input
    task: Str | None = None        # a registered task (classification, ...); default: from the module's type
    transform: Str | None = None   # "package.module:callable": PIL image -> input tensor; default: the builder's

    @property
    def options(self) -> dict[str, str]:
        """task / transform where set: what split() takes besides name and weights."""
        return {k: getattr(self, k) for k in OPTIONAL_MODEL_KEYS if getattr(self, k) is not None}


@dataclass
class CodingGrid:
    """[coding]: the codecs × layouts × QPs to run; each (codec, layout) is one CodingSpec."""

    __pydantic_config__ = STRICT
    codecs: unique_list(Codec) = field(default_factory=lambda: ["x265"])
    presets: dict[Str, Str] = field(default_factory=dict)
    quant: Quant | unique_list(Quant) = "minmax"  # one quantizer, or several to compare
    bits: Int = 8
    layouts: unique_list(Layout) = field(default_factory=lambda: ["frames"])
    reorder: Reorder = "none"
    qps: unique_list(Int) = field(default_factory=lambda: [27, 32, 37, 42])

    @property
    def quants(self) -> list[str]:
        return [self.quant] if isinstance(self.quant, str) else list(self.quant)

    def specs(self) -> list[CodingSpec]:
        """One CodingSpec per codec × layout × quantizer."""
        return [CodingSpec(codec=c, quant=q, bits=self.bits, layout=lay, preset=self.presets.get(c), reorder=self.reorder)
                for c in self.codecs for lay in self.layouts for q in self.quants]


@dataclass
class AllocationSpec:
    __pydantic_config__ = STRICT
    methods: unique_list(Method) = field(default_factory=lambda: ["uniform"])
    qp_range: NonNegative = 8
    profile_images: Positive = 6
    profile_qp: Int = 32
    profile_data: Str | None = None
    distance: Distance = "penultimate"  # penultimate | output | kl | top1: what a channel's noise costs
    # rdo / rdo-uniform (vcfc.sensitivity.options.RdoSettings); λ per QP is calibrated on the profile images
    rdo_span: Int = 6
    rdo_step: Int = 3
    rdo_groups: Int = 8
    rdo_rounds: Int = 8
    rdo_distortion: Str = "kl"

    @property
    def calibrates(self) -> bool:
        """Whether a method needs calibration images (a profile or λ): those are held out."""
        return any(ALLOCATORS.get(m).source != "none" for m in self.methods)

    def rdo_options(self) -> dict[str, Any]:
        return {"span": self.rdo_span, "step": self.rdo_step, "groups": self.rdo_groups,
                "rounds": self.rdo_rounds, "distortion": self.rdo_distortion}

    def rdo_settings(self) -> RdoSettings:
        """The search settings without λ (what λ calibration measures with), validated."""
        return RdoSettings(lam=0.0, **self.rdo_options()).checked()


@dataclass
class RunSpec:
    __pydantic_config__ = STRICT
    executor: Executor = "local"
    workers: Positive | None = None            # default: one per core
    threads_per_worker: Positive | None = None  # default: cores ÷ workers (torch, parallel images, encoders)
    batch_size: Positive = 4
    device: Device = "cpu"
    scheduler: Str | None = None


@dataclass
class Experiment:
    __pydantic_config__ = STRICT
    name: Str
    datasets: Annotated[list[DatasetSpec], NotEmpty]
    models: Annotated[list[ModelSpec], NotEmpty]
    coding: CodingGrid = field(default_factory=CodingGrid)
    allocation: AllocationSpec = field(default_factory=AllocationSpec)
    run: RunSpec = field(default_factory=RunSpec)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for m in d["models"]:  # unset optional keys stay out: runs made before they existed resume
            for k in OPTIONAL_MODEL_KEYS:
                if m.get(k) is None:
                    m.pop(k, None)
        return d

    def specs(self, layer: str) -> list[CodingSpec]:
        """How ``layer``'s features are coded: the [coding] grid, or for the network input
        (layer ``input``) one picture per codec (layout image; quantizers and layouts do not apply)."""
        if layer != INPUT:
            return self.coding.specs()
        return [CodingSpec(codec=c, layout=IMAGE_LAYOUT, preset=self.coding.presets.get(c)) for c in self.coding.codecs]

    def methods(self, layer: str) -> list[str]:
        """The allocation methods that apply to ``layer``: a picture has one QP, so the input gets
        no per-channel method (uniform and rdo-uniform are its per-image rate control)."""
        if layer != INPUT:
            return list(self.allocation.methods)
        return [m for m in self.allocation.methods if not ALLOCATORS.get(m).per_channel]


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    add_model_folder(path.parent)  # your own network's module may sit beside the file
    try:
        return experiment_from_dict(raw, base=path.parent, default_name=path.stem)
    except InputError as exc:  # name the file, not "experiment"
        raise InputError(f"{path}: {str(exc).removeprefix('experiment: ')}") from None


def experiment_from_dict(raw: dict[str, Any], base: Path = Path("."), default_name: str = "experiment") -> Experiment:
    """An Experiment from a parsed file: every field checked (types, ranges, choices: the schema),
    then what involves several fields (validate); relative paths are relative to ``base``."""
    raw = dict(raw)
    for plural, singular in (("datasets", "dataset"), ("models", "model")):  # [dataset] or [[datasets]]
        if singular in raw and plural not in raw:
            one = raw.pop(singular)
            raw[plural] = [one] if isinstance(one, dict) else one
    raw.setdefault("name", default_name)
    for what in ("datasets", "models"):
        if not raw.get(what):
            raise InputError(f"experiment: at least one [[{what}]] entry is needed "
                             f"({'a path' if what == 'datasets' else 'a name'} each)")
    if isinstance(raw["models"], list):
        raw["models"] = [_one_layer(m) for m in raw["models"]]
    exp = _parse(raw)
    for d in exp.datasets:
        d.path = str(_resolve(d.path, base))
    for m in exp.models:  # a checkpoint file next to the experiment file
        if m.weights.endswith(CHECKPOINT_SUFFIXES) or "/" in m.weights:
            m.weights = str(_resolve(m.weights, base))
    if exp.allocation.profile_data:
        exp.allocation.profile_data = str(_resolve(exp.allocation.profile_data, base))
    validate(exp)
    return exp


_SCHEMA = TypeAdapter(Experiment)


def _parse(raw: dict[str, Any]) -> Experiment:
    try:
        return _SCHEMA.validate_python(raw)
    except ValidationError as exc:
        raise error_line(exc) from None


def _one_layer(m: Any) -> Any:
    """``layer = "fire3"`` is ``layers = ["fire3"]``; so is ``layers = "fire3"``; ``checkpoint``
    (your own network's state_dict) is ``weights``."""
    if not isinstance(m, dict):
        return m
    m = dict(m)
    if "checkpoint" in m:
        if "weights" in m:
            raise InputError("experiment: [[models]] checkpoint: give checkpoint or weights, not both")
        m["weights"] = m.pop("checkpoint")
    if "layer" in m and "layers" not in m:
        m["layers"] = m.pop("layer")
    if isinstance(m.get("layers"), str):
        m["layers"] = [m["layers"]]
    return m


def _resolve(p: str, base: Path) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def validate(exp: Experiment) -> None:
    """What one field's type cannot say: the schema again (for experiments built in code), the
    picture layout, presets for listed codecs, every QP within its codec's range and the rdo
    settings, so a bad value stops the run before any task starts, with its name in the message."""
    _parse(exp.to_dict())
    c, a = exp.coding, exp.allocation
    if IMAGE_LAYOUT in c.layouts:
        raise InputError(f"experiment: [coding] layouts: {IMAGE_LAYOUT} codes a picture; list layer \"{INPUT}\" in "
                         f"[[models]] layers to code the network input, and feature layouts here")
    for m in exp.models:
        check_model_options(m.name, m.task, m.transform, where="[[models]] ")
    unusable = [m for m in a.methods if not ALLOCATORS.get(m).selectable]
    if unusable:
        raise InputError(f"experiment: [allocation] methods: {unusable[0]!r} cannot be named here "
                         f"({ALLOCATORS.get(unusable[0]).description})")
    unknown = sorted(set(c.presets) - set(c.codecs))
    if unknown:
        raise InputError(f"experiment: [coding] presets: given for codec(s) not in codecs: {', '.join(unknown)}")
    for spec in c.specs():
        try:
            spec.checked()  # preset and bit depth against the codec
        except InputError as exc:
            raise InputError(f"experiment: [coding] {exc}") from None
        for where, qps in (("[coding] qps", c.qps), ("[allocation] profile_qp", [a.profile_qp])):
            try:
                for q in qps:
                    spec.check_qp(q, "QP")
            except InputError as exc:
                raise InputError(f"experiment: {where}: {exc}") from None
    if "uniform" not in a.methods:
        a.methods.insert(0, "uniform")  # the anchor every BD-rate is measured against
    try:
        a.rdo_settings()
    except InputError as exc:
        raise InputError(f"experiment: [allocation] {exc}") from None
