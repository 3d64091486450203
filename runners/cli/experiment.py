"""`vcfc run`, `vcfc report` and `vcfc demo`: experiment grids and their reports."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError

DATA = Path(__file__).resolve().parents[1] / "data"

RUN_EPILOG = """\
examples:
  vcfc run experiment.toml --out runs/exp1                 # local process pool
  vcfc run experiment.toml --out runs/exp1 --workers 8
  vcfc run experiment.toml --out runs/exp1 --executor dask --scheduler tcp://head:8786
  vcfc report runs/exp1 --out runs/exp1/report

Interrupted (Ctrl-C, kill, a crashed worker)? Run the same command again: finished rows are
kept and not recomputed. The experiment format is documented in docs/experiments.md; `vcfc demo`
runs the embedded example (vcfc/data/demo.toml).
"""


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run an experiment grid (resumable)", description="Run an experiment file's grid; rows go to RUN_DIR as Parquet.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EPILOG)
    p.add_argument("experiment", metavar="EXPERIMENT.toml")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--executor", choices=["local", "dask", "serial"], help="default: the experiment's [run] executor (local)")
    p.add_argument("--workers", type=int, help="worker processes for the local executor (default: the experiment's, else all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--retry-errors", action="store_true", help="rerun tasks recorded as errors")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="rate–fidelity curves, BD-rate tables and plots from a run",
                       description="Aggregate a run's rows into curves, BD-rate tables (Bjøntegaard, pchip) and plots: report.html, report.md, CSVs.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="REPORT_DIR", help="default: RUN_DIR/report")
    p.add_argument("--anchor", default="uniform", help="allocation (or config id) every BD-rate is measured against (default: uniform)")
    p.add_argument("--rate", default="bpfe", choices=["bpfe", "bpp"], help="rate axis (default: bits per feature element)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("demo", help="the main job on embedded data: run + report in a few minutes",
                       description="Run the embedded experiment (24 bundled Kodak images, squeezenet1_1 split at fire3, x265 at 4 QPs, "
                                   "uniform vs linear vs Lagrangian allocation) and write its report.")
    p.add_argument("--out", default="vcfc-demo", metavar="DIR", help="run and report folder (default: ./vcfc-demo)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_cmd_demo)


def _cmd_run(args: argparse.Namespace) -> int:
    from runners.experiment import load_experiment

    exp = load_experiment(args.experiment)
    return _run(exp, Path(args.out), args.executor, args.workers, args.scheduler, args.retry_errors, not args.no_progress)


def _run(exp, out: Path, executor, workers, scheduler, retry_errors, progress) -> int:
    from runners.run import run_experiment

    result = run_experiment(exp, out, executor=executor, workers=workers, scheduler=scheduler,
                            retry_errors=retry_errors, progress=progress)
    if result.interrupted:
        return 130
    print(f"{out}: {result.done} tasks run, {result.skipped} already done, {result.errors} with errors "
          f"({result.elapsed_s:.0f} s)")
    if result.errors:
        print(f"errors are recorded in the rows; rerun with --retry-errors to try them again", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    path, bd = make_report(Path(args.run_dir), Path(args.out) if args.out else None, args.anchor, args.rate)
    print(f"report: {path}")
    _print_bd(bd, args.rate)
    return 0


def make_report(run_dir: Path, out: Path | None, anchor: str = "uniform", rate: str = "bpfe"):
    import numpy as np
    import pandas as pd

    from results.aggregate import bd_table, points
    from results.report import write_report
    from runners.run import ALLOCATIONS_FILE, SAMPLE_FRAME, describe_allocations
    from runners.store import RowStore

    if not (run_dir / "manifest.json").exists():
        raise InputError(f"{run_dir}: not a run folder (no manifest.json); make one with `vcfc run`")
    rows = RowStore(run_dir).table()
    if rows.empty:
        raise InputError(f"{run_dir}: no rows yet")
    extras: dict[str, Any] = {"manifest": json.loads((run_dir / "manifest.json").read_text())}
    if (run_dir / ALLOCATIONS_FILE).exists():
        allocs = json.loads((run_dir / ALLOCATIONS_FILE).read_text())
        if allocs:
            extras["qp_maps"] = {k: np.array(v) for k, v in describe_allocations(allocs).items()}
    profiles = sorted((run_dir / "profiles").glob("*.parquet"))
    if profiles:
        extras["sensitivity"] = {p.stem: pd.read_parquet(p) for p in profiles}
    if (run_dir / SAMPLE_FRAME).exists():
        bits = int(extras["manifest"].get("experiment", {}).get("coding", {}).get("bits", 8))
        extras["mosaics"] = {"sample feature mosaic (first image)": (np.load(run_dir / SAMPLE_FRAME), bits)}
    out = out or run_dir / "report"
    path = write_report(rows, out, anchor=anchor, extras=extras, rate=rate)
    bd = bd_table(points(rows), anchor=anchor, rate=rate)
    return path, bd


def _print_bd(bd, rate: str = "bpfe") -> None:
    if bd is not None and len(bd) and "rate" in bd.columns:
        bd = bd[bd["rate"] == rate]
    if bd is None or len(bd) == 0:
        print("no BD-rate table (a single configuration, or no anchor)")
        return
    cols = [c for c in ("config", "anchor", "bd_rate_fidelity", "bd_fidelity", "bd_rate_top1", "reason_fidelity") if c in bd.columns]
    print(f"\nBD-rate vs the anchor, rate = {rate} (negative = fewer bits at equal fidelity):")
    print(bd[cols].to_string(index=False, float_format=lambda v: f"{v:+.2f}"))


def _cmd_demo(args: argparse.Namespace) -> int:
    import warnings

    from runners.experiment import load_experiment
    from runners.models import split

    exp = load_experiment(DATA / "demo.toml")
    m = exp.models[0]
    try:
        split(m.name, at=m.layers[0], weights=m.weights)
    except InputError as exc:
        warnings.warn(f"{exc} — the demo continues with seeded random weights: fidelity numbers are a "
                      f"pipeline check, not the real network's")
        m.weights = "none"
    out = Path(args.out)
    code = _run(exp, out / "run", None, args.workers, None, False, True)
    if code:
        return code
    path, bd = make_report(out / "run", out / "report")
    print(f"\nreport: {path}")
    _print_bd(bd)
    return 0
