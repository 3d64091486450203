"""head → encode → decode → tail over a dataset, scored against the uncompressed run.

`evaluate_batch` is the unit of work shared by `vcfc eval` and the experiment grid: the head
runs once per batch and its features are reused for every configuration. It returns one row
(a flat dict) per (image, configuration); `summarize` turns rows into the task's metrics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import vcfc
from vcfc.coding import SKIP
from vcfc.errors import InputError
from vcfc.ffmpeg import children_stopped_on_interrupt
from vcfc.picture import IMAGE_LAYOUT
from vcfc.sensitivity.allocation import ALLOCATORS
from vcfc.spec import CodingSpec

from .config import AllocationSpec
from .datasets import Batch
from .grid.budget import Budget
from .image_coding import ImageContext, code_image
from .splits import FeatureDict, Split
from .tasks import get_task, summarize

__all__ = ["EvalConfig", "eval_config", "evaluate_batch", "rate_stats", "summarize"]

@dataclass(frozen=True)
class EvalConfig:
    """One evaluated configuration: how features are coded (None = the uncompressed reference)
    and how their QPs are chosen (uniform `qp`, fixed `channel_qps`, or a per-image allocator).
    Build it with `eval_config` (what `vcfc eval` and experiment grids both do)."""

    spec: CodingSpec | None = None
    qp: int | None = None
    allocation: str = "uniform"  # an ALLOCATORS name; fixed QPs come with "file" or a profile method
    channel_qps: tuple[int, ...] | None = field(default=None, compare=False, hash=False)
    options: tuple[tuple[str, Any], ...] = ()  # what the allocator reads, e.g. (("qp_range", 5),)

    def label(self) -> str:
        return "none" if self.spec is None else f"{self.spec.label()}/{self.allocation}"

    def describe(self) -> dict[str, Any]:
        s = self.spec
        return {"codec": "none" if s is None else s.codec, "preset": None if s is None else s.preset,
                "quant": None if s is None else s.quant, "bits": None if s is None else s.bits,
                "layout": None if s is None else s.layout, "allocation": self.allocation,
                "qp": -1 if self.qp is None else int(self.qp)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (a grid task carries its configurations this way)."""
        return {"spec": None if self.spec is None else self.spec.to_dict(), "allocation": self.allocation,
                "qp": self.qp, "channel_qps": None if self.channel_qps is None else list(self.channel_qps),
                "options": [list(kv) for kv in self.options]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalConfig:
        qps = d.get("channel_qps")
        return cls(spec=None if d["spec"] is None else CodingSpec(**d["spec"]).checked(), qp=d["qp"],
                   allocation=d["allocation"], channel_qps=tuple(qps) if qps else None,
                   options=tuple((k, v) for k, v in d.get("options", [])))


def eval_config(spec: CodingSpec | None, allocation: str, qp: int | None, settings: AllocationSpec, *,
                channel_qps: Sequence[int] | None = None, lam: float | None = None) -> EvalConfig:
    """The configuration of one (spec, allocation, base QP): the allocation's own options taken
    from ``settings`` (an experiment's [allocation] table; `vcfc eval` builds one from its flags)
    and the run's calibrated ``lam``; ``channel_qps``: fixed QPs (a file, a profile allocation)."""
    alloc = ALLOCATORS.get(allocation)
    if spec is not None and spec.layout == IMAGE_LAYOUT and alloc.per_channel:
        raise InputError(f"allocation {allocation} sets a QP per channel, and a picture has one QP: "
                         f"use uniform or rdo-uniform for the network input")
    offered = {"qp_range": settings.qp_range, **settings.rdo_options(), "lam": lam}
    return EvalConfig(spec=spec, qp=qp, allocation=allocation,
                      channel_qps=None if channel_qps is None else tuple(int(q) for q in channel_qps),
                      options=alloc.pick_options(offered))


def _per_image(features: Any, i: int) -> Any:
    if isinstance(features, dict):
        return {k: v[i] for k, v in features.items()}
    return features[i]


def _restack(items: list[Any], like: Any) -> Any:
    if isinstance(like, dict):
        out = {k: torch.stack([it[k] for it in items]) for k in like}
        return FeatureDict(out, meta=getattr(like, "meta", None))
    return torch.stack(items)


def _elements(features: Any) -> int:
    return sum(v.numel() for v in features.values()) if isinstance(features, dict) else features.numel()


def _raw_bytes(features: Any) -> int:
    values = features.values() if isinstance(features, dict) else [features]
    return sum(v.numel() * v.element_size() for v in values)


def _to(recon: Any, like: Any) -> Any:
    if isinstance(like, dict):
        return {k: v.to(like[k].device) for k, v in recon.items()}
    return recon.to(like.device)


def rate_stats(data: bytes, elements: int, t: dict[str, float]) -> dict[str, Any]:
    """The row fields that describe one coded file: its honest size and the stage timings."""
    info = vcfc.inspect(data)
    qps = np.concatenate([np.asarray(v) for v in info["channel_qps"].values()])
    coded = qps[qps != SKIP]
    return {"bytes": info["bytes"], "side_info_bytes": info["side_info_bytes"], "elements": elements,
            "channels": int(qps.size), "skipped": int(qps.size - coded.size),
            "bpfe": info["bpfe"], "bpp": info["bpp"], "mean_qp": float(coded.mean()) if coded.size else float("nan"),
            "qp_vector": ",".join(map(str, qps.tolist())) if qps.min() != qps.max() else "",
            "quant_s": t.get("quantize", 0.0), "pack_s": t.get("pack", 0.0), "encode_s": t.get("encode", 0.0),
            "decode_s": t.get("decode", 0.0) + t.get("dequantize", 0.0), "alloc_s": t.get("alloc", 0.0)}


def evaluate_batch(split: Split, batch: Batch, configs: Sequence[EvalConfig], ffmpeg: str | None = None,
                   threads: int | None = None, budget: Budget | None = None) -> list[dict[str, Any]]:
    """Run one batch through head once and through tail per configuration; one row per image × config.

    Each image keeps its frame banks across the configurations, so configs that need the same
    pictures (uniform at q, the perimage sweep at q, rdo's grid) code them once. The images of a
    batch are coded in parallel threads (ffmpeg runs out of process) while the tail runs on the
    previous configuration's reconstructions.
    threads: encoder/decoder threads per ffmpeg run (None: from the budget); budget: this
    process's share of the machine (default: every core).
    """
    task = get_task(split.task)
    images = batch.images
    if isinstance(images, list) and task.batchable:
        # Images of different sizes (e.g. segmentation transforms keep the aspect): one at a time.
        return [row for i in range(len(images))
                for row in evaluate_batch(split, _one(batch, i), configs, ffmpeg, threads, budget)]
    n_img = len(batch.image_ids)
    t0 = time.perf_counter()
    features = split.head(images)
    head_s = (time.perf_counter() - t0) / n_img
    meta = dict(getattr(features, "meta", None) or split.last_meta)
    t0 = time.perf_counter()
    ref = split.tail(features, meta=meta)
    ref_tail_s = (time.perf_counter() - t0) / n_img
    input_hw = _input_hw(images)
    budget = budget or Budget.share(1)
    workers = budget.image_workers(n_img)
    threads = threads if threads is not None else budget.per_image(n_img)
    contexts = [ImageContext(_per_image(features, i), input_hw[i], ffmpeg, threads) for i in range(n_img)]
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(workers) as pool, children_stopped_on_interrupt():
        def submit(cfg: EvalConfig) -> list[Future]:
            return [pool.submit(_code, split, ctx, cfg, ffmpeg, threads) for ctx in contexts]

        pending = submit(configs[0]) if configs else []
        for k, cfg in enumerate(configs):
            coded = [f.result() for f in pending]
            # the next configuration is coded (out of process) while this one's tail runs
            pending = submit(configs[k + 1]) if k + 1 < len(configs) else []
            t0 = time.perf_counter()
            out = ref if cfg.spec is None else split.tail(_restack([r for r, _ in coded], features), meta=meta)
            tail_s = ref_tail_s if cfg.spec is None else (time.perf_counter() - t0) / n_img
            scores = task.score(ref, out, batch.targets, batch.image_ids)
            for i, image_id in enumerate(batch.image_ids):
                rows.append({
                    "image_id": image_id, "config": cfg.label(), **cfg.describe(),
                    "mean_qp": float(cfg.qp if cfg.qp is not None else -1), **coded[i][1],
                    "head_s": head_s, "tail_s": tail_s, **scores[i], "status": "ok", "error": "",
                })
    return rows


def _code(split: Split, ctx: ImageContext, cfg: EvalConfig, ffmpeg: str | None, threads: int | None
          ) -> tuple[Any, dict[str, Any]]:
    """One image under one config: (reconstruction on the features' device, row fields)."""
    n = _elements(ctx.features)
    if cfg.spec is None:
        nbytes = _raw_bytes(ctx.features)  # sent uncompressed: float32 features, a uint8 picture
        return ctx.features, {"bytes": nbytes, "side_info_bytes": 0, "elements": n, "bpfe": 8.0 * nbytes / n,
                              "bpp": 8.0 * nbytes / (ctx.input_hw[0] * ctx.input_hw[1])}
    t0 = time.perf_counter()
    data, t = code_image(split, ctx, cfg)
    t["alloc"] = time.perf_counter() - t0 - t.get("encode", 0.0) - t.get("quantize", 0.0) - t.get("pack", 0.0)
    recon = vcfc.decode(data, ffmpeg=ffmpeg, threads=threads, timings=t)
    return _to(recon, ctx.features), rate_stats(data, n, t)


def _one(batch: Batch, i: int) -> Batch:
    targets = None if batch.targets is None else batch.targets[i : i + 1]
    return Batch(image_ids=batch.image_ids[i : i + 1], images=batch.images[i][None], targets=targets, paths=batch.paths[i : i + 1])


def _input_hw(images: Any) -> list[tuple[int, int]]:
    if isinstance(images, torch.Tensor):
        return [tuple(images.shape[-2:])] * images.shape[0]
    return [tuple(im.shape[-2:]) for im in images]
