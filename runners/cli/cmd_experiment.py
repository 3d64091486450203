"""`vcfc run`, `vcfc report` and `vcfc demo`: experiment grids and their reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vcfc.errors import InputError
from vcfc.io import output_dir
from vcfc.runners.grid.executors import EXECUTORS

from .args import EXIT_CODES, add_command, positive, quiet_flag, show_progress

RUN_EPILOG = f"""\
examples:
  vcfc run experiment.toml --out runs/exp1                 # local process pool
  vcfc run experiment.toml --out runs/exp1 --workers 8
  vcfc run experiment.toml --out runs/exp1 --executor dask --scheduler tcp://head:8786
  vcfc report runs/exp1

The experiment is checked before anything runs (codecs, presets, QPs in each codec's range,
datasets that open, models and layers that exist). Interrupted (Ctrl-C, kill, a crashed worker)?
Run the same command again: finished rows are kept and not recomputed. Failed tasks and
unreadable images are recorded as error rows; --retry-errors runs those tasks again. The format
is documented in docs/experiments.md; `vcfc demo` runs the embedded example (the package's data/demo.toml).
{EXIT_CODES}"""

REPORT_EPILOG = """\
examples:
  vcfc report runs/exp1                       # writes runs/exp1/report/report.html (+ .md, CSVs, plots)
  vcfc report runs/exp1 --anchor uniform --rate bpp --out paper/fig
  vcfc report runs/exp1 --anchor input:uniform   # every split point against coding the image itself

--anchor: an allocation (each configuration against that allocation of its own model, layer and
coding), LAYER:ALLOCATION (every split point of a model against that one, on bytes per image:
input:uniform is sending the coded image instead of features), or a configuration id.
When a run holds layer input beside others, the report also compares every split point with it.

BD-rates come with a 95 % bootstrap confidence interval over images (paired resampling of the
images both configurations coded); --bootstrap sets the number of resamples.
"""

DEMO_EPILOG = """\
examples:
  vcfc demo                     # ./vcfc-demo/report/report.html
  vcfc demo --out /tmp/demo --workers 1

Needs torchvision's squeezenet1_1 ImageNet weights in $TORCH_HOME/hub/checkpoints
(`make weights` copies them from ../shared/weights into .cache/torch; `make demo` sets TORCH_HOME).
Without them the demo runs with seeded random weights and the report says so.
"""


def register(sub: Any) -> None:
    p = add_command(sub, "run", "run an experiment grid (resumable)",
                    "Run an experiment file's grid; rows go to RUN_DIR as Parquet.", RUN_EPILOG)
    p.add_argument("experiment", metavar="EXPERIMENT.toml")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--executor", choices=EXECUTORS, help="default: the experiment's [run] executor (local)")
    p.add_argument("--workers", type=int, help="worker processes for the local executor (default: the experiment's, else all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--retry-errors", action="store_true", help="rerun tasks recorded as errors")
    p.add_argument("--new", action="store_true", help="delete what an earlier run left in RUN_DIR and start over")
    quiet_flag(p)
    p.set_defaults(func=cmd_run)

    p = add_command(sub, "report", "rate–fidelity curves, BD-rate tables with confidence intervals, plots",
                    "Aggregate a run's rows into curves, BD-rate tables (Bjøntegaard, pchip, 95 % bootstrap "
                    "intervals) and plots: report.html, report.md, CSVs.", REPORT_EPILOG)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="REPORT_DIR", help="default: RUN_DIR/report")
    p.add_argument("--anchor", default="uniform",
                   help="allocation, LAYER:ALLOCATION (e.g. input:uniform) or config id every BD-rate is measured "
                        "against (default: uniform)")
    p.add_argument("--rate", choices=["bpfe", "bpp", "bytes"],
                   help="rate axis (default: bpfe, bits per feature element; bytes per image for a LAYER:ALLOCATION anchor)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples for the confidence intervals (default 1000)")
    p.set_defaults(func=cmd_report)

    p = add_command(sub, "demo", "the main job on bundled images: run + report in a few minutes",
                    "Run the embedded experiment (24 bundled Kodak images, squeezenet1_1 split at fire3, x265 at "
                    "4 QPs: uniform QP vs per-image allocation (Hu et al.'s Algorithm 1) vs the closed-loop "
                    "rate–distortion search) and write its report.", DEMO_EPILOG)
    p.add_argument("--out", default="vcfc-demo", metavar="DIR", help="run and report folder (default: ./vcfc-demo)")
    p.add_argument("--workers", type=int, default=2)
    quiet_flag(p)
    p.set_defaults(func=cmd_demo)


def cmd_run(args: argparse.Namespace) -> int:
    from vcfc.runners.config import load_experiment

    positive("--workers", args.workers)
    output_dir(args.out)  # a folder that cannot be written ends the run now, not after the first task
    exp = load_experiment(args.experiment)
    return run_and_say(exp, Path(args.out), args.executor, args.workers, args.scheduler, args.retry_errors,
                       show_progress(args), args.new)


def run_and_say(exp: Any, out: Path, executor: str | None, workers: int | None, scheduler: str | None,
                retry_errors: bool, progress: bool, new: bool) -> int:
    """Run, print what happened, and return the exit status (0 ok, 3 failures recorded, 130 interrupted)."""
    from vcfc.runners.experiment import run_experiment
    from vcfc.runners.rundir import RunDir

    result = run_experiment(exp, out, executor=executor, workers=workers, scheduler=scheduler,
                            retry_errors=retry_errors, progress=progress, new=new)
    if result.interrupted:
        return 130
    rows = RunDir(out).rows().table()
    bad = rows[rows["status"].eq("error")] if "status" in rows else rows.iloc[0:0]
    images = bad["image_id"].nunique() if "image_id" in bad else 0
    print(f"{out}: {result.done} tasks run, {result.skipped} already done; errors: {result.errors} task(s), "
          f"{len(bad)} error row(s) for {images} image(s) ({result.elapsed_s:.0f} s)")
    if len(bad):
        first = str(bad["error"].iloc[0])[:200]
        print(f"vcfc: some work failed (first: {first}); the rows say which; `vcfc run ... --retry-errors` "
              f"tries failed tasks again", file=sys.stderr)
        return 3
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vcfc.results.aggregate import layer_anchor

    positive("--bootstrap", args.bootstrap)
    output_dir(args.out or Path(args.run_dir) / "report")
    rate = args.rate or ("bytes" if layer_anchor(args.anchor) else "bpfe")
    if layer_anchor(args.anchor) and rate == "bpfe":
        raise InputError("--anchor LAYER:ALLOCATION compares split points of different sizes: use --rate bytes or bpp")
    path, bd = make_report(Path(args.run_dir), Path(args.out) if args.out else None, args.anchor, rate, args.bootstrap)
    print(f"report: {path}")
    print_bd(bd, rate)
    return 0


def make_report(run_dir: Path, out: Path | None, anchor: str = "uniform", rate: str = "bpfe", n_boot: int = 1000):
    """Write the report of a run; return (report.html path, the BD table it shows or None)."""
    import pandas as pd

    from vcfc.results.aggregate import check_anchor
    from vcfc.results.report import write_report
    from vcfc.runners.report_extras import report_extras
    from vcfc.runners.rundir import RunDir

    run = RunDir(run_dir)
    manifest = run.manifest()
    rows = run.rows().table()
    if rows.empty:
        raise InputError(f"{run_dir}: no rows yet (the run has not finished a task)")
    check_anchor(rows, anchor)  # one line naming what the run has, before any work
    extras = report_extras(run, manifest, rows)
    path = write_report(rows, out or run.report_dir, anchor=anchor, extras=extras, rate=rate, n_boot=n_boot)
    bd_csv = path.parent / "bd.csv"
    bd = pd.read_csv(bd_csv) if bd_csv.is_file() and bd_csv.stat().st_size > 1 else None
    return path, bd


def print_bd(bd: Any, rate: str = "bpfe") -> None:
    if bd is None or len(bd) == 0:
        print("no BD-rate table (a single configuration, no anchor, or no successful rows)")
        return
    if "rate" in bd.columns:
        bd = bd[bd["rate"] == rate]
    print(f"\nBD-rate vs the anchor, rate = {rate}: negative = fewer bits at equal quality; "
          f"[95 % bootstrap interval], n images")
    from vcfc.results.plots import short_labels  # matplotlib: only once there is a table to print

    labels = short_labels([str(c) for c in bd["config"]])[0]  # the report's legend names
    for r in bd.itertuples(index=False):
        d = r._asdict()
        d["allocation"] = labels[str(d["config"])]
        if d.get("bd_rate") is None or d["bd_rate"] != d["bd_rate"]:  # NaN
            print(f"  {d['allocation']:12s} {d['quality']:9s}  —  ({d.get('reason') or 'not computable'})")
            continue
        lo, hi = d["bd_rate_ci_low"], d["bd_rate_ci_high"]
        nan = d.get("nan_resamples") or 0
        why = f"{nan} of {d.get('n_boot')} resamples not computable" if nan else (d.get("reason") or "too few images")
        ci = f"[{lo:+.1f}, {hi:+.1f}]" if lo == lo and hi == hi else f"[no interval: {why}]"
        print(f"  {d['allocation']:12s} {d['quality']:9s} {d['bd_rate']:+6.1f} % {ci}  n = {d['n_images']}   ({d['config']})")


def cmd_demo(args: argparse.Namespace) -> int:
    import warnings

    from vcfc.io import bundled, jsonable
    from vcfc.runners.config import load_experiment
    from vcfc.runners.rundir import RunDir
    from vcfc.runners.weights import random_weights_hint, weights_available

    positive("--workers", args.workers)
    output_dir(args.out)
    exp = load_experiment(bundled("demo.toml"))
    m = exp.models[0]
    if not weights_available(m.name, m.weights):
        warnings.warn(f"{m.name}: no ImageNet weights in $TORCH_HOME — the demo runs with seeded RANDOM weights, "
                      f"so its numbers are a pipeline check, not the network's. {random_weights_hint(m.name, m.weights)}",
                      stacklevel=2)
        m.weights = "none"
    out = Path(args.out)
    run = RunDir(out / "run")
    # a demo folder from other weights (or an older demo) is started over, not mixed
    new = run.is_run() and run.manifest().get("experiment") != jsonable(exp.to_dict())
    code = run_and_say(exp, out / "run", None, args.workers, None, False, show_progress(args), new)
    if code not in (0, 3):
        return code
    path, bd = make_report(out / "run", out / "report")
    print(f"\nreport: {path}")
    print_bd(bd)
    if m.weights == "none":
        print("vcfc: these numbers come from RANDOM weights (a pipeline check): see the warning above", file=sys.stderr)
    return code

