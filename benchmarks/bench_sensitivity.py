"""Benchmark of the sensitivity sweep: naive loop (Algorithm 1 as written) vs batched, and Taylor.

    .venv/bin/python benchmarks/bench_sensitivity.py [--device cpu|cuda] [--images 2]
        [--naive-channels 8] [--peak-tflops 989] [--fpn] [--fpn-budget-gib 8]

Cases: squeezenet1_1 pool1 and mobilenet_v2 block3 (real ImageNet weights from ../shared, real
images) and VGG16 conv1 (random weights) at 224×224. The naive loop is timed on the first
`--naive-channels` channels of the first image and extrapolated per channel (said in the table).
On CUDA (or with --fpn) also a memory-bounded run: 256-channel FPN p2 at 800×1216 (200×304)
through an R-CNN RPN head (random weights), reporting torch.cuda.max_memory_allocated.
Prints a table; writes bench-out/sensitivity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VCFC_SHARED", REPO.parent / "shared"))

from scipy.stats import spearmanr

import vcfc.sensitivity as S

CASES = [  # model, layer, weights (None: random)
    ("squeezenet1_1", "pool1", "DEFAULT"),
    ("mobilenet_v2", "block3", "IMAGENET1K_V1"),
    ("vgg16", "conv1", None),
]


def torch_home() -> None:
    if (SHARED / "weights").is_dir():
        home = Path(tempfile.mkdtemp(prefix="vcfc-bench-th-"))
        (home / "hub" / "checkpoints").mkdir(parents=True)
        for f in (SHARED / "weights").glob("*.pth"):
            shutil.copy(f, home / "hub" / "checkpoints" / f.name)
        os.environ["TORCH_HOME"] = str(home)


def images(sp, n: int, device) -> list[torch.Tensor]:
    from vcfc.runners.datasets import open_dataset

    root = SHARED / "data" / "imagenet-sample"
    if root.is_dir():
        ds = open_dataset(root, transform=sp.transforms, limit=n)
        return [sp.head(s.image.unsqueeze(0).to(device)) for s in ds]
    g = torch.Generator().manual_seed(0)
    return [sp.head(torch.rand(1, 3, 224, 224, generator=g).to(device)) for _ in range(n)]


def flops_per_variant(fn, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        fn(x)
    return float(fc.get_total_flops())


def timed(f):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = f()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def run_case(model: str, layer: str, weights, args) -> dict:
    from vcfc.runners.models import split

    dev = S.resolve_device(args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sp = split(model, layer, weights=weights, device=dev)
        except Exception as exc:  # noqa: BLE001 - no shared weights: fall back to random
            print(f"  {model}: {weights} unavailable ({type(exc).__name__}); random weights", file=sys.stderr)
            weights = None
            sp = split(model, layer, weights=None, device=dev)
    feats = images(sp, args.images, dev)
    pen = S.penultimate_graph(sp.tail_module).to(dev)
    c = feats[0].shape[1]
    kw = dict(tail=sp.tail_module, penultimate=pen, qp_base=args.qp, device=dev, max_batch=args.max_batch)
    S.measure(feats[:1], **kw, naive_channels=[0], method="naive")          # warm-up (kernels, ffmpeg)
    exact, t_exact = timed(lambda: S.measure(feats, **kw, method="exact"))
    sweep_s = exact.meta["seconds_sweep"]  # the tail passes alone, without waiting for the codec
    naive_ch = list(range(min(args.naive_channels, c)))
    _, t_naive = timed(lambda: S.measure(feats[:1], **kw, method="naive", naive_channels=naive_ch))
    taylor, t_taylor = timed(lambda: S.measure(feats, **kw, method="taylor", taylor_probes=args.probes))
    naive_per_image = t_naive / len(naive_ch) * c                           # extrapolated per channel
    exact_per_image = t_exact / len(feats)
    fl = flops_per_variant(pen, feats[0])
    row = {
        "model": model, "layer": layer, "weights": weights or "random", "shape": list(feats[0].shape[1:]),
        "device": str(dev), "images": len(feats), "channels": c,
        "naive_s_per_image": naive_per_image, "naive_channels_timed": len(naive_ch),
        "exact_s_per_image": exact_per_image, "exact_codec_s": exact.meta["seconds_codec"] / len(feats),
        "variants_per_s": c / exact_per_image, "speedup": naive_per_image / exact_per_image,
        "linear_trick": exact.meta["linear_trick"], "chunk": exact.meta["chunk"],
        "taylor_s_per_image": t_taylor / len(feats), "taylor_time_ratio": t_taylor / t_exact,
        "taylor_probes": args.probes, "spearman_taylor_exact": spearmanr(exact.sensitivity, taylor.sensitivity).statistic,
        "sweep_s_per_image": sweep_s / len(feats),
        "tail_gflop_per_variant": fl / 1e9, "achieved_tflops": fl * c * len(feats) / sweep_s / 1e12,
    }
    for mode in args.precisions.split(",") if args.precisions else []:
        if mode == "fp32":
            continue
        fast, _ = timed(lambda: S.measure(feats, **kw, method="exact", precision=mode))
        row[f"{mode}_sweep_s_per_image"] = fast.meta["seconds_sweep"] / len(feats)
        row[f"{mode}_speedup"] = sweep_s / fast.meta["seconds_sweep"]
        row[f"{mode}_spearman"] = spearmanr(exact.sensitivity, fast.sensitivity).statistic
        ref = abs(exact.sensitivity)
        row[f"{mode}_max_rel_diff"] = float((abs(fast.sensitivity - exact.sensitivity) / (ref + 1e-3 * ref.max())).max())
    if args.peak_tflops:
        row["fraction_of_peak"] = row["achieved_tflops"] / args.peak_tflops
    return row


class RPNTail(nn.Module):
    """An R-CNN RPN head on one level: conv3x3 + ReLU, objectness and box deltas (flattened)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.detection.rpn import RPNHead

        torch.manual_seed(0)
        h = RPNHead(256, 3)
        self.conv, self.cls, self.box = h.conv[0][0], h.cls_logits, h.bbox_pred

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.relu(self.conv(x))
        return torch.cat([self.cls(t).flatten(1), self.box(t).flatten(1)], 1)


