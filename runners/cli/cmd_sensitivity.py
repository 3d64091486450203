"""`vcfc sensitivity` and `vcfc allocate`: per-channel sensitivity profiles and QP allocation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vcfc.errors import InputError
from vcfc.io import atomic_write, output_file
from vcfc.runners.kinds import KINDS
from vcfc.runners.presets import INPUT
from vcfc.sensitivity.allocation import ALLOCATORS, Target
from vcfc.sensitivity.distances import DISTANCES
from vcfc.sensitivity.options import METHODS, PRECISIONS
from vcfc.spec import CodingSpec

from .args import (
    add_command,
    coding_flags,
    force_flag,
    model_options,
    own_network_flags,
    positive,
    quiet_flag,
    show_progress,
    spec_from,
)

SENS_EPILOG = """\
examples:
  vcfc sensitivity --model squeezenet1_1 --layer fire3 --data ../shared/data/imagenet-sample --images 8 \\
        --qp-base 37 --out prof/sq_fire3
  vcfc sensitivity --model mobilenet_v2 --weights IMAGENET1K_V1 --layer block3 --data imgs \\
        --images 16 --qp-base 32 --method taylor --device cuda --out prof/mv2_b3.parquet
  vcfc sensitivity --model fasterrcnn_resnet50_fpn --layer fpn --data ../shared/data/coco128 --images 4 \\
        --qp-base 37 --out prof/frcnn_levels      # per-level importance of p2..p6

