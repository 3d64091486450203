"""End-to-end throughput of the demo grid with 1 vs 2 worker processes, and time per stage.

    .venv/bin/python benchmarks/bench_grid.py [--out bench-out/grid.json]

Runs the embedded demo experiment (vcfc/data/demo.toml: 18 Kodak images × 3 allocations × 4
QPs, squeezenet1_1 fire3, x265) twice on the same allocations — once with 1 worker, once with 2 —
and reports images/s and rows/s of the grid (the sensitivity profile is measured once, before,
and not timed), plus each stage's share of the summed stage time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
STAGES = ("head_s", "quant_s", "pack_s", "encode_s", "decode_s", "tail_s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "bench-out" / "grid.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vcfc-bench-grid-"))
    if (SHARED / "weights").is_dir() and "TORCH_HOME" not in os.environ:
        ckpt = tmp / "torch" / "hub" / "checkpoints"
        ckpt.mkdir(parents=True)
        for f in (SHARED / "weights").glob("*.pth"):
            shutil.copy(f, ckpt / f.name)
        os.environ["TORCH_HOME"] = str(tmp / "torch")

    import pandas as pd

    from runners.experiment import load_experiment
    from runners.run import ALLOCATIONS_FILE, prepare_allocations, run_experiment

    exp = load_experiment(REPO / "vcfc" / "data" / "demo.toml")
    (tmp / "prep").mkdir()
    prepare_allocations(exp, tmp / "prep", progress=False)
    results = []
    for workers in (1, 2):
        run_dir = tmp / f"w{workers}"
        shutil.copytree(tmp / "prep", run_dir)  # same profile and allocations: only the grid is timed
        res = run_experiment(exp, run_dir, workers=workers, progress=False)
        rows = pd.read_parquet(run_dir / "rows.parquet")
        ok = rows[rows["status"] == "ok"]
        images = ok["image_id"].nunique()
        per_image = ok.drop_duplicates("image_id")
        totals = {s: float(ok[s].sum()) for s in STAGES if s != "head_s"}
        totals["head_s"] = float(per_image["head_s"].sum())  # the head runs once per image
        whole = sum(totals.values())
        results.append({
            "workers": workers, "grid_seconds": res.elapsed_s, "images": images, "rows": len(ok),
            "images_per_s": images / res.elapsed_s, "rows_per_s": len(ok) / res.elapsed_s,
            "stage_fraction": {s: totals[s] / whole for s in STAGES},
        })
        r = results[-1]
        print(f"workers={workers}: {r['grid_seconds']:.1f} s, {r['images_per_s']:.3f} images/s, "
              f"{r['rows_per_s']:.2f} rows (image×config×QP)/s", flush=True)
    speedup = results[0]["grid_seconds"] / results[1]["grid_seconds"]
    print(f"\n2 workers vs 1: {speedup:.2f}× faster (same run, same machine)")
    print("share of stage time (2 workers): " + ", ".join(f"{s[:-2]} {v:.1%}" for s, v in results[1]["stage_fraction"].items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"runs": results, "speedup_2_vs_1": speedup, "cpus": os.cpu_count(),
                                          "allocations_file": ALLOCATIONS_FILE}, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
