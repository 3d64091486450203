"""Throughput of split networks: images/s for head, tail and the full eval loop, and peak memory.

    .venv/bin/python benchmarks/bench_eval.py [--images 16] [--out bench-out/eval.json]

Each model runs in its own subprocess so that its peak resident memory (ru_maxrss) is its own.
The full loop is head → x265 (QP 32, default preset, mosaic) → decode → tail, as `vcfc eval` runs it.
squeezenet1_1 and mobilenet_v2 use the real weights in ../shared/weights when present; the others
use seeded random weights (throughput does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CASES = [
    # model, weights, layer, input data, batch size
    ("squeezenet1_1", "DEFAULT", "fire3", "imagenet", 8),
    ("mobilenet_v2", "IMAGENET1K_V1", "block3", "imagenet", 8),
    ("resnet50", "none", "layer1", "imagenet", 8),
    ("vgg16", "none", "pool1", "imagenet", 4),
    ("fcn_resnet50", "none", "layer1", "imagenet", 1),  # aspect-keeping 520 resize: sizes differ
    ("fasterrcnn_resnet50_fpn", "none", "fpn", "coco", 1),
]


def run_case(model: str, weights: str, layer: str, data: str, batch_size: int, images: int) -> dict:
    import torch

    from vcfc.runners.datasets import batches, open_dataset
    from vcfc.runners.evaluate import EvalConfig, evaluate_batch
    from vcfc.runners.models import split
    from vcfc.spec import CodingSpec

    sp = split(model, at=layer, weights=None if weights == "none" else weights)
    path = SHARED / "data" / ("imagenet-sample" if data == "imagenet" else "coco128")
    ds = open_dataset(path, transform=sp.transforms, limit=images)
    loaded = list(batches(ds, batch_size))  # decode JPEGs up front: not part of the timings
    n = sum(len(b.image_ids) for b in loaded)

    def timed(fn):
        t = time.perf_counter()
        out = [fn(b) for b in loaded]
        return out, time.perf_counter() - t

    sp.head(loaded[0].images)  # warm-up (first-call allocations, fx graph caches)
    feats, head_s = timed(lambda b: sp.head(b.images))
    metas = [dict(getattr(f, "meta", None) or sp.last_meta) for f in feats]
    it = iter(zip(feats, metas))
    _, tail_s = timed(lambda b: (lambda fm: sp.tail(fm[0], meta=fm[1]))(next(it)))
    cfg = EvalConfig(CodingSpec("x265"), qp=32)
    _, loop_s = timed(lambda b: evaluate_batch(sp, b, [cfg]))
    return {
        "model": model, "layer": layer, "weights": weights, "images": n, "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "head_img_s": n / head_s, "tail_img_s": n / tail_s, "eval_loop_img_s": n / loop_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--out", default=str(REPO / "bench-out" / "eval.json"))
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = ap.parse_args()
    if args.case:
        model, weights, layer, data, bs = json.loads(args.case)
        print(json.dumps(run_case(model, weights, layer, data, bs, args.images)))
        return 0

    env = dict(os.environ)
    home = tempfile.mkdtemp(prefix="vcfc-bench-torch-")
    if (SHARED / "weights").is_dir():
        (Path(home) / "hub" / "checkpoints").mkdir(parents=True)
        for f in (SHARED / "weights").glob("*.pth"):
            shutil.copy(f, Path(home) / "hub" / "checkpoints" / f.name)
    env["TORCH_HOME"] = home
    results = []
    print(f"{'model':26s} {'layer':7s} {'head img/s':>10s} {'tail img/s':>10s} {'eval img/s':>10s} {'peak RSS MiB':>12s}")
    for case in CASES:
        r = subprocess.run([sys.executable, __file__, "--images", str(args.images), "--case", json.dumps(case)],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"{case[0]:26s} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{res['model']:26s} {res['layer']:7s} {res['head_img_s']:10.1f} {res['tail_img_s']:10.1f} "
              f"{res['eval_loop_img_s']:10.2f} {res['peak_rss_mib']:12.0f}", flush=True)
    shutil.rmtree(home, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                                          "results": results}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
