"""Where to cut a network: bytes per image at equal fidelity against the head's compute, for
every candidate split point and the coded image (the remote-inference anchor, zero head FLOPs).

`candidate_cuts` lists a model's split points with their head FLOPs (`torch.utils.flop_counter`
on the meta device: no weights, no compute) and feature elements; `study` runs them as one
resumable experiment (layers input + the cuts, uniform / rdo-uniform / rdo, λ calibrated on
held-out images) and `summarize` turns the rows into the bytes per image each (cut, method) needs
to reach each target fidelity, with paired bootstrap intervals, the Pareto front over (head FLOPs,
bytes), and the BD-rates of every cut against the image. `vcfc splits` is the command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from vcfc.errors import InputError
from vcfc.results import aggregate
from vcfc.results.bdrate import (
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    bootstrap_indices,
    clean_curve,
    percentile_interval,
    resampled_means,
)

from .config import AllocationSpec, CodingGrid, DatasetSpec, Experiment, ModelSpec, RunSpec, validate
from .models import meta_split
from .presets import INPUT, presets_of
from .tasks import get_task

TARGETS = (0.90, 0.95, 0.98)
METHODS = ("uniform", "rdo-uniform", "rdo")
QPS = (17, 22, 27, 32, 37, 42)


@dataclass
class Cut:
    layer: str
    head_flops: int            # FLOPs of the head for one network input (multiply-add = 2)
    total_flops: int           # of the whole network
    shape: list[int]           # C, H, W of the features
    elements: int
    input_elements: int        # 3 × H × W of the network input

    @property
    def flops_share(self) -> float:
        return self.head_flops / self.total_flops if self.total_flops else math.nan

    @property
    def element_ratio(self) -> float:
        return self.elements / self.input_elements

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flops_share": self.flops_share, "element_ratio": self.element_ratio}


def _flops(fn: Any, *args: Any) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def network_input(model: str) -> tuple[int, int]:
    """The network input's size: the crop of the model's pretrained weights' transforms (224×224
    for most classifiers, 299 for inception_v3, …; read from torchvision's weight enum, nothing is
    downloaded), else 224×224."""
    try:
        crop = getattr(torchvision.models.get_model_weights(model).DEFAULT.transforms(), "crop_size", None)
    except (ValueError, KeyError, AttributeError):  # not a torchvision model name
        crop = None
    if isinstance(crop, (list, tuple)) and crop:
        return (int(crop[0]), int(crop[-1]))
    return (int(crop), int(crop)) if isinstance(crop, int) else (224, 224)


def cut_of(model: str, layer: str) -> Cut:
    """Head FLOPs and feature size of one split point for one network input (meta device: no
    weights, no compute)."""
    input_hw = network_input(model)
    sp = meta_split(model, layer)
    task = get_task(sp.task)
    x = torch.zeros(1, 3, *input_hw, device="meta")
    total = _flops(task.run_model, sp.model, x)
    if layer == INPUT:
        return Cut(INPUT, 0, total, [3, *input_hw], 3 * input_hw[0] * input_hw[1], 3 * input_hw[0] * input_hw[1])
    shape = sp.feature_shapes(input_hw)
    if isinstance(shape, dict):
        raise InputError(f"{model}: split points of several tensors (an FPN) are not compared by vcfc splits")
    head = _flops(lambda t: sp._run_head(t, record=False), x)
    return Cut(layer, head, total, list(shape), int(np.prod(shape)), 3 * input_hw[0] * input_hw[1])


def candidate_cuts(model: str, layers: Sequence[str] | None = None, max_flops: float = 0.5,
                   max_cuts: int = 3) -> list[Cut]:
    """The split points to compare: ``layers`` as given, or the model's presets whose features have
    no more elements than the network input and whose head costs at most ``max_flops`` of the
    network, the cheapest head of each feature shape first, at most ``max_cuts``."""
    if layers:
        return [cut_of(model, layer) for layer in layers if layer != INPUT]
    presets = presets_of(model)
    if not presets:
        raise InputError(f"{model} has no split presets: name the cuts with --layers (module paths)")
    cuts = [c for c in (cut_of(model, p) for p in presets) if c.element_ratio <= 1.0 and c.flops_share <= max_flops]
    if not cuts:
        raise InputError(f"{model}: no preset has at most the input's elements within {max_flops:.0%} of the "
                         f"FLOPs; name the cuts with --layers")
    firsts, rest, shapes = [], [], set()
    for c in sorted(cuts, key=lambda c: c.head_flops):
        (rest if tuple(c.shape) in shapes else firsts).append(c)
        shapes.add(tuple(c.shape))
    chosen = (firsts + rest)[:max_cuts]
    return sorted(chosen, key=lambda c: c.head_flops)


def study(model: str, weights: str, data: Sequence[str], kind: str, limit: int | None, cuts: Sequence[Cut],
          methods: Sequence[str] = METHODS, qps: Sequence[int] = QPS, codec: str = "x265",
          preset: str | None = "fast", calibrate: int = 8, device: str = "cpu", batch_size: int = 4,
          workers: int | None = None) -> Experiment:
    """The experiment of a study: the image and every cut, every method, every QP, over the
    datasets ``data`` (``limit`` images of each); the first ``calibrate`` images of the first set
    rdo's λ and are not evaluated."""
    exp = Experiment(
        name=f"where to split {model}",
        datasets=[DatasetSpec(path=str(d), kind=kind, limit=limit) for d in data],
        models=[ModelSpec(name=model, weights=weights, layers=[INPUT, *[c.layer for c in cuts]])],
        coding=CodingGrid(codecs=[codec], presets={codec: preset} if preset else {}, layouts=["frames"], qps=list(qps)),
        allocation=AllocationSpec(methods=list(methods), profile_images=calibrate),
        run=RunSpec(workers=workers, batch_size=batch_size, device=device),
    )
    validate(exp)  # the experiment file's own checks, before any work
    return exp


