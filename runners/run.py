"""Run an experiment: sensitivity profiles and QP allocations first, then the resumable grid.

One grid task = one batch of images of one (dataset, model, layer) × every coding configuration:
the head runs once per image and its features are reused for every codec / allocation / QP;
the tail batches the images. Tasks run in worker processes (local pool or Dask) and each
finished task's rows are stored atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vcfc.errors import InputError

from .experiment import Experiment
from .executors import worker_cache
from .grid import GridResult, run_grid
from .store import RowStore, write_manifest

ALLOCATIONS_FILE = "allocations.json"
SAMPLE_FRAME = "sample_frame.npy"


def run_experiment(exp: Experiment, run_dir: str | Path, *, executor: str | None = None, workers: int | None = None,
                   scheduler: Any = None, retry_errors: bool = False, progress: bool = True) -> GridResult:
    """Prepare profiles/allocations (cached in run_dir) and run every unfinished task."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(run_dir, exp.to_dict())
    allocations = prepare_allocations(exp, run_dir, progress=progress)
    tasks = build_tasks(exp, allocations)
    store = RowStore(run_dir)
    result = run_grid(tasks, run_task, store, executor=executor or exp.run.executor,
                      workers=workers or exp.run.workers, scheduler=scheduler or exp.run.scheduler,
                      progress=progress, setup=worker_setup, retry_errors=retry_errors)
    if not result.interrupted:
        store.compact()
    return result


def worker_setup() -> None:
    import logging

    import torch

    # Workers share the cores with ffmpeg: one torch thread each avoids oversubscription.
    torch.set_num_threads(1)
    # The parent already said it once; N workers repeating it (with source lines) is noise.
    warnings.filterwarnings("ignore", message=".*random weights.*")
    logging.getLogger("runners").addHandler(logging.NullHandler())
    logging.getLogger("runners").propagate = False


def _split(model: str, weights: str, layer: str, device: str):
    from sensitivity import resolve_device

    from .models import split

    key = ("split", model, weights, layer, device)
    return worker_cache().get_or_compute(key, lambda: split(model, at=layer, weights=None if weights == "none" else weights, device=resolve_device(device)))


def _dataset(path: str, kind: str, transform: Any, key: Any):
    from .datasets import open_dataset

    return worker_cache().get_or_compute(("dataset", path, kind, key), lambda: open_dataset(path, kind=kind, transform=transform))


def _eval_range(exp: Experiment, d_index: int, n_images: int) -> range:
    """Images evaluated: the profile images of the first dataset are held out of the evaluation."""
    start = 0
    needs_profile = any(m != "uniform" for m in exp.allocation.methods)
    if needs_profile and d_index == 0 and not exp.allocation.profile_data:
        start = exp.allocation.profile_images
        if start >= n_images:
            raise InputError(f"dataset {exp.datasets[0].path}: {n_images} images, all used for the sensitivity "
                             f"profile (profile_images = {start}); lower profile_images or add images")
    return range(start, n_images)


def prepare_allocations(exp: Experiment, run_dir: Path, progress: bool = True) -> dict[str, list[int]]:
    """Per-channel QPs for every (model, layer, codec, layout, method, qp), measured once per run."""
    path = run_dir / ALLOCATIONS_FILE
    if path.exists():
        return json.loads(path.read_text())
    out: dict[str, list[int]] = {}
    if any(m != "uniform" for m in exp.allocation.methods):
        for m in exp.models:
            for layer in m.layers:
                for codec in exp.coding.codecs:
                    for layout in exp.coding.layouts:
                        profile = _profile(exp, m.name, m.weights, layer, codec, layout, run_dir, progress)
                        for method in exp.allocation.methods:
                            if method == "uniform":
                                continue
                            for qp in exp.coding.qps:
                                qps = allocate(method, profile, qp, exp.allocation.qp_range, codec, exp.allocation.profile_qp)
                                out[alloc_key(m.name, layer, codec, layout, method, qp)] = [int(v) for v in qps]
    _save_sample_frame(exp, run_dir)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)
    return out


def alloc_key(model: str, layer: str, codec: str, layout: str, method: str, qp: int) -> str:
    return f"{model}/{layer}/{codec}/{layout}/{method}/{qp}"