For every image the features are coded ONCE with --layout frames (every channel its own
all-intra picture, so each channel's noise equals coding it alone); channel i alone is replaced by
its round trip, the tail runs (batched, --max-batch variants per pass), and the distance to the
clean run is averaged over images. Distances: penultimate (MSE before the classifier, default),
output (MSE of the logits), kl, top1 (flip rate). Methods: exact (batched), naive (one ffmpeg
run and one batch-1 forward per channel: slow, for checks), taylor (gradient estimate, one
batched backward pass per image). --precision fp32 (default) is exact on every device (TF32
off); tf32 / bf16 are faster on GPUs and inexact (see benchmarks/bench_sensitivity.py). R-CNN models (--layer fpn) get one row per pyramid level,
distance = 1 − pseudo-F1 of the detections against the clean run's (score ≥ 0.5, IoU ≥ 0.5).

Writes PROFILE.parquet (metadata in the schema), PROFILE.csv, PROFILE.json and PROFILE.png.
Rate/distortion tables for `vcfc allocate --method lagrangian` are measured at --rd-qps.
"""

ALLOC_EPILOG = """\
examples:
  vcfc allocate prof/sq_fire3.parquet --qp-base 37 --qp-range 10 --out qps.txt
  vcfc allocate prof/sq_fire3.parquet --qp-base 37 --qp-range 10 --method lagrangian \\
        --target-bytes 20000 --out qps-20k.txt
  vcfc encode feat.npy feat.vcfc --layout frames --channel-qps qps.txt

linear (Hu et al.):  QP_i = QP_base − round(QP_range · S̃_i), S̃ = min-max normalised sensitivity.
lagrangian: per channel the QP (from the profile's R/D grid, within QP_base ± QP_range) minimising
  w_i·D_i(QP) + λ·R_i(QP), w_i = S_i / D_i(QP_base); --lambda L fixes λ, --target-bytes B
  (payload bytes per image, as measured), --target-qp Q (average QP) or --match-uniform (the
  uniform QP_base's size, what `vcfc eval` and experiments use) finds it by bisection.
A dataset-level profile gives every image the same QPs; per-image allocation (`vcfc eval
--allocation perimage|rdo`) decides each image's QPs while coding it and needs no profile.
Per-level profiles give one QP per level, written once per channel of that level.
Output: one integer per line, the file `vcfc encode --channel-qps` reads.
"""


def _qp_grid(text: str, qp_base: int, limits: tuple[int, int]) -> list[int]:
    if text == "none":
        return []
    if text == "auto":
        lo, hi, step = qp_base - 12, qp_base + 8, 2
    else:
        try:
            parts = [int(v) for v in text.split(":")]
        except ValueError:
            raise InputError(f"--rd-qps expects LO:HI[:STEP], auto or none, got {text!r}") from None
        if len(parts) not in (2, 3):
            raise InputError(f"--rd-qps expects LO:HI[:STEP], got {text!r}")
        lo, hi, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
        if step < 1 or hi < lo:
            raise InputError(f"--rd-qps {text!r}: need LO <= HI and STEP >= 1")
    grid = sorted({min(max(q, limits[0]), limits[1]) for q in range(lo, hi + 1, step)} | {qp_base})
    return grid


def register(sub: Any) -> None:
    p = add_command(sub, "sensitivity", "per-channel sensitivity profile of a split to codec noise",
                    "Measure how much each channel's codec noise costs the task, averaged over images "
                    "(Hu et al., sensitivity-aware bit allocation).", SENS_EPILOG)
    p.add_argument("--model", required=True,
                   help="torchvision model name (see `vcfc models`) or your own, as package.module:builder")
    p.add_argument("--layer", required=True, help="split preset or module path (R-CNN: fpn)")
    p.add_argument("--weights", default="DEFAULT", help="weights name, checkpoint path or 'none' (default DEFAULT)")
    own_network_flags(p)
    p.add_argument("--data", required=True, help="dataset folder (ImageNet, image folder, COCO)")
    p.add_argument("--kind", default="auto", choices=KINDS)
    p.add_argument("--images", type=int, default=8, help="number of images to average over (default 8)")
    p.add_argument("--qp-base", type=int, required=True, help="QP of the codec noise")
    coding_flags(p, default_layout="frames")
    p.add_argument("--method", default="exact", choices=METHODS)
    p.add_argument("--distance", default="penultimate", choices=list(DISTANCES),
                   help="; ".join(f"{d.name}: {d.description}" for d in DISTANCES.values()))
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 exact (default); tf32/bf16 faster on GPUs")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-batch", type=int, default=64, help="variants per forward pass (default 64)")
    p.add_argument("--max-memory", type=float, metavar="MIB", help="memory budget per forward pass in MiB")
    p.add_argument("--linear", default="auto", choices=["auto", "on", "off"],
                   help="leading-conv trick (auto: timed, kept if faster)")
    p.add_argument("--probes", type=int, default=16, help="taylor: random probes (0 = plain gradient·noise)")
    p.add_argument("--rd-qps", default="auto", metavar="LO:HI[:STEP]",
                   help="QP grid of the rate/distortion tables (auto: QP_base−12..QP_base+8 step 2; none)")
    p.add_argument("--out", required=True, metavar="PROFILE",
                   help="path prefix or .parquet: writes PROFILE.parquet, .csv, .json and .png")
    force_flag(p, "an existing profile")
    quiet_flag(p)
    p.set_defaults(func=_cmd_sensitivity)

    p = add_command(sub, "allocate", "per-channel QPs from a sensitivity profile",
                    "Turn a dataset-level sensitivity profile into one QP per channel.", ALLOC_EPILOG)
    p.add_argument("profile", metavar="PROFILE", help="profile .parquet / .csv (or its prefix)")
    p.add_argument("--qp-base", type=int, help="default: the profile's qp_base")
    p.add_argument("--qp-range", type=int, required=True, help="linear: the most sensitive channel gets QP_base − R")
    p.add_argument("--method", default="linear", choices=[n for n, a in ALLOCATORS.items() if a.source == "profile"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-bytes", type=float, help="lagrangian: total payload bytes per image")
    g.add_argument("--target-qp", type=float, help="lagrangian: average QP")
    g.add_argument("--lambda", dest="lam", type=float, help="lagrangian: fixed λ")
    g.add_argument("--match-uniform", action="store_true", help="lagrangian: the uniform QP_base's size per the profile")
    p.add_argument("--out", required=True, metavar="QPS.txt")
    force_flag(p)
    p.set_defaults(func=_cmd_allocate)


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from vcfc.runners.schema import device_flag
    from vcfc.sensitivity.profile import PROFILE_SUFFIXES, profile_prefix

    device_flag(args.device)
    for suffix in PROFILE_SUFFIXES:  # every file the profile will be, before any work (and before torch)
        output_file(profile_prefix(args.out).with_suffix(suffix), args.force, in_new_folder=True)
    import torch

    from vcfc.runners.datasets import open_dataset
    from vcfc.runners.models import split
    from vcfc.runners.tasks import get_task
    from vcfc.sensitivity.device import resolve_device
    from vcfc.sensitivity.levels import detection_distance, measure_levels
    from vcfc.sensitivity.measure_profile import measure
    from vcfc.sensitivity.profile import write_profile

    positive("--images", args.images)
    if args.layer == INPUT:
        raise InputError("--layer input is the image (one picture, one QP): channel sensitivity is for features")
    spec = spec_from(args)
    if spec is None:
        raise InputError("--codec none: the sensitivity to codec noise needs a codec")
    spec.check_qp(args.qp_base, "--qp-base")
    options = model_options(args)
    device = resolve_device(args.device)
    sp = split(args.model, at=args.layer, weights=args.weights, device=device, **options)
    ds = open_dataset(args.data, kind=args.kind, transform=sp.transforms, limit=args.images)
    if len(ds) == 0:
        raise InputError(f"{args.data}: no images")
    meta = {"model": args.model, "weights": str(args.weights), "layer": args.layer,
            "dataset": str(Path(args.data).resolve()), "module_path": sp.module_path, "task": sp.task}

    def heads():
        for s in ds:
            yield sp.head(s.image.unsqueeze(0) if isinstance(s.image, torch.Tensor) else [s.image])

    if not get_task(sp.task).channel_sensitivity:
        prof = measure_levels(heads(), tail=sp.tail, distance=detection_distance, qp_base=args.qp_base,
                              spec=spec, progress=show_progress(args), meta={**meta, "distance": "1-pseudoF1"})
    else:
        prof = measure(
            heads(), tail=sp.tail_module, penultimate=sp.penultimate_module() if args.distance == "penultimate" else None,
            qp_base=args.qp_base, spec=spec, distance=args.distance, method=args.method, device=device,
            max_batch=args.max_batch, max_bytes=int(args.max_memory * 2**20) if args.max_memory else None,
            linear=args.linear, taylor_probes=args.probes, precision=args.precision,
            rd_qps=_qp_grid(args.rd_qps, args.qp_base, spec.qp_limits), progress=show_progress(args), meta=meta)
    paths = write_profile(prof, args.out)
    print(" ".join(str(p) for p in paths.values()))
    return 0


def _cmd_allocate(args: argparse.Namespace) -> int:
    import numpy as np

    from vcfc.sensitivity.allocation import allocate_from_profile, per_channel
    from vcfc.sensitivity.profile import read_profile

    output_file(args.out, args.force)
    prof = read_profile(args.profile)
    meta = prof.meta
    qp_base = args.qp_base if args.qp_base is not None else meta.get("qp_base")
    if qp_base is None:
        raise InputError("the profile records no qp_base: pass --qp-base")
    try:
        spec = CodingSpec(codec=meta.get("codec", "x265"))
        spec.check_qp(qp_base, "--qp-base")
    except InputError as exc:
        raise InputError(f"{args.profile}: {exc}") from None
    lo, hi = spec.qp_limits
    chosen = [args.target_bytes is not None, args.target_qp is not None, args.lam is not None, args.match_uniform]
    if args.method == "linear" and any(chosen):
        raise InputError("--target-bytes/--target-qp/--lambda/--match-uniform are for --method lagrangian")
    if args.method == "lagrangian" and not any(chosen):
        raise InputError("--method lagrangian needs --target-bytes, --target-qp, --lambda or --match-uniform")
    target = Target(bytes=args.target_bytes, qp=args.target_qp, lam=args.lam)
    qps, note = allocate_from_profile(args.method, prof, int(qp_base), args.qp_range, (lo, hi), target)
    lines = per_channel(prof, qps)
    atomic_write(args.out, "".join(f"{q}\n" for q in lines))
    print(f"{len(lines)} QPs, mean {np.mean(lines):.2f}, range {min(lines)}..{max(lines)}"
          f"{', ' + note if note else ''} -> {args.out}", file=sys.stderr)
    return 0

