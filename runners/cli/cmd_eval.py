"""`vcfc models`, `vcfc extract` and `vcfc eval`: split networks over datasets."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vcfc.codecs import CODECS
from vcfc.errors import InputError
from vcfc.io import atomic_path, output_dir, output_file
from vcfc.runners.kinds import KINDS
from vcfc.runners.presets import INPUT
from vcfc.runners.schema import device_flag
from vcfc.sensitivity.allocation import ALLOCATORS, Target, selectable_allocators

from .args import (
    EXIT_CODES,
    add_command,
    codec_help,
    coding_flags,
    ffmpeg_flag,
    force_flag,
    model_options,
    own_network_flags,
    parse_hw,
    positive,
    quiet_flag,
    show_progress,
    spec_from,
)

EVAL_EPILOG = f"""\
examples:
  vcfc eval --model squeezenet1_1 --layer fire3 --data ../shared/data/imagenet-sample --qp 32
  vcfc eval --model squeezenet1_1 --layer fire3 --data ../shared/data/imagenet-sample --qp 32 \\
        --layout frames --allocation perimage --qp-range 5 --json
  vcfc eval --model squeezenet1_1 --layer fire3 --data ../shared/data/imagenet-sample --qp 32 \\
        --layout frames --allocation rdo --json
  vcfc eval --model mobilenet_v2 --weights IMAGENET1K_V1 --layer block3 --data imgs --codec none
  vcfc eval --model resnet50 --layer layer1 --data imgs --codec vvenc --qp 37 --limit 50 --json

fidelity is the share of images whose top-1 class from the decoded features equals the top-1
class from the original features (Chen et al.); segmentation: share of agreeing pixels;
detection: AP of the coded run scored against the uncompressed run's detections. With labels
(ImageNet classes.tsv, COCO json, VOC masks) top1/top5, mIoU or AP are reported too.
--codec none skips coding: the reference run. bpfe counts every byte of each .vcfc file;
bpp is per pixel of the network input. Weights: torchvision's, read offline from
$TORCH_HOME/hub/checkpoints (`make weights` copies ../shared/weights to .cache/torch; then
export TORCH_HOME=$PWD/.cache/torch), a checkpoint path, or none (seeded random).

allocations (--allocation):
{chr(10).join(f"  {a.name:10s} {a.description}" for a in ALLOCATORS.values() if a.selectable)}
  perimage, rdo and rdo-uniform decide each image's QPs while coding it (no profile); they code
  with --layout frames, their default (rdo-uniform also works on --layer input, the picture).
--layer input: the uint8 network input coded as one picture (layout image): the image anchor.
  rdo's λ: --lambda, or by default the slope of the uniform KL–rate curve at --qp measured on
  the first --calibrate images (one λ for the run); those images are held out, not scored.

An unreadable image is recorded as an error and the others go on (--strict: stop at the first).
{EXIT_CODES}"""

MODELS_EPILOG = """\
examples:
  vcfc models
  vcfc models --input-size 512x512 --json
"""

EXTRACT_EPILOG = """\
examples:
  vcfc extract --model squeezenet1_1 --layer fire3 --data ../shared/data/kodak --out feats/
  vcfc encode feats/<image>.npy out.vcfc --qp 32
