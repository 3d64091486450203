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
from typing import Any

from vcfc.codecs import CODECS
from vcfc.errors import InputError
from vcfc.packing.layouts import LAYOUTS
from vcfc.packing.quantizers import QUANTIZERS
from vcfc.packing.reorder import REORDERS
from vcfc.picture import IMAGE_LAYOUT
from vcfc.registry import Registry
from vcfc.sensitivity.allocation import ALLOCATORS
from vcfc.sensitivity.distances import DISTANCES
from vcfc.sensitivity.options import RdoSettings
from vcfc.spec import CodingSpec

from .grid.executors import EXECUTORS
from .presets import INPUT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib



@dataclass
class DatasetSpec:
    path: str
    kind: str = "auto"
    limit: int | None = None


@dataclass
class ModelSpec:
    name: str
    weights: str = "DEFAULT"
    layers: list[str] = field(default_factory=lambda: ["pool1"])


@dataclass
class CodingGrid:
    """[coding]: the codecs × layouts × QPs to run; each (codec, layout) is one CodingSpec."""

    codecs: list[str] = field(default_factory=lambda: ["x265"])
    presets: dict[str, str] = field(default_factory=dict)
    quant: str | list[str] = "minmax"  # one quantizer, or several to compare
    bits: int = 8
    layouts: list[str] = field(default_factory=lambda: ["frames"])
    reorder: str = "none"
    qps: list[int] = field(default_factory=lambda: [27, 32, 37, 42])

    @property
    def quants(self) -> list[str]:
        return [self.quant] if isinstance(self.quant, str) else list(self.quant)

    def specs(self) -> list[CodingSpec]:
        """One CodingSpec per codec × layout × quantizer."""
        return [CodingSpec(codec=c, quant=q, bits=self.bits, layout=lay, preset=self.presets.get(c), reorder=self.reorder)
                for c in self.codecs for lay in self.layouts for q in self.quants]


@dataclass
class AllocationSpec:
    methods: list[str] = field(default_factory=lambda: ["uniform"])
    qp_range: int = 8
    profile_images: int = 6
    profile_qp: int = 32
    profile_data: str | None = None
    distance: str = "penultimate"  # penultimate | output | kl | top1: what a channel's noise costs
    # rdo / rdo-uniform (vcfc.sensitivity.options.RdoSettings); λ per QP is calibrated on the profile images
    rdo_span: int = 6
    rdo_step: int = 3
    rdo_groups: int = 8
    rdo_rounds: int = 8
    rdo_distortion: str = "kl"

    def rdo_options(self) -> dict[str, Any]:
        return {"span": self.rdo_span, "step": self.rdo_step, "groups": self.rdo_groups,
                "rounds": self.rdo_rounds, "distortion": self.rdo_distortion}

    def rdo_settings(self) -> RdoSettings:
        """The search settings without λ (what λ calibration measures with), validated."""
        return RdoSettings(lam=0.0, **self.rdo_options()).checked()


@dataclass
class RunSpec:
    executor: str = "local"
    workers: int | None = None            # default: one per core
    threads_per_worker: int | None = None  # default: cores ÷ workers (torch, parallel images, encoders)
    batch_size: int = 4
    device: str = "cpu"
    scheduler: str | None = None


