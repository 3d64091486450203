"""`vcfc sensitivity` and `vcfc allocate`: per-channel sensitivity profiles and QP allocation.

The CLI glue: the only place where `sensitivity` meets `runners` (models, datasets).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError

SENS_EPILOG = """\
examples:
  vcfc sensitivity --model squeezenet1_1 --layer fire3 --data imagenet-sample --images 8 \\
        --qp-base 37 --out prof/sq_fire3
  vcfc sensitivity --model mobilenet_v2 --weights IMAGENET1K_V1 --layer block3 --data imgs \\
        --images 16 --qp-base 32 --method taylor --device cuda --out prof/mv2_b3.parquet
  vcfc sensitivity --model fasterrcnn_resnet50_fpn --layer fpn --data coco128 --images 4 \\
        --qp-base 37 --out prof/frcnn_levels      # per-level importance of p2..p6

For every image the features are coded ONCE with --layout frames (every channel its own
all-intra picture, so each channel's noise equals coding it alone); channel i alone is replaced by
its round trip, the tail runs (batched, --max-batch variants per pass), and the distance to the
clean run is averaged over images. Distances: penultimate (MSE before the classifier, default),
output (MSE of the logits), kl, top1 (flip rate). Methods: exact (batched), naive (one ffmpeg
run and one batch-1 forward per channel: slow, for checks), taylor (gradient estimate, one
batched backward pass per image). R-CNN models (--layer fpn) get one row per pyramid level,
distance = 1 − pseudo-F1 of the detections against the clean run's (score ≥ 0.5, IoU ≥ 0.5).

Writes PROFILE.parquet (metadata in the schema), PROFILE.csv, PROFILE.json and PROFILE.png.
Rate/distortion tables for `vcfc allocate --method lagrangian` are measured at --rd-qps.
"""

ALLOC_EPILOG = """\
examples:
  vcfc allocate prof/sq_fire3.parquet --qp-base 37 --qp-range 10 --out qps.txt
  vcfc allocate prof/sq_fire3.parquet --qp-base 37 --qp-range 10 --method lagrangian \\
        --target-bytes 20000 --out qps.txt
  vcfc encode feat.npy feat.vcfc --layout frames --channel-qps qps.txt

linear (Hu et al.):  QP_i = QP_base − round(QP_range · S̃_i), S̃ = min-max normalised sensitivity.
lagrangian: per channel the QP (from the profile's R/D grid, within QP_base ± QP_range) minimising
  w_i·D_i(QP) + λ·R_i(QP), w_i = S_i / D_i(QP_base); --lambda L fixes λ, --target-bytes B
  (payload bytes per image, as measured) or --target-qp Q (average QP) finds it by bisection.
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
    p = sub.add_parser("sensitivity", help="per-channel sensitivity profile of a split to codec noise",
                       description="Measure how much each channel's codec noise costs the task "
                                   "(Hu et al., sensitivity-aware bit allocation).",
                       epilog=SENS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="torchvision model name (see `vcfc models`)")
    p.add_argument("--layer", required=True, help="split preset or module path (R-CNN: fpn)")
    p.add_argument("--weights", default="DEFAULT", help="weights name, checkpoint path or 'none' (default DEFAULT)")
    p.add_argument("--data", required=True, help="dataset folder (ImageNet, image folder, COCO)")
    p.add_argument("--kind", default="auto", choices=["auto", "folder", "imagenet", "coco", "voc"])
    p.add_argument("--images", type=int, default=8, help="number of images to average over (default 8)")
    p.add_argument("--qp-base", type=int, required=True, help="QP of the codec noise")
    p.add_argument("--codec", default="x265", choices=["x265", "vvenc"], help="default x265")
    p.add_argument("--quant", default="minmax", choices=["minmax", "minmax-channel", "log", "zscore"])
    p.add_argument("--bits", type=int, default=8, choices=[8, 10])
    p.add_argument("--preset", help="encoder preset (default: the codec's)")
    p.add_argument("--method", default="exact", choices=["exact", "taylor", "naive"])
    p.add_argument("--distance", default="penultimate", choices=["penultimate", "output", "kl", "top1"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-batch", type=int, default=64, help="variants per forward pass (default 64)")
    p.add_argument("--max-memory", type=float, metavar="MIB", help="memory budget per forward pass in MiB")
    p.add_argument("--linear", default="auto", choices=["auto", "on", "off"],
                   help="leading-conv trick (auto: timed, kept if faster)")
    p.add_argument("--probes", type=int, default=16, help="taylor: random probes (0 = plain gradient·noise)")
    p.add_argument("--rd-qps", default="auto", metavar="LO:HI[:STEP]",
                   help="QP grid of the rate/distortion tables (auto: QP_base−12..QP_base+8 step 2; none)")
    p.add_argument("--out", required=True, metavar="PROFILE", help="path prefix or .parquet")
    p.set_defaults(func=_cmd_sensitivity)

    p = sub.add_parser("allocate", help="per-channel QPs from a sensitivity profile",
                       description="Turn a sensitivity profile into one QP per channel.",
                       epilog=ALLOC_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", metavar="PROFILE", help="profile .parquet / .csv (or its prefix)")
    p.add_argument("--qp-base", type=int, help="default: the profile's qp_base")
    p.add_argument("--qp-range", type=int, required=True, help="linear: the most sensitive channel gets QP_base − R")
    p.add_argument("--method", default="linear", choices=["linear", "lagrangian"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--target-bytes", type=float, help="lagrangian: total payload bytes per image")
    g.add_argument("--target-qp", type=float, help="lagrangian: average QP")
    g.add_argument("--lambda", dest="lam", type=float, help="lagrangian: fixed λ")
    p.add_argument("--out", required=True, metavar="QPS.txt")
    p.set_defaults(func=_cmd_allocate)


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    import torch

    import sensitivity as S
    from runners.datasets import open_dataset
    from runners.models import split

    if args.images < 1:
        raise InputError(f"--images must be >= 1, got {args.images}")
    device = S.resolve_device(args.device)
    sp = split(args.model, at=args.layer, weights=args.weights, device=device)
    ds = open_dataset(args.data, kind=args.kind, transform=sp.transforms, limit=args.images)
    if len(ds) == 0:
        raise InputError(f"{args.data}: no images")
    meta = {"model": args.model, "weights": str(args.weights), "layer": args.layer,
            "dataset": str(Path(args.data).resolve()), "module_path": sp.module_path, "task": sp.task}

    def heads():
        for s in ds:
            yield sp.head(s.image.unsqueeze(0) if isinstance(s.image, torch.Tensor) else [s.image])

    if sp.task in ("detection", "instance", "keypoints"):
        prof = S.measure_levels(heads(), tail=sp.tail, distance=S.detection_distance, qp_base=args.qp_base,
                                codec=args.codec, quant=args.quant, bits=args.bits, preset=args.preset,
                                progress=True, meta={**meta, "distance": "1-pseudoF1"})
    else:
        pen = None
        if args.distance == "penultimate":
            tm = getattr(sp, "tail_module", None)
            pen = S.penultimate_graph(tm) if tm is not None else sp.penultimate
        limits = S.CodecSpec(args.codec).qp_limits()
        prof = S.measure(
            heads(), tail=sp.tail_module if hasattr(sp, "tail_module") else sp.tail, penultimate=pen,
            qp_base=args.qp_base, codec=args.codec, quant=args.quant, bits=args.bits, preset=args.preset,
            distance=args.distance, method=args.method, device=device, max_batch=args.max_batch,
            max_bytes=int(args.max_memory * 2**20) if args.max_memory else None, linear=args.linear,
            taylor_probes=args.probes, rd_qps=_qp_grid(args.rd_qps, args.qp_base, limits),
            progress=True, meta=meta)
    paths = S.write_profile(prof, args.out)
    print(" ".join(str(p) for p in paths.values()))
    return 0


def _cmd_allocate(args: argparse.Namespace) -> int:
    import numpy as np

    import sensitivity as S

    prof = S.read_profile(args.profile)
    meta = prof.meta
    qp_base = args.qp_base if args.qp_base is not None else meta.get("qp_base")
    if qp_base is None:
        raise InputError("the profile records no qp_base: pass --qp-base")
    limits = S.CodecSpec(meta.get("codec", "x265")).qp_limits()
    s = prof.sensitivity
    if args.method == "linear":
        if args.target_bytes is not None or args.target_qp is not None or args.lam is not None:
            raise InputError("--target-bytes/--target-qp/--lambda are for --method lagrangian")
        qps = S.allocate_linear(s, qp_base, args.qp_range, limits)
        note = ""
    else:
        rd = prof.rd()
        if rd is None:
            raise InputError(f"{args.profile}: no rate/distortion tables (measure with --rd-qps)")
        grid, rate, dist = rd
        keep = [k for k, q in enumerate(grid) if abs(q - qp_base) <= args.qp_range]
        if not keep:
            raise InputError(f"no QP of the profile grid {grid} within {qp_base}±{args.qp_range}")
        # S_i was measured at the profile's QP: the weights are anchored there, not at --qp-base.
        w = S.task_weights(s, dist, grid, int(meta.get("qp_base", qp_base)))
        g = [grid[k] for k in keep]
        r, d = rate[:, keep], dist[:, keep]
        if args.lam is not None:
            a = S.allocate_lagrangian(w, r, d, g, args.lam)
        elif args.target_bytes is not None or args.target_qp is not None:
            a = S.lagrangian_for_target(w, r, d, g, target_bytes=args.target_bytes, target_qp=args.target_qp)
        else:
            raise InputError("--method lagrangian needs --target-bytes, --target-qp or --lambda")
        qps = a.qps
        note = f", λ={a.lam:.4g}, predicted payload {a.rate:.0f} B/image"
    if meta.get("mode") == "level":
        counts = meta.get("level_channels") or {}
        levels = list(prof.table["level"])
        if set(levels) - set(counts):
            raise InputError(f"{args.profile}: per-level profile without channel counts")
        lines = [int(q) for lv, q in zip(levels, qps) for _ in range(int(counts[lv]))]
    else:
        lines = [int(q) for q in qps]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{q}\n" for q in lines))
    print(f"{len(lines)} QPs, mean {np.mean(lines):.2f}, range {min(lines)}..{max(lines)}{note} -> {out}",
          file=sys.stderr)
    return 0
