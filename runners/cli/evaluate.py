"""`vcfc models`, `vcfc extract` and `vcfc eval`: split networks over datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError

EVAL_EPILOG = """\
examples:
  vcfc eval --model squeezenet1_1 --layer fire3 --data imagenet-sample --codec x265 --qp 32
  vcfc eval --model mobilenet_v2 --weights IMAGENET1K_V1 --layer block3 --data imgs --codec none
  vcfc eval --model resnet50 --layer layer1 --data imgs --codec vvenc --qp 37 --limit 50 --json

fidelity is the share of images whose top-1 class from the decoded features equals the top-1
class from the original features (Chen et al.); segmentation: share of agreeing pixels;
detection: AP of the coded run scored against the uncompressed run's detections. With labels
(ImageNet classes.tsv, COCO json, VOC masks) top1/top5, mIoU or AP are reported too.
--codec none skips coding: the reference run. bpp is per pixel of the network input.
"""


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="torchvision model name (see `vcfc models`)")
    p.add_argument("--layer", required=True, help="split preset (e.g. conv1, pool1, layer1, fpn) or module path")
    p.add_argument("--weights", default="DEFAULT",
                   help="torchvision weights name (DEFAULT, IMAGENET1K_V1, ...; cached under $TORCH_HOME), "
                        "a local checkpoint path, or 'none' for seeded random weights")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (default: cuda when available)")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset: image folder, ImageNet folder (classes.tsv), COCO folder/json, VOC root")
    p.add_argument("--kind", default="auto", choices=["auto", "folder", "imagenet", "coco", "voc"], help="dataset layout (default: detected)")
    p.add_argument("--limit", type=int, help="first N images only (sorted order)")
    p.add_argument("--batch-size", type=int, default=8, help="images per head/tail forward pass (default 8)")


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list models, split presets and feature shapes",
                       description="List supported models with their split presets and the feature shape each gives.")
    p.add_argument("--input-size", default="224x224", metavar="HxW", help="input size for the shapes (default 224x224)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("extract", help="write head features per image (+ manifest)",
                       description="Run the head over a dataset and write features per image (.npy, or .safetensors for pyramids) with a manifest.json.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  vcfc extract --model squeezenet1_1 --layer fire3 --data imgs --out feats/\n  vcfc encode feats/<image>.npy out.vcfc --qp 32")
    _model_args(p)
    _data_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("eval", help="head → code → tail over a dataset; task metrics vs uncompressed",
                       description="Run head → encode → decode → tail over a dataset and score it against the uncompressed run.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EVAL_EPILOG)
    _model_args(p)
    _data_args(p)
    p.add_argument("--codec", default="x265", choices=["none", "x265", "vvenc", "jpeg", "lossless"])
    q = p.add_mutually_exclusive_group()
    q.add_argument("--qp", type=int, help="one QP for every channel")
    q.add_argument("--channel-qps", metavar="FILE", help="one integer QP per channel (as `vcfc allocate` writes)")
    p.add_argument("--allocation", default="uniform", choices=["uniform", "linear", "lagrangian"],
                   help="QPs per channel from --profile around --qp (default: uniform, every channel at --qp)")
    p.add_argument("--profile", metavar="PROFILE", help="sensitivity profile (.parquet from `vcfc sensitivity`) for --allocation")
    p.add_argument("--qp-range", type=int, default=8, help="linear allocation: QP_i = QP - round(range * S~_i) (default 8)")
    p.add_argument("--quant", default="minmax", choices=["minmax", "minmax-channel", "log", "zscore"])
    p.add_argument("--bits", type=int, default=8, choices=[8, 10])
    p.add_argument("--layout", default="mosaic", choices=["mosaic", "mosaic-level", "frames"])
    p.add_argument("--preset", help="encoder preset (default: the codec's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--rows", metavar="FILE.parquet", help="also write per-image rows")
    p.add_argument("--ffmpeg", metavar="PATH", help="ffmpeg binary (default: $VCFC_FFMPEG, else imageio-ffmpeg's)")
    p.set_defaults(func=_cmd_eval)


def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"expected HxW such as 224x224, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise InputError(f"expected a positive size, got {text!r}")
    return h, w


def _cmd_models(args: argparse.Namespace) -> int:
    from runners.models import list_models

    models = list_models(_parse_hw(args.input_size))
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


def _open(args: argparse.Namespace):
    from runners.datasets import open_dataset
    from runners.models import split
    from sensitivity import resolve_device

    if args.limit is not None and args.limit <= 0:
        raise InputError("--limit must be positive")
    if args.batch_size <= 0:
        raise InputError("--batch-size must be positive")
    sp = split(args.model, at=args.layer, weights=args.weights, device=resolve_device(args.device))
    ds = open_dataset(args.data, kind=args.kind, transform=sp.transforms, limit=args.limit)
    if len(ds) == 0:
        raise InputError(f"{args.data}: no images found")
    batch_size = 1 if sp.task in ("detection", "instance", "keypoints") else args.batch_size
    return sp, ds, batch_size


def _cmd_extract(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from runners.datasets import batches

    from ..io import save_features

    sp, ds, batch_size = _open(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with tqdm(total=len(ds), desc="extract", unit="img", file=sys.stderr) as bar:
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
                "weights": str(args.weights), "data": str(args.data), "images": entries, "meta": _jsonable(meta)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {len(entries)} feature files and manifest.json to {out}")
    return 0


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return str(obj)


def _allocated_qps(args: argparse.Namespace) -> tuple[int, ...]:
    from runners.run import allocate
    from sensitivity import read_profile

    if not args.profile:
        raise InputError(f"--allocation {args.allocation} needs --profile PROFILE (make one with `vcfc sensitivity`)")
    if args.qp is None or args.channel_qps:
        raise InputError(f"--allocation {args.allocation} needs --qp N (the base QP) and no --channel-qps")
    profile = read_profile(args.profile)
    qp_base = int(profile.meta.get("qp_base", args.qp))
    return tuple(int(v) for v in allocate(args.allocation, profile, args.qp, args.qp_range, args.codec, qp_base))


def _cmd_eval(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from runners.datasets import batches
    from runners.evaluate import CodingConfig, evaluate_batch, summarize

    from ..io import load_qps

    if args.codec not in ("none", "lossless") and args.qp is None and args.channel_qps is None:
        raise InputError(f"--codec {args.codec} needs --qp N or --channel-qps FILE")
    qps = tuple(load_qps(args.channel_qps)) if args.channel_qps else None
    allocation = "file" if qps else args.allocation
    if args.allocation != "uniform":
        qps = _allocated_qps(args)
    elif args.profile:
        raise InputError("--profile is used with --allocation linear or lagrangian")
    cfg = CodingConfig(codec=args.codec, qp=args.qp, quant=args.quant, bits=args.bits, layout=args.layout,
                       preset=args.preset, allocation=allocation, channel_qps=qps)
    sp, ds, batch_size = _open(args)
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(ds), desc=f"eval {cfg.label()}", unit="img", file=sys.stderr) as bar:
        for batch in batches(ds, batch_size):
            rows.extend(evaluate_batch(sp, batch, [cfg], ffmpeg=args.ffmpeg))
            bar.update(len(batch.image_ids))
    summary = {"model": sp.model_name, "layer": sp.layer, "task": sp.task, "codec": args.codec,
               "qp": args.qp, **summarize(rows, sp.task, coco_gt=getattr(ds, "coco", None))}
    if args.rows:
        pd.DataFrame(rows).to_parquet(args.rows)
    if args.json:
        print(json.dumps(summary))
        return 0
    for key, value in summary.items():
        print(f"{key:28s} {value:.6g}" if isinstance(value, float) else f"{key:28s} {value}")
    return 0