@dataclass
class Experiment:
    name: str
    datasets: list[DatasetSpec]
    models: list[ModelSpec]
    coding: CodingGrid = field(default_factory=CodingGrid)
    allocation: AllocationSpec = field(default_factory=AllocationSpec)
    run: RunSpec = field(default_factory=RunSpec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
    return experiment_from_dict(raw, base=path.parent, default_name=path.stem)


def experiment_from_dict(raw: dict[str, Any], base: Path = Path("."), default_name: str = "experiment") -> Experiment:
    known = {"name", "datasets", "dataset", "models", "model", "coding", "allocation", "run"}
    _no_unknown(raw, known, "experiment")
    datasets = _list_of_tables(raw, "datasets", "dataset")
    models = _list_of_tables(raw, "models", "model")
    if not datasets:
        raise InputError("experiment: at least one [[datasets]] entry with a path is needed")
    if not models:
        raise InputError("experiment: at least one [[models]] entry with a name is needed")
    exp = Experiment(
        name=str(raw.get("name", default_name)),
        datasets=[_dataset(d, base) for d in datasets],
        models=[_model(m) for m in models],
        coding=_build(CodingGrid, raw.get("coding", {}), "coding"),
        allocation=_build(AllocationSpec, raw.get("allocation", {}), "allocation"),
        run=_build(RunSpec, raw.get("run", {}), "run"),
    )
    if exp.allocation.profile_data:
        exp.allocation.profile_data = str(_resolve(exp.allocation.profile_data, base))
    validate(exp)
    return exp


def _list_of_tables(raw: dict[str, Any], plural: str, singular: str) -> list[dict[str, Any]]:
    value = raw.get(plural, raw.get(singular, []))
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(f"experiment: '{plural}' must be a list of tables ([[{plural}]])")
    return value


def _dataset(d: dict[str, Any], base: Path) -> DatasetSpec:
    spec = _build(DatasetSpec, d, "datasets")
    spec.path = str(_resolve(spec.path, base))
    return spec


def _model(m: dict[str, Any]) -> ModelSpec:
    m = dict(m)
    if "layer" in m:
        m["layers"] = [m.pop("layer")]
    spec = _build(ModelSpec, m, "models")
    if isinstance(spec.layers, str):
        spec.layers = [spec.layers]
    return spec


def _resolve(p: str, base: Path) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise InputError(f"experiment: [{where}] must be a table")
    names = {f for f in cls.__dataclass_fields__}
    _no_unknown(values, names, where)
    try:
        return cls(**values)
    except TypeError as exc:
        raise InputError(f"experiment: [{where}] {exc}") from None


def _no_unknown(values: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"experiment: unknown field(s) {', '.join(unknown)} in [{where}] (known: {', '.join(sorted(known))})")


def validate(exp: Experiment) -> None:
    """Every choice against its registry and every QP against its codec's range, so a bad value
    stops the run before any task starts, with its name in the message."""
    c, a, r = exp.coding, exp.allocation, exp.run
    _choices(c.codecs, CODECS)
    _choices(c.layouts, LAYOUTS)
    if IMAGE_LAYOUT in c.layouts:
        raise InputError(f"experiment: [coding] layouts: {IMAGE_LAYOUT} codes a picture; list layer \"{INPUT}\" in "
                         f"[[models]] layers to code the network input, and feature layouts here")
    if not c.quants or not all(isinstance(q, str) for q in c.quants):
        raise InputError("experiment: [coding] quant must be a quantizer name or a list of them")
    _choices(c.quants, QUANTIZERS)
    _choices([c.reorder], REORDERS)
    _choices(a.methods, ALLOCATORS)
    unusable = [m for m in a.methods if not ALLOCATORS.get(m).selectable]
    if unusable:
        raise InputError(f"experiment: allocation {unusable[0]!r} cannot be named in methods "
                         f"({ALLOCATORS.get(unusable[0]).description})")
    _choices([a.distance], DISTANCES)
    _choices([r.executor], EXECUTORS)
    unknown = sorted(set(c.presets) - set(c.codecs))
    if unknown:
        raise InputError(f"experiment: presets given for codec(s) not in codecs: {', '.join(unknown)}")
    if not c.qps or not all(isinstance(q, int) and not isinstance(q, bool) for q in c.qps):
        raise InputError("experiment: [coding] qps must be a non-empty list of integers")
    for spec in c.specs():
        try:
            spec.checked()
            for q in [*c.qps, a.profile_qp]:
                spec.check_qp(q, "QP")
        except InputError as exc:
            raise InputError(f"experiment: {exc}") from None
    if "uniform" not in a.methods:
        a.methods.insert(0, "uniform")  # the anchor every BD-rate is measured against
    if a.profile_images < 1 or a.qp_range < 0:
        raise InputError("experiment: profile_images must be ≥ 1 and qp_range ≥ 0")
    try:
        a.rdo_settings()
    except InputError as exc:
        raise InputError(f"experiment: [allocation] {exc}") from None
    if r.batch_size < 1:
        raise InputError("experiment: batch_size must be ≥ 1")
    if r.workers is not None and r.workers < 1:
        raise InputError("experiment: workers must be ≥ 1")
    for d in exp.datasets:
        if d.limit is not None and d.limit < 1:
            raise InputError("experiment: dataset limit must be ≥ 1")


def _choices(values: list[Any], registry: Registry) -> None:
    """Each value must name an entry of ``registry`` (the registry's own one-line error)."""
    for v in values:
        try:
            registry.get(v)
        except (InputError, ValueError) as exc:
            raise InputError(f"experiment: {exc}") from None