def allocate(method: str, profile: Any, qp: int, qp_range: int, codec: str, profile_qp: int) -> np.ndarray:
    """Channel QPs at base QP `qp`. Lagrangian: same estimated rate as uniform `qp`, least task cost."""
    from sensitivity import allocate_linear, lagrangian_for_target, task_weights
    from vcfc.codecs import get_codec

    limits = tuple(get_codec(codec).qp_range)
    if method == "linear":
        return allocate_linear(profile.sensitivity, qp, qp_range, limits)
    rd = profile.rd()
    if rd is None:
        raise InputError("the Lagrangian allocator needs rate/distortion tables in the profile")
    grid, rate, dist = rd
    if qp not in grid:
        raise InputError(f"QP {qp} is not in the profile's R/D grid {grid}")
    weights = task_weights(profile.sensitivity, dist, grid, profile_qp)
    target = float(rate[:, grid.index(qp)].sum())
    # Candidates within qp ± qp_range, as for the linear rule: the additive cost model is a
    # local one, and far QPs would trust it where it was never measured.
    keep = [k for k, g in enumerate(grid) if abs(g - qp) <= qp_range]
    cand = [grid[k] for k in keep]
    return lagrangian_for_target(weights, rate[:, keep], dist[:, keep], cand, target_bytes=target).qps


def _rd_grid(exp: Experiment, codec: str) -> list[int]:
    from vcfc.codecs import get_codec

    lo_lim, hi_lim = get_codec(codec).qp_range
    r = exp.allocation.qp_range
    lo, hi = max(lo_lim, min(exp.coding.qps) - r), min(hi_lim, max(exp.coding.qps) + r)
    return sorted(set(range(lo, hi + 1, 2)) | set(exp.coding.qps))


def _profile(exp: Experiment, model: str, weights: str, layer: str, codec: str, layout: str, run_dir: Path, progress: bool):
    from sensitivity import measure, penultimate_graph, read_profile, resolve_device, write_profile

    from .datasets import open_dataset

    prefix = run_dir / "profiles" / f"{model}__{layer}__{codec}__{layout}".replace("/", "_")
    if prefix.with_suffix(".parquet").exists():
        return read_profile(prefix.with_suffix(".parquet"))
    sp = _split(model, weights, layer, exp.run.device)
    data = exp.allocation.profile_data or exp.datasets[0].path
    kind = "auto" if exp.allocation.profile_data else exp.datasets[0].kind
    ds = open_dataset(data, kind=kind, transform=sp.transforms, limit=exp.allocation.profile_images)
    if sp.task != "classification":
        raise InputError(f"{model}: sensitivity allocation is implemented for classifiers in experiments (got {sp.task})")

    def features():
        for sample in ds:
            yield sp.head(sample.image[None])[0]

    # The fx modules (not the no_grad wrappers) let the sweep use its channels-last fast path.
    tail = getattr(sp, "tail_module", None)
    penultimate = penultimate_graph(tail) if tail is not None else sp.penultimate
    profile = measure(
        features(), tail=tail if tail is not None else sp.tail, penultimate=penultimate,
        qp_base=exp.allocation.profile_qp, codec=codec,
        quant=exp.coding.quant, bits=exp.coding.bits, layout=layout, preset=exp.coding.presets.get(codec),
        device=resolve_device(exp.run.device), rd_qps=_rd_grid(exp, codec), progress=progress, distance=exp.allocation.distance,
        meta={"model": model, "weights": weights, "layer": layer, "dataset": str(data), "images": len(ds)},
    )
    write_profile(profile, prefix)
    return profile