# --------------------------------------------------------------------------- bytes at a fidelity

def bytes_at(rates: np.ndarray, fidelity: np.ndarray, target: float) -> tuple[float, str | None]:
    """Mean bytes per image a curve needs to reach ``target`` mean fidelity: the curve's points
    (one per QP, sorted by rate) reduced to those that increase in both, then log-bytes linear in
    fidelity between the two points around the target. Above the curve: NaN, "not reached". Below
    its coarsest point: that point's bytes, an upper bound (the reason says so)."""
    r, q = clean_curve(rates, fidelity)
    if len(r) == 0:
        return math.nan, "no points"
    if target > q[-1]:
        return math.nan, f"not reached (best {q[-1]:.3f})"
    if target < q[0]:  # reached already at the coarsest QP: at most these bytes
        return float(r[0]), f"at most: the coarsest QP already reaches {q[0]:.3f}"
    k = int(np.searchsorted(q, target))
    if q[k] == target or k == 0:
        return float(r[k]), None
    t = (target - q[k - 1]) / (q[k] - q[k - 1])
    return float(np.exp(np.log(r[k - 1]) + t * (np.log(r[k]) - np.log(r[k - 1])))), None


@dataclass
class AtTarget:
    bytes: float
    ci_low: float
    ci_high: float
    reason: str | None = None
    pareto: bool = False


@dataclass
class Curve:
    layer: str
    allocation: str
    config: str
    points: list[dict[str, float]]                       # qp, bytes_per_image, fidelity
    at: dict[float, AtTarget] = field(default_factory=dict)
    # per image method ("uniform", "rdo-uniform") and target: % bytes against the image, paired CI
    vs_image: dict[str, dict[float, AtTarget]] = field(default_factory=dict)


