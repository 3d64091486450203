"""Run an experiment: check it, prepare profiles and allocations, then the resumable grid.

One grid task = one batch of images of one (dataset, model, layer) × every coding configuration:
the head runs once per image and its features are reused for every codec / allocation / QP;
the tail batches the images. Tasks run in worker processes (local pool or Dask) and each
finished task's rows are stored atomically, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from vcfc.api import decode_frames, encode
from vcfc.errors import InputError
from vcfc.sensitivity.allocation import ALLOCATORS, allocate_from_profile
from vcfc.sensitivity.device import resolve_device
from vcfc.sensitivity.measure_profile import measure
from vcfc.sensitivity.profile import Profile, read_profile, write_profile
from vcfc.spec import CodingSpec

from .config import Experiment, ModelSpec
from .datasets import collate, load_samples, open_dataset
from .evaluate import EvalConfig, eval_config, evaluate_batch
from .grid.budget import Budget, default_workers
from .grid.executors import EXECUTORS, check_scheduler
from .grid.run_grid import GridResult, run_grid
from .grid.worker import worker_cache
from .image_coding import calibrate
from .models import Split, meta_split, split
from .presets import INPUT
from .rundir import RunDir, write_manifest
from .tasks import get_task


def run_experiment(exp: Experiment, run_dir: str | Path, *, executor: str | None = None, workers: int | None = None,
                   scheduler: Any = None, retry_errors: bool = False, progress: bool = True,
                   new: bool = False) -> GridResult:
    """Check the experiment, prepare profiles/allocations (cached in run_dir), run every unfinished task.

    new: delete what an earlier run left in run_dir first (else a different experiment there is an error).
    """
    executor = executor or exp.run.executor
    EXECUTORS.get(executor)  # an unknown name is one line, before any work
    scheduler = scheduler or exp.run.scheduler
    if executor == "dask" and isinstance(scheduler, str):
        check_scheduler(scheduler)  # before the run folder exists
    preflight(exp)
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    if new:
        run.clear()
    write_manifest(run.path, exp.to_dict(), extra={  # what ran, not only what the file said
        "executor": executor, "scheduler": scheduler if isinstance(scheduler, str) or scheduler is None
        else type(scheduler).__name__})
    allocations = prepare_allocations(exp, run, progress=progress)
    tasks = build_tasks(exp, allocations, run.read_json(run.lambdas_path))
    store = run.rows()
    n_workers = workers or exp.run.workers or default_workers()
    budget = Budget.share(n_workers, per_worker=exp.run.threads_per_worker)
    result = run_grid(tasks, run_task, store, executor=executor, workers=n_workers, scheduler=scheduler,
                      progress=progress, setup=functools.partial(worker_setup, budget), retry_errors=retry_errors,
                      **_fork_from_a_warm_server())
    if not result.interrupted:
        store.compact()
    return result


def preflight(exp: Experiment) -> None:
    """What can be checked before any work: datasets open and hold images, models and layers exist
    (checked on the meta device: no weights, no compute). Raises InputError naming the culprit."""
    for d in exp.datasets:
        n = len(open_dataset(d.path, kind=d.kind, limit=d.limit))
        if n == 0:
            raise InputError(f"dataset {d.path}: no images found")
    allocating = exp.allocation.calibrates
    for m in exp.models:
        for layer in m.layers:
            task = get_task(meta_split(m.name, layer, m.task).task)
            if allocating and not task.channel_sensitivity:
                raise InputError(f"{m.name}: allocations other than uniform are implemented for "
                                 f"classifiers in experiments (this model's task is {task.name})")


def _fork_from_a_warm_server() -> dict[str, Any]:
    """Workers fork from a server process that has imported torch and vcfc once (measured: ~4 s
    of import per spawned worker on the 2-core dev machine, most of a worker's start-up), where
    the platform has a forkserver; nothing has run torch in that server, so forking is safe."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return {}
    return {"mp_context": "forkserver", "preload": [__name__]}


_BUDGET = Budget(1)  # this worker process's share of the machine (set by worker_setup)


def worker_setup(budget: Budget | None = None) -> None:
    """Once per worker process: its thread budget (torch threads, parallel images, encoder threads)."""
    global _BUDGET
    _BUDGET = budget or Budget(1)
    _BUDGET.apply()
    # The parent already said it once; N workers repeating it (with source lines) is noise.
    warnings.filterwarnings("ignore", message=".*random weights.*")
    logging.getLogger("vcfc.runners").addHandler(logging.NullHandler())
    logging.getLogger("vcfc.runners").propagate = False


def cached_split(model: str, weights: str, layer: str, device: str, options: dict[str, str] | None = None) -> Split:
    """The split, built once per worker process and reused by every task that lands there.
    options: your own network's task / transform (ModelSpec.options)."""
    options = options or {}
    key = ("split", model, weights, layer, device, tuple(sorted(options.items())))
    return worker_cache().get_or_compute(key, lambda: split(model, at=layer, weights=None if weights == "none" else weights,
                                                            device=resolve_device(device), **options))


def _dataset(path: str, kind: str, transform: Any, key: Any):
    return worker_cache().get_or_compute(("dataset", path, kind, key), lambda: open_dataset(path, kind=kind, transform=transform))


def _eval_range(exp: Experiment, d_index: int, n_images: int) -> range:
    """Images evaluated: the calibration images of the first dataset are held out of the evaluation."""
    start = 0
    needs_calibration = exp.allocation.calibrates
    if needs_calibration and d_index == 0 and not exp.allocation.profile_data:
        start = exp.allocation.profile_images
        if start >= n_images:
            raise InputError(f"dataset {exp.datasets[0].path}: {n_images} images, all used for calibration "
                             f"(profile_images = {start}); lower profile_images or add images")
    return range(start, n_images)


def alloc_key(model: str, layer: str, spec: CodingSpec, method: str, qp: int) -> str:
    """Key of one allocation in allocations.json / lambdas.json, e.g.
    squeezenet1_1/fire3/x265/fast/minmax/8b/frames/linear/32 (the config id + base QP)."""
    return f"{model}/{layer}/{spec.label()}/{method}/{qp}"


def prepare_allocations(exp: Experiment, run: RunDir, progress: bool = True) -> dict[str, list[int]]:
    """Per-channel QPs of the profile-based methods for every (model, layer, codec, layout, qp),
    measured once per run and cached in the run folder; rdo's λ per QP likewise (lambdas.json)."""
    cached = run.read_json(run.allocations_path)
    if cached is not None:
        return cached
    _calibrate_lambdas(exp, run)
    out: dict[str, list[int]] = {}
    for m in exp.models:
        for layer in m.layers:
            profile_methods = [k for k in exp.methods(layer) if ALLOCATORS.get(k).source == "profile"]
            for spec in exp.specs(layer) if profile_methods else []:
                profile = _profile(exp, m, layer, spec, run, progress)
                for method in profile_methods:
                    for qp in exp.coding.qps:
                        qps, _ = allocate_from_profile(method, profile, qp, exp.allocation.qp_range, spec.qp_limits)
                        out[alloc_key(m.name, layer, spec, method, qp)] = [int(v) for v in qps]
    _save_sample(exp, run)
    run.write_json(run.allocations_path, out)
    return out


def _calibrate_lambdas(exp: Experiment, run: RunDir) -> None:
    """λ of the closed-loop search at every (model, layer, codec, layout, qp): minus the slope of the
    uniform KL–rate curve there, on the calibration (profile) images, never on evaluated ones."""
    if not any(ALLOCATORS.get(m).needs_lambda for m in exp.allocation.methods):
        return
    if run.read_json(run.lambdas_path) is not None:
        return
    out: dict[str, float] = {}
    settings = exp.allocation.rdo_settings()
    for m in exp.models:
        for layer in m.layers:
            methods = [k for k in exp.methods(layer) if ALLOCATORS.get(k).needs_lambda]
            if not methods:
                continue
            sp = cached_split(m.name, m.weights, layer, exp.run.device, m.options)
            features = list(calibration_features(exp, sp)[0])
            for spec in exp.specs(layer):
                for qp, lam in calibrate(sp, features, spec, exp.coding.qps, settings).items():
                    for method in methods:
                        out[alloc_key(m.name, layer, spec, method, qp)] = lam
    run.write_json(run.lambdas_path, out)


def _rd_grid(exp: Experiment, spec: CodingSpec) -> list[int]:
    lo_lim, hi_lim = spec.qp_limits
    r = exp.allocation.qp_range
    lo, hi = max(lo_lim, min(exp.coding.qps) - r), min(hi_lim, max(exp.coding.qps) + r)
    return sorted(set(range(lo, hi + 1, 2)) | set(exp.coding.qps))


def calibration_features(exp: Experiment, sp: Split) -> tuple[Any, int, str]:
    """Per-image features of the calibration images (a generator), their count and their dataset."""
    data = exp.allocation.profile_data or exp.datasets[0].path
    kind = "auto" if exp.allocation.profile_data else exp.datasets[0].kind
    ds = open_dataset(data, kind=kind, transform=sp.transforms, limit=exp.allocation.profile_images)
    return (sp.head(sample.image[None])[0] for sample in ds), len(ds), str(data)


def _profile(exp: Experiment, m: ModelSpec, layer: str, spec: CodingSpec, run: RunDir, progress: bool) -> Profile:
    model, weights = m.name, m.weights
    prefix = run.profile_prefix(model, layer, spec.label())
    if prefix.with_suffix(".parquet").exists():
        return read_profile(prefix.with_suffix(".parquet"))
    sp = cached_split(model, weights, layer, exp.run.device, m.options)
    features, n, data = calibration_features(exp, sp)
    # The fx modules (not the no_grad wrappers) let the sweep use its channels-last fast path.
    profile = measure(
        features, tail=sp.tail_module, penultimate=sp.penultimate_module(), qp_base=exp.allocation.profile_qp,
        spec=spec, distance=exp.allocation.distance, device=resolve_device(exp.run.device),
        rd_qps=_rd_grid(exp, spec), progress=progress,
        meta={"model": model, "weights": weights, "layer": layer, "dataset": data, "images": n},
    )
    write_profile(profile, prefix)
    return profile


def _save_sample(exp: Experiment, run: RunDir) -> None:
    """The pictures the first evaluated image's features were really coded as, at the middle QP
    (uniform), for the report: what the codec saw, named by image, codec, layout and QP."""
    try:
        m = exp.models[0]
        layer = next((x for x in m.layers if x != INPUT), m.layers[0])  # feature pictures, if any
        spec = exp.specs(layer)[0]
        qp = sorted(exp.coding.qps)[len(exp.coding.qps) // 2]
        sp = cached_split(m.name, m.weights, layer, exp.run.device, m.options)
        d = exp.datasets[0]
        ds = open_dataset(d.path, kind=d.kind, transform=sp.transforms, limit=d.limit)
        index = _eval_range(exp, 0, len(ds)).start
        sample = ds[index]
        feats = sp.head(sample.image[None])
        one = {k: v[0].cpu() for k, v in feats.items()} if isinstance(feats, dict) else feats[0].cpu()
        frames = decode_frames(encode(one, qp=qp, spec=spec))
        np.savez_compressed(run.sample_path, frames=frames[0], bits=spec.bits, qp=qp, image=sample.image_id,
                            label=spec.label(), layout=spec.layout, model=m.name, layer=layer)
    except Exception as exc:  # noqa: BLE001 - a missing picture must not stop the run
        warnings.warn(f"no sample frame for the report: {exc}", stacklevel=2)


def build_tasks(exp: Experiment, allocations: dict[str, list[int]], lambdas: dict[str, float] | None = None
                ) -> list[dict[str, Any]]:
    tasks = []
    for d_index, d in enumerate(exp.datasets):
        n = len(open_dataset(d.path, kind=d.kind, limit=d.limit))
        images = _eval_range(exp, d_index, n)
        for m in exp.models:
            for layer in m.layers:
                configs = _configs(exp, m.name, layer, allocations, lambdas or {})
                for start in range(images.start, images.stop, exp.run.batch_size):
                    stop = min(start + exp.run.batch_size, images.stop)
                    tasks.append({
                        "dataset": d.path, "kind": d.kind, "model": m.name, "weights": m.weights, "layer": layer,
                        "device": exp.run.device, "start": start, "stop": stop, "configs": configs,
                        # only when set: tasks (and their keys) of runs without them stay as they were
                        **({"model_options": m.options} if m.options else {}),
                    })
    return tasks


def _configs(exp: Experiment, model: str, layer: str, allocations: dict[str, list[int]],
             lambdas: dict[str, float]) -> list[dict[str, Any]]:
    out = []
    for spec in exp.specs(layer):
        for method in exp.methods(layer):
            for qp in exp.coding.qps:
                key = alloc_key(model, layer, spec, method, qp)
                cfg = eval_config(spec, method, qp, exp.allocation, channel_qps=allocations.get(key),
                                  lam=lambdas.get(key))
                out.append(cfg.to_dict())
    return out


def run_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate one batch of images under every configuration (runs in a worker process)."""
    options = task.get("model_options") or {}
    sp = cached_split(task["model"], task["weights"], task["layer"], task["device"], options)
    ds = _dataset(task["dataset"], task["kind"], sp.transforms,
                  (task["model"], task["weights"], task["layer"], tuple(sorted(options.items()))))
    configs = [EvalConfig.from_dict(cfg) for cfg in task["configs"]]
    base = {"dataset": Path(task["dataset"]).name, "model": task["model"], "weights": task["weights"], "layer": task["layer"]}
    samples, bad = load_samples(ds, range(task["start"], task["stop"]))
    # an unreadable image is an error row and the batch goes on
    rows: list[dict[str, Any]] = [{**base, "image_id": image_id, "config": "", "qp": None, "status": "error", "error": err}
                                  for image_id, err in bad]
    size = get_task(sp.task).batch_size(len(samples))
    for start in range(0, len(samples), max(1, size)):
        batch = collate(samples[start : start + size])
        for row in evaluate_batch(sp, batch, configs, threads=None, budget=_BUDGET):
            row.update(base)
            row["config"] = f"{task['model']}/{task['layer']}/{row['config']}"
            rows.append(row)
    return rows


def qp_maps(allocations: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    """For the report: each profile method's per-channel QPs at its middle base QP."""
    keys: dict[str, list[tuple[int, str]]] = {}
    for key in allocations:
        prefix, qp = key.rsplit("/", 1)
        keys.setdefault(prefix, []).append((int(qp), key))
    out = {}
    for prefix, items in sorted(keys.items()):
        items.sort()
        qp, key = items[len(items) // 2]
        out[prefix] = {"qps": allocations[key], "base_qp": qp, "method": prefix.rsplit("/", 1)[1],
                       "note": "dataset-level profile: the same QPs for every image"}
    return out