def _save_sample_frame(exp: Experiment, run_dir: Path) -> None:
    """One image's quantized features as the codec sees them (the report shows it as a picture)."""
    from packing.layouts import pack, plan_streams
    from packing.quantizers import quantize

    from .datasets import open_dataset

    try:
        m = exp.models[0]
        sp = _split(m.name, m.weights, m.layers[0], exp.run.device)
        ds = open_dataset(exp.datasets[0].path, kind=exp.datasets[0].kind, transform=sp.transforms, limit=1)
        feats = sp.head(ds[0].image[None])
        arrays = {k: v[0].cpu().numpy() for k, v in feats.items()} if isinstance(feats, dict) else {"x": feats[0].cpu().numpy()}
        codes = {k: quantize(v, exp.coding.quant, exp.coding.bits)[0] for k, v in arrays.items()}
        shapes = {k: v.shape for k, v in codes.items()}
        plan = plan_streams(shapes, [(k, c) for k, s in shapes.items() for c in range(s[0])], "mosaic", 8)[0]
        np.save(run_dir / SAMPLE_FRAME, pack(codes, plan)[0])
    except Exception as exc:  # noqa: BLE001 - a missing picture must not stop the run
        warnings.warn(f"no sample frame for the report: {exc}")


def build_tasks(exp: Experiment, allocations: dict[str, list[int]]) -> list[dict[str, Any]]:
    from .datasets import open_dataset

    tasks = []
    for d_index, d in enumerate(exp.datasets):
        n = len(open_dataset(d.path, kind=d.kind, limit=d.limit))
        images = _eval_range(exp, d_index, n)
        for m in exp.models:
            for layer in m.layers:
                configs = _configs(exp, m.name, layer, allocations)
                for start in range(images.start, images.stop, exp.run.batch_size):
                    stop = min(start + exp.run.batch_size, images.stop)
                    tasks.append({
                        "dataset": d.path, "kind": d.kind, "model": m.name, "weights": m.weights, "layer": layer,
                        "device": exp.run.device, "start": start, "stop": stop, "configs": configs,
                    })
    return tasks


def _configs(exp: Experiment, model: str, layer: str, allocations: dict[str, list[int]]) -> list[dict[str, Any]]:
    out = []
    c = exp.coding
    for codec in c.codecs:
        for layout in c.layouts:
            for method in exp.allocation.methods:
                for qp in c.qps:
                    qps = None if method == "uniform" else allocations[alloc_key(model, layer, codec, layout, method, qp)]
                    out.append({"codec": codec, "preset": c.presets.get(codec), "quant": c.quant, "bits": c.bits,
                                "layout": layout, "allocation": method, "qp": qp, "channel_qps": qps})
    return out


def run_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate one batch of images under every configuration (runs in a worker process)."""
    from .datasets import collate
    from .evaluate import CodingConfig, evaluate_batch

    sp = _split(task["model"], task["weights"], task["layer"], task["device"])
    ds = _dataset(task["dataset"], task["kind"], sp.transforms, (task["model"], task["weights"], task["layer"]))
    configs = [CodingConfig(**{**cfg, "channel_qps": tuple(cfg["channel_qps"]) if cfg["channel_qps"] else None})
               for cfg in task["configs"]]
    base = {"dataset": Path(task["dataset"]).name, "model": task["model"], "weights": task["weights"], "layer": task["layer"]}
    rows: list[dict[str, Any]] = []
    samples = []
    for i in range(task["start"], task["stop"]):
        try:
            samples.append(ds[i])
        except Exception as exc:  # noqa: BLE001 - a bad image is recorded, the others go on
            rows.append({**base, "image_id": str(ds.items[i]) if hasattr(ds, "items") else str(i), "config": "",
                         "qp": -1, "status": "error", "error": str(exc).splitlines()[0]})
    groups = [samples] if sp.task == "classification" or sp.task == "segmentation" else [[s] for s in samples]
    for group in groups:
        if not group:
            continue
        for row in evaluate_batch(sp, collate(group), configs):
            row.update(base)
            row["config"] = f"{task['model']}/{task['layer']}/{row['config']}"
            rows.append(row)
    return rows


def describe_allocations(allocations: dict[str, list[int]]) -> dict[str, list[int]]:
    """The per-channel QP vectors at each method's middle base QP, for the report's QP maps."""
    by_method: dict[str, list[str]] = {}
    for key in sorted(allocations, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        by_method.setdefault(key.rsplit("/", 1)[0], []).append(key)
    return {prefix: allocations[keys[len(keys) // 2]] for prefix, keys in by_method.items()}


def experiment_json(exp: Experiment) -> str:
    return json.dumps(asdict(exp), indent=1)
