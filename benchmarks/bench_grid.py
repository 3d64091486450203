"""Grid throughput from 1 to N worker processes: speed-up, parallel efficiency, CPU use, stages.

    .venv/bin/python benchmarks/bench_grid.py [--workers 1,2] [--images 128] [--out bench-out/grid.json]

The grid (as in issue 11): ImageNet sample images (../shared; the bundled Kodak images without
it) × squeezenet1_1 fire3 × x265 fast × mosaic × 4 QPs, uniform only, tasks of 4 images. For
each worker count the same grid runs from scratch in a fresh run folder (worker start-up, model
loading and all), each worker with its thread budget (cores ÷ workers). Reported per count:
wall time, images/s, rows/s, speed-up and parallel efficiency against 1 worker, CPU
utilisation (busy CPU seconds of the machine, ffmpeg included, over wall × cores: run it quiet),
the share of the workers' time spent inside tasks (the rest: start-up, idle), each stage's
share of the summed stage time, and whether the rows are identical to the 1-worker run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from vcfc.io import bundled

SHARED = Path(os.environ.get("VCFC_SHARED", REPO.parent / "shared"))
STAGES = ("head_s", "quant_s", "pack_s", "encode_s", "decode_s", "alloc_s", "tail_s")
TIMING = (*STAGES, "task_s")


def cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine (workers fork from a forkserver, so they and their
    ffmpeg children are not this process's descendants for getrusage); run on a quiet machine."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def experiment(images: int, device: str) -> dict:
    data = SHARED / "data" / "imagenet-sample"
    path = data if data.is_dir() else bundled("kodak")
    return {
        "name": "bench-grid",
        "datasets": [{"path": str(path), "limit": images}],
        "models": [{"name": "squeezenet1_1", "weights": "DEFAULT", "layers": ["fire3"]}],
        "coding": {"codecs": ["x265"], "presets": {"x265": "fast"}, "layouts": ["mosaic"], "qps": [22, 27, 32, 37]},
        "allocation": {"methods": ["uniform"]},
        "run": {"batch_size": 4, "device": device},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads-per-worker", type=int, help="default: cores ÷ workers")
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "grid.json"))
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="vcfc-bench-grid-"))
    if (SHARED / "weights").is_dir() and "TORCH_HOME" not in os.environ:
        ckpt = tmp / "torch" / "hub" / "checkpoints"
        ckpt.mkdir(parents=True)
        for f in (SHARED / "weights").glob("*.pth"):
            shutil.copy(f, ckpt / f.name)
        os.environ["TORCH_HOME"] = str(tmp / "torch")

    import pandas as pd

    from vcfc.runners.config import experiment_from_dict
    from vcfc.runners.experiment import run_experiment
    from vcfc.runners.grid.budget import Budget, available_cores

    cores = available_cores()
    raw = experiment(args.images, args.device)
    raw["run"]["threads_per_worker"] = args.threads_per_worker
    exp = experiment_from_dict(raw)
    results, reference = [], None
    for workers in counts:
        run_dir = tmp / f"w{workers}"
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        run_experiment(exp, run_dir, workers=workers, progress=False)
        wall = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        rows = pd.read_parquet(run_dir / "rows.parquet")
        ok = rows[rows["status"] == "ok"]
        images = ok["image_id"].nunique()
        per_image = ok.drop_duplicates("image_id")
        totals = {s: float(ok[s].sum()) for s in STAGES if s in ok and s != "head_s"}
        totals["head_s"] = float(per_image["head_s"].sum())  # the head runs once per image
        whole = sum(totals.values())
        task_s = float(ok.drop_duplicates("task_key")["task_s"].sum())
        comparable = ok.drop(columns=[c for c in TIMING if c in ok]).sort_values(["image_id", "config", "qp"]).reset_index(drop=True)
        if reference is None:
            reference = comparable
        same = comparable.equals(reference)
        r = {"workers": workers, "threads_per_worker": Budget.share(workers, cores, args.threads_per_worker).cores, "wall_s": wall,
             "images": images, "rows": len(ok), "images_per_s": images / wall, "rows_per_s": len(ok) / wall,
             "cpu_utilisation": cpu / (wall * cores), "in_task_share": task_s / (wall * workers),
             "stage_share": {s: totals[s] / whole for s in totals}, "rows_identical_to_first": same}
        results.append(r)
        print(f"workers={workers:2d} ({r['threads_per_worker']} threads each): {wall:6.1f} s, {r['images_per_s']:.2f} images/s, "
              f"{r['rows_per_s']:.1f} rows/s, CPU {r['cpu_utilisation']:.0%}, in tasks {r['in_task_share']:.0%}, "
              f"rows identical: {same}", flush=True)
    base = results[0]
    print("\n| workers | wall s | images/s | speed-up | efficiency | CPU use | in tasks | rows identical |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        r["speedup"] = base["wall_s"] / r["wall_s"]
        r["efficiency"] = r["speedup"] / (r["workers"] / base["workers"])
        print(f"| {r['workers']} | {r['wall_s']:.1f} | {r['images_per_s']:.2f} | {r['speedup']:.2f}× | {r['efficiency']:.0%} | "
              f"{r['cpu_utilisation']:.0%} | {r['in_task_share']:.0%} | {r['rows_identical_to_first']} |")
    last = results[-1]
    print("\nshare of stage time at the largest count: " + ", ".join(f"{s[:-2]} {v:.1%}" for s, v in last["stage_share"].items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cores": cores, "images": args.images, "runs": results}, indent=1))
    if args.keep:
        print(f"run folders kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