def run_fpn(args) -> dict:
    dev = S.resolve_device(args.device)
    tail = torch.fx.symbolic_trace(RPNTail()).to(dev).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 200, 304, generator=g).abs_().to(dev)
    budget = int(args.fpn_budget_gib * 2**30)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    prof, t = timed(lambda: S.measure([x], tail=tail, distance="output", qp_base=args.qp, device=dev,
                                      max_batch=256, max_bytes=budget))
    row = {"case": "fpn p2 256x200x304 (800x1216) RPN head", "device": str(dev), "seconds": t,
           "variants_per_s": 256 / t, "chunk": prof.meta["chunk"], "budget_bytes": budget,
           "linear_trick": prof.meta["linear_trick"]}
    if dev.type == "cuda":
        row["max_memory_allocated"] = torch.cuda.max_memory_allocated()
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--qp", type=int, default=37)
    ap.add_argument("--naive-channels", type=int, default=8)
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--peak-tflops", type=float, help="device peak (fp32 TFLOP/s) for the throughput fraction")
    ap.add_argument("--fpn", action="store_true", help="also the FPN p2 run (default: only on cuda)")
    ap.add_argument("--fpn-budget-gib", type=float, default=8.0)
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--precisions", default=None, help="also time these sweep precisions vs fp32, e.g. tf32,bf16 "
                                                      "(default on cuda: tf32,bf16)")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "sensitivity.json"))
    args = ap.parse_args()
    if args.precisions is None and S.resolve_device(args.device).type == "cuda":
        args.precisions = "tf32,bf16"
    torch_home()
    rows = []
    for model, layer, weights in CASES:
        if args.only and model not in args.only.split(","):
            continue
        print(f"running {model} {layer} ...", file=sys.stderr)
        rows.append(run_case(model, layer, weights, args))
    fpn = run_fpn(args) if (args.fpn or S.resolve_device(args.device).type == "cuda") else None
    hdr = f"{'case':<26}{'C×H×W':>13}{'naive s/img*':>13}{'ours s/img':>11}{'var/s':>8}{'speed-up':>9}" \
          f"{'lin':>5}{'taylor/exact t':>15}{'spearman':>9}{'TFLOP/s':>9}"
    print(hdr)
    for r in rows:
        print(f"{r['model'] + ' ' + r['layer'] + ' (' + r['weights'][:6] + ')':<26}"
              f"{'×'.join(map(str, r['shape'])):>13}{r['naive_s_per_image']:>13.2f}{r['exact_s_per_image']:>11.2f}"
              f"{r['variants_per_s']:>8.1f}{r['speedup']:>8.1f}×{str(r['linear_trick'])[0]:>5}"
              f"{r['taylor_time_ratio']:>15.2f}{r['spearman_taylor_exact']:>9.3f}{r['achieved_tflops']:>9.3f}")
    print(f"* naive: timed on the first {args.naive_channels} channels of one image, extrapolated per channel; "
          f"ours: all channels, {args.images} images, device {rows[0]['device'] if rows else args.device}; "
          f"TFLOP/s: tail FLOPs over the sweep's own time (the codec round trip excluded)")
    for r in rows:
        for mode in (args.precisions or "").split(","):
            if mode and mode != "fp32":
                print(f"  {r['model']} {r['layer']}: {mode} sweep {r[f'{mode}_speedup']:.2f}× fp32's speed, "
                      f"Spearman vs fp32 {r[f'{mode}_spearman']:.4f}, max relative difference {r[f'{mode}_max_rel_diff']:.2e}")
    if fpn:
        mem = f", peak {fpn['max_memory_allocated'] / 2**30:.2f} GiB" if "max_memory_allocated" in fpn else ""
        print(f"{fpn['case']}: {fpn['seconds']:.1f} s, {fpn['variants_per_s']:.1f} variants/s, "
              f"chunk {fpn['chunk']} (budget {fpn['budget_bytes'] / 2**30:.1f} GiB){mem}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "fpn": fpn, "args": vars(args)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