def summarize(rows: pd.DataFrame, cuts: Sequence[Cut], targets: Sequence[float] = TARGETS,
              n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED, ci: float = 0.95) -> list[Curve]:
    """Per (layer, method): its points and, per target fidelity, the bytes per image it needs with
    a paired percentile bootstrap interval (the same image draws for every curve) and whether it
    is on the Pareto front of (head FLOPs, bytes) at that target."""
    ok = aggregate.ok_rows(rows)
    ok = ok.assign(_image=aggregate.image_key(ok))  # paired: the same image draws for every curve
    images = sorted(ok["_image"].unique())
    idx = bootstrap_indices(len(images), n_boot, seed) if n_boot > 0 else None
    flops = {c.layer: c.head_flops for c in cuts}
    curves, boots = [], []
    for (layer, alloc, config), d in ok.groupby(["layer", "allocation", "config"], sort=True):
        b = d.pivot_table(index="_image", columns="qp", values="bytes", aggfunc="mean").reindex(images)
        f = d.pivot_table(index="_image", columns="qp", values="fidelity", aggfunc="mean").reindex(images)
        mb, mf = b.mean().to_numpy(), f.mean().to_numpy()
        curve = Curve(str(layer), str(alloc), str(config),
                      [{"qp": int(q), "bytes_per_image": float(x), "fidelity": float(y)} for q, x, y in zip(b.columns, mb, mf)])
        rb = resampled_means(b.to_numpy(float), idx) if idx is not None else None
        rf = resampled_means(f.to_numpy(float), idx) if idx is not None else None
        boot_at: dict[float, np.ndarray] = {}
        for t in targets:
            value, reason = bytes_at(mb, mf, t)
            lo = hi = math.nan
            if rb is not None and not math.isnan(value):
                boot = boot_at[t] = np.array([bytes_at(rb[k], rf[k], t)[0] for k in range(len(rb))])
                interval = percentile_interval(boot, ci)
                if interval is None:
                    n_nan = int((~np.isfinite(boot)).sum())
                    reason = f"{n_nan} of {len(boot)} resamples do not reach it: no interval"
                else:
                    lo, hi = interval
            curve.at[t] = AtTarget(value, lo, hi, reason)
        curves.append(curve)
        boots.append(boot_at)
    for t in targets:
        _mark_pareto([c for c in curves if c.layer in flops], t, flops)
    _compare_with_image(curves, boots, targets, ci)
    return curves


def _compare_with_image(curves: list[Curve], boots: list[dict[float, np.ndarray]], targets: Sequence[float],
                        ci: float) -> None:
    """Each cut's bytes at each target against each image curve's, in % (negative = fewer bytes
    than the image), with the interval of the same paired resamples: where the features must
    beat the image is at the fidelity one operates at, which a BD-rate over the whole shared
    fidelity range (mostly low fidelities) does not say."""
    images = [(c, b) for c, b in zip(curves, boots) if c.layer == INPUT]
    for c, b in zip(curves, boots):
        if c.layer == INPUT:
            continue
        for img, img_b in images:
            per_target = c.vs_image.setdefault(img.allocation, {})
            for t in targets:
                mine, theirs = c.at[t], img.at[t]
                if not (math.isfinite(mine.bytes) and math.isfinite(theirs.bytes)):
                    why = "the image does not reach it" if math.isfinite(mine.bytes) else "the cut does not reach it"
                    per_target[t] = AtTarget(math.nan, math.nan, math.nan, why)
                    continue
                change = 100 * (mine.bytes / theirs.bytes - 1)
                lo = hi = math.nan
                reason = None  # a bound on either side (the coarsest QP already reaches it) makes one here
                if mine.reason and mine.reason.startswith("at most"):
                    reason = "at most: the cut's coarsest QP already reaches it"
                elif theirs.reason and theirs.reason.startswith("at most"):
                    reason = "at least: the image's coarsest QP already reaches it"
                if t in b and t in img_b:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        interval = percentile_interval(100 * (b[t] / img_b[t] - 1), ci)
                    if interval is None:
                        reason = "too many resamples do not reach it: no interval"
                    else:
                        lo, hi = interval
                per_target[t] = AtTarget(change, lo, hi, reason)


def _mark_pareto(curves: list[Curve], target: float, flops: dict[str, int]) -> None:
    """On the front: no other (cut, method) is at least as good on both head FLOPs and bytes and
    better on one."""
    pts = [(flops[c.layer], c.at[target].bytes, c) for c in curves if math.isfinite(c.at[target].bytes)]
    for f, b, c in pts:
        c.at[target].pareto = not any(f2 <= f and b2 <= b and (f2 < f or b2 < b) for f2, b2, _ in pts)


def vs_image(rows: pd.DataFrame, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """BD-rate on bytes per image (fidelity and output KL) of every (cut, method) against the
    image coded with uniform QP and with per-image rate control (rdo-uniform), where run."""
    return aggregate.bd_vs_image(rows, n_boot=n_boot, seed=seed)


def timing(rows: pd.DataFrame, cuts: Sequence[Cut]) -> dict[str, float]:
    """Seconds of grid work per image for each cut (all its methods and QPs): its tasks' wall time
    over the images they evaluated."""
    out = {}
    ok = aggregate.ok_rows(rows)
    for c in [INPUT, *[c.layer for c in cuts]]:
        d = ok[ok["layer"] == c]
        if len(d) and "task_s" in d:
            per_task = d.groupby("task_key").agg(task_s=("task_s", "first"), images=("image_id", "nunique"))
            out[c] = float(per_task["task_s"].sum() / max(1, per_task["images"].sum()))
    return out