"""


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="torchvision model name (see `vcfc models`) or your own, as package.module:builder")
    p.add_argument("--layer", required=True, help="split preset (e.g. conv1, pool1, layer1, fpn) or module path")
    p.add_argument("--weights", default="DEFAULT",
                   help="torchvision weights name (DEFAULT, IMAGENET1K_V1, ...; cached under $TORCH_HOME), "
                        "a local checkpoint path, or 'none' for seeded random weights")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (default: cuda when available)")
    own_network_flags(p)


def data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset: image folder, ImageNet folder (classes.tsv), COCO folder/json, VOC root")
    p.add_argument("--kind", default="auto", choices=KINDS, help="dataset layout (default: detected)")
    p.add_argument("--limit", type=int, help="first N images only (sorted order)")
    p.add_argument("--batch-size", type=int, default=8, help="images per head/tail forward pass (default 8)")


def register(sub: Any) -> None:
    p = add_command(sub, "models", "list models, split presets and feature shapes",
                    "List supported models with their split presets and the feature shape each gives.", MODELS_EPILOG)
    p.add_argument("--input-size", default="224x224", metavar="HxW", help="input size for the shapes (default 224x224)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = add_command(sub, "extract", "write head features per image (+ manifest)",
                    "Run the head over a dataset and write features per image (.npy, or .safetensors for "
                    "pyramids) with a manifest.json.", EXTRACT_EPILOG)
    model_args(p)
    data_args(p)
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    force_flag(p, "the files of an earlier extract in --out")
    quiet_flag(p)
    p.set_defaults(func=cmd_extract)

    p = add_command(sub, "eval", "head → code → tail over a dataset; task metrics vs uncompressed",
                    "Run head → encode → decode → tail over a dataset and score it against the uncompressed run.\n\n"
                    "codecs:\n" + codec_help(), EVAL_EPILOG)
    model_args(p)
    data_args(p)
    coding_flags(p, allow_none=True)
    q = p.add_mutually_exclusive_group()
    q.add_argument("--qp", type=int, help="the QP (the base QP of an allocation)")
    q.add_argument("--channel-qps", metavar="FILE", help="one integer QP per channel (as `vcfc allocate` writes)")
    p.add_argument("--allocation", default="uniform", choices=selectable_allocators(),
                   help="how each channel's QP is chosen around --qp (default: uniform)")
    p.add_argument("--profile", metavar="PROFILE", help="sensitivity profile (.parquet from `vcfc sensitivity`) for linear/lagrangian")
    p.add_argument("--qp-range", type=int, default=8, help="linear rules: QP_i = QP - round(range * S~_i) (default 8)")
    p.add_argument("--lambda", dest="lam", type=float, help="rdo: weight of the rate (nats of KL per bit per feature element)")
    p.add_argument("--calibrate", type=int, default=8, metavar="N",
                   help="rdo, rdo-uniform without --lambda: the first N images set λ and are not scored (default 8)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--rows", metavar="FILE.parquet", help="also write per-image rows")
    force_flag(p, "an existing --rows file")
    quiet_flag(p)
    ffmpeg_flag(p)
    p.set_defaults(func=cmd_eval)


def cmd_models(args: argparse.Namespace) -> int:
    from vcfc.runners.models import list_models

    models = list_models(parse_hw(args.input_size))
    if args.json:
        print(json.dumps(models))
        return 0
    for m in models:
        print(f"{m['model']}  ({m['task']}, weights {m.get('default_weights') or '-'})")
        for p in m["presets"]:
            shape = p["shape"]
            shape_txt = ", ".join(f"{k} {'×'.join(map(str, v))}" for k, v in shape.items()) if isinstance(shape, dict) else "×".join(map(str, shape))
            print(f"    {p['name']:10s} {p['module']:22s} {shape_txt}")
    return 0


def open_split_and_data(args: argparse.Namespace):
    from vcfc.runners.datasets import open_dataset
    from vcfc.runners.models import split
    from vcfc.runners.tasks import get_task
    from vcfc.sensitivity.device import resolve_device

    positive("--limit", args.limit)
    positive("--batch-size", args.batch_size)
    options = model_options(args)
    sp = split(args.model, at=args.layer, weights=args.weights, device=resolve_device(args.device), **options)
    ds = open_dataset(args.data, kind=args.kind, transform=sp.transforms, limit=args.limit)
    if len(ds) == 0:
        raise InputError(f"{args.data}: no images found")
    return sp, ds, get_task(sp.task).batch_size(args.batch_size)


def cmd_extract(args: argparse.Namespace) -> int:
    device_flag(args.device)
    out = output_dir(args.out, replace=args.force)  # before torch and the model load
    import numpy as np
    from tqdm import tqdm

    from vcfc.io import atomic_write, jsonable, save_features
    from vcfc.runners.datasets import batches

    sp, ds, batch_size = open_split_and_data(args)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with tqdm(total=len(ds), desc="extract", unit="img", file=sys.stderr, disable=not show_progress(args)) as bar:
        for batch in batches(ds, batch_size):
            feats = sp.head(batch.images)
            meta = dict(getattr(feats, "meta", None) or sp.last_meta)
            for i, image_id in enumerate(batch.image_ids):
                safe = image_id.replace("/", "__")
                if isinstance(feats, dict):
                    item = {k: v[i].cpu() for k, v in feats.items()}
                    name = f"{safe}.safetensors"
                    shape = {k: list(v.shape) for k, v in item.items()}
                else:
                    item = feats[i].cpu().numpy()
                    name = f"{safe}.npy"
                    shape = list(item.shape)
                save_features(out / name, item)
                target = batch.targets[i] if batch.targets is not None else None
                entries.append({"image_id": image_id, "file": name, "shape": shape,
                                "label": int(target) if isinstance(target, (int, np.integer)) or (hasattr(target, "ndim") and target.ndim == 0) else None})
            bar.update(len(batch.image_ids))
    manifest = {"model": sp.model_name, "layer": sp.layer, "module": sp.module_path, "task": sp.task,
                "weights": str(args.weights), "data": str(args.data), "images": entries, "meta": jsonable(meta)}
    atomic_write(out / "manifest.json", json.dumps(manifest, indent=1))
    print(f"wrote {len(entries)} feature files and manifest.json to {out}")
    return 0



def _fixed_qps(args: argparse.Namespace, spec: Any) -> tuple[str, tuple[int, ...] | None]:
    """(allocation, channel QPs that are the same for every image: a file, or a profile-based
    allocation; None when the allocation decides per image or there is none)."""
    from vcfc.io import load_qps
    from vcfc.sensitivity.allocation import allocate_from_profile, per_channel
    from vcfc.sensitivity.profile import read_profile

    source = ALLOCATORS.get(args.allocation).source
    if args.channel_qps:
        if args.allocation != "uniform":
            raise InputError("--channel-qps gives the QPs itself: leave --allocation out")
        return "file", tuple(load_qps(args.channel_qps))
    if source == "profile":
        if not args.profile:
            raise InputError(f"--allocation {args.allocation} needs --profile PROFILE (make one with `vcfc sensitivity`)")
        profile = read_profile(args.profile)
        qps, _ = allocate_from_profile(args.allocation, profile, args.qp, args.qp_range, spec.qp_limits, Target())
        return args.allocation, tuple(per_channel(profile, qps))
    if args.profile:
        raise InputError(f"--profile is used with --allocation {' or '.join(n for n, a in ALLOCATORS.items() if a.source == 'profile')}")
    return args.allocation, None


def cmd_eval(args: argparse.Namespace) -> int:
    device_flag(args.device)
    if args.rows:
        output_file(args.rows, args.force)  # a bad path ends the run now (before torch loads), not after every image
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from vcfc.runners.config import AllocationSpec
    from vcfc.runners.datasets import collate, load_samples
    from vcfc.runners.evaluate import eval_config, evaluate_batch
    from vcfc.runners.tasks import summarize

    if args.layer == INPUT:  # the network input is a picture: coded as one (the image anchor)
        if args.layout not in (None, "image"):
            raise InputError(f"--layer input is the RGB network input: it is coded with --layout image, not {args.layout}")
        args.layout = "image"
    elif args.layout == "image":
        raise InputError(f"--layout image codes a picture: use --layer input (the network input), not {args.layer}")
    method = ALLOCATORS.get(args.allocation)
    if method.source == "image" and args.layer != INPUT and args.codec != "none":
        # a per-image search re-assembles one picture per channel: layout frames, which is its default
        args.layout = args.layout or "frames"
        if args.layout != "frames" or not CODECS.get(args.codec).frames_separable:
            raise InputError(f"--allocation {args.allocation} codes one picture per channel: it needs --layout frames "
                             f"and a codec whose pictures separate (got --layout {args.layout}, --codec {args.codec})")
    spec = spec_from(args)
    if spec is not None and spec.uses_qp and args.qp is None and args.channel_qps is None:
        raise InputError(f"--codec {args.codec} needs --qp N or --channel-qps FILE")
    if spec is not None and args.qp is not None:
        spec.check_qp(args.qp, "--qp")
    if method.source != "none" and args.qp is None:
        raise InputError(f"--allocation {args.allocation} needs --qp N (the base QP)")
    if spec is None and args.allocation != "uniform":
        raise InputError("--codec none codes nothing: leave --allocation out")
    allocation, qps = _fixed_qps(args, spec) if spec is not None else ("uniform", None)
    settings = AllocationSpec(methods=[allocation], qp_range=args.qp_range)
    cfg = eval_config(spec, allocation, args.qp, settings, channel_qps=qps, lam=args.lam)  # checked before any work
    calibrating = method.needs_lambda and args.lam is None
    if calibrating:
        positive("--calibrate", args.calibrate)
    sp, ds, batch_size = open_split_and_data(args)
    first = args.calibrate if calibrating else 0  # the images that set λ are not scored (as in experiments)
    if first >= len(ds):
        raise InputError(f"--calibrate {args.calibrate}: the first {args.calibrate} images set λ and {len(ds)} are "
                         f"there, so none is left to score; lower --calibrate, add images or give --lambda")
    lam = args.lam
    if calibrating:
        lam = _calibrated_lambda(sp, ds, spec, settings, args)
        cfg = eval_config(spec, allocation, args.qp, settings, channel_qps=qps, lam=lam)
    rows: list[dict[str, Any]] = []
    errors: list[tuple[str, str]] = []
    with tqdm(total=len(ds) - first, desc=f"eval {cfg.label()}", unit="img", file=sys.stderr,
              disable=not show_progress(args)) as bar:
        for start in range(first, len(ds), batch_size):
            samples, bad = load_samples(ds, range(start, min(len(ds), start + batch_size)))
            if bad and args.strict:
                raise InputError(f"{bad[0][0]}: {bad[0][1]}")
            errors.extend(bad)
            if samples:
                rows.extend(evaluate_batch(sp, collate(samples), [cfg], ffmpeg=args.ffmpeg))
            bar.update(len(samples) + len(bad))
    summary = {"model": sp.model_name, "layer": sp.layer, "task": sp.task, "weights": str(args.weights),
               "codec": args.codec, "preset": None if spec is None else spec.preset, "qp": args.qp,
               "allocation": cfg.allocation, **summarize(rows, sp.task, coco_gt=getattr(ds, "coco", None))}
    if rows and spec is not None:
        summary["mean_qp"] = float(np.mean([r["mean_qp"] for r in rows]))
        summary["distinct_qp_vectors"] = len({r["qp_vector"] or f"uniform:{r['mean_qp']}" for r in rows})
        # rdo's tools: how many channels each image left uncoded (image id -> count)
        summary["skipped_channels"] = {r["image_id"]: int(r.get("skipped", 0)) for r in rows}
        summary["skipped_per_image"] = float(np.mean(list(summary["skipped_channels"].values())))
    if lam is not None and method.needs_lambda:
        summary["lambda"] = lam
        summary["calibration_images"] = first  # held out: set λ, not scored
    summary["errors"] = len(errors)
    if errors:
        summary["error_images"] = [f"{i}: {e}" for i, e in errors[:20]]
    if args.rows:
        table = rows + [{"image_id": i, "config": cfg.label(), "status": "error", "error": e} for i, e in errors]
        with atomic_path(args.rows) as tmp:
            pd.DataFrame(table).to_parquet(tmp)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:28s} {value:.6g}" if isinstance(value, float) else f"{key:28s} {value}")
    if errors:
        print(f"vcfc: {len(errors)} image(s) could not be read (first: {errors[0][0]}: {errors[0][1]})", file=sys.stderr)
        return 3
    return 0


def _calibrated_lambda(sp: Any, ds: Any, spec: Any, settings: Any, args: argparse.Namespace) -> float:
    """rdo's λ from the first --calibrate images (one λ for the whole run), as experiments set it."""
    from vcfc.runners.datasets import load_samples
    from vcfc.runners.image_coding import calibrate

    samples, _ = load_samples(ds, range(min(args.calibrate, len(ds))))
    feats = [sp.head(s.image[None])[0] for s in samples]
    lam = calibrate(sp, feats, spec, [args.qp], settings.rdo_settings(), ffmpeg=args.ffmpeg)[args.qp]
    print(f"vcfc: rdo λ = {lam:.4g} (slope of the uniform KL–rate curve at QP {args.qp} over "
          f"{len(feats)} images)", file=sys.stderr)
    return lam
