"""`vcfc splits`: where to cut a network — bytes per image at equal fidelity against head FLOPs."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from vcfc.codecs import CODECS
from vcfc.errors import InputError
from vcfc.io import output_dir
from vcfc.runners.kinds import KINDS
from vcfc.runners.presets import INPUT

from .args import add_command, positive, quiet_flag, show_progress

SPLITS_EPILOG = """\
examples:
  vcfc splits --model squeezenet1_1 --data ../shared/data/imagenet-sample --limit 40
  vcfc splits --model mobilenet_v2 --weights IMAGENET1K_V1 --data ../shared/data/imagenet-sample --limit 40
  vcfc splits --model squeezenet1_1 --data imgs --layers fire3,pool3,pool5 --targets 0.9,0.95 \
        --out splits-imgs --json
  vcfc splits --model squeezenet1_1 --data ../shared/data/imagenet-sample --data ../shared/data/coco128 \
        --data ../shared/data/kodak --out splits-402   # 402 images: fidelity needs no labels

For each candidate cut (the model's presets whose features have no more elements than the
network input, within --max-flops of the network's FLOPs, at most --max-cuts; or --layers) and
for the image itself (layer input: the 224×224 network input coded as one YUV 4:2:0 picture with
the same codec, the remote-inference anchor, zero head FLOPs) it codes the evaluated images at
every QP with each method (uniform; rdo-uniform: one QP per image by KL + λ·bits; rdo: per
channel, not for the image), the first --calibrate images setting λ. Then, per target fidelity
(top-1 agreement with the uncompressed network; no labels needed), it prints the bytes per image
each (cut, method) needs, with a 95 % paired bootstrap interval over images, the head's share of
the network's FLOPs (torch.utils.flop_counter) and the cut's feature elements, and marks the
Pareto front (* : no cut with at most its head FLOPs needs fewer bytes). Below: the BD-rate of
every cut against the image (uniform and rdo-uniform), on bytes per image.

Writes OUT/splits.json (also on stdout with --json), OUT/splits.png, OUT/report/ (the full
report) and OUT/run/ (the experiment: rerun the same command to resume; --new starts over).
Cost on 2 CPU cores with the default methods and QPs: about 9 s of work per image and cut (rdo's
per-channel search is most of it) and 2-3 s per image for the image, two workers sharing the
cores (splits.json says what this run took); a GPU makes the network passes nearly free.
Classification models (fidelity = top-1 agreement).
"""


def register(sub: Any) -> None:
    p = add_command(sub, "splits", "where to cut a network: bytes per image at equal fidelity vs head FLOPs",
                    "Compare split points of a network, and the coded image, by the bytes per image they need at "
                    "equal task fidelity against the compute the head costs the edge device.", SPLITS_EPILOG)
    p.add_argument("--model", required=True, help="torchvision classifier name (see `vcfc models`) or your own, as package.module:builder")
    p.add_argument("--weights", default="DEFAULT", help="weights name, checkpoint path or 'none' (default DEFAULT)")
    p.add_argument("--data", required=True, action="append",
                   help="image folder, ImageNet folder, COCO …; repeat it to pool datasets")
    p.add_argument("--kind", default="auto", choices=KINDS)
    p.add_argument("--limit", type=int, help="first N images of each dataset (the first --calibrate set λ)")
    p.add_argument("--layers", help="comma-separated cuts (presets or module paths) instead of the default choice")
    p.add_argument("--max-flops", type=float, default=0.5, metavar="SHARE",
                   help="default cuts: head FLOPs at most this share of the network (default 0.5)")
    p.add_argument("--max-cuts", type=int, default=3, help="default cuts: at most this many (default 3)")
    p.add_argument("--methods", default="uniform,rdo-uniform,rdo", help="allocations (default uniform,rdo-uniform,rdo)")
    p.add_argument("--codec", default="x265", help="codec of features and image alike (default x265)")
    p.add_argument("--preset", help="encoder preset (default: fast where the codec has it, else the codec's own)")
    p.add_argument("--qps", default="17,22,27,32,37,42", help="base QPs (default 17,22,27,32,37,42)")
    p.add_argument("--targets", default="0.9,0.95,0.98", help="target fidelities (default 0.9,0.95,0.98)")
    p.add_argument("--calibrate", type=int, default=8, metavar="N", help="images that set λ, not evaluated (default 8)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples for the intervals (default 1000)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (default: cuda when available)")
    p.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    p.add_argument("--out", metavar="DIR", help="default: ./splits-MODEL")
    p.add_argument("--new", action="store_true", help="delete an earlier run in OUT and start over")
    p.add_argument("--json", action="store_true", help="print splits.json instead of the table")
    quiet_flag(p)
    p.set_defaults(func=cmd_splits)


FLAGS = {"[coding] qps": "--qps", "[coding] codecs": "--codec", "[coding] presets": "--preset",
         "[allocation] methods": "--methods", "[allocation] profile_images": "--calibrate", "[run] workers": "--workers",
         "[run] device": "--device", "[[datasets]]": "--data", "[[models]]": "--model/--layers",
         "[coding]": "--codec/--preset"}  # the last: what is left of [coding] (a preset, a bit depth)


def _as_flags(message: str) -> str:
    """An experiment-schema error about the experiment this command builds, in its flags' names."""
    message = message.removeprefix("experiment: ")
    for field, flag in FLAGS.items():
        if message.startswith(field):
            return flag + message[len(field):]
    return message


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} expects comma-separated numbers, got {text!r}") from None
    if not values:
        raise InputError(f"{flag} is empty")
    return values


def cmd_splits(args: argparse.Namespace) -> int:
    from vcfc.runners.schema import device_flag

    device_flag(args.device)
    positive("--limit", args.limit)
    positive("--max-cuts", args.max_cuts)
    positive("--bootstrap", args.bootstrap)
    targets = _floats(args.targets, "--targets")
    if not all(0 < t <= 1 for t in targets):
        raise InputError(f"--targets are fidelities in (0, 1], got {args.targets}")
    qps = [int(q) for q in _floats(args.qps, "--qps")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = output_dir(args.out or f"splits-{args.model}")

    from vcfc.runners.models import meta_split
    from vcfc.runners.tasks import get_task
    from vcfc.runners.where_to_split import candidate_cuts, study
    from vcfc.sensitivity.device import resolve_device

    if not get_task(meta_split(args.model, INPUT).task).channel_sensitivity:
        raise InputError(f"{args.model}: vcfc splits compares classifiers (fidelity = top-1 agreement); "
                         f"for other tasks run an experiment with layers = [\"input\", …]")
    layers = [x.strip() for x in args.layers.split(",") if x.strip()] if args.layers else None
    cuts = candidate_cuts(args.model, layers, args.max_flops, args.max_cuts)
    preset = args.preset or ("fast" if "fast" in CODECS.get(args.codec).presets else None)
    try:  # the flags become an experiment, checked by its schema: say which flag, not which field
        exp = study(args.model, args.weights, args.data, args.kind, args.limit, cuts, methods, qps, args.codec,
                    preset, args.calibrate, str(resolve_device(args.device)), workers=args.workers)
    except InputError as exc:
        raise InputError(_as_flags(str(exc))) from None
    if not args.json:
        print(f"{args.model}: cuts {', '.join(c.layer for c in cuts)} and the image; methods {', '.join(methods)}; "
              f"QPs {', '.join(map(str, qps))}; run in {out / 'run'}", file=sys.stderr)
    return _run_and_print(args, exp, cuts, targets, out)


def _run_and_print(args: argparse.Namespace, exp: Any, cuts: list[Any], targets: list[float], out: Path) -> int:
    from vcfc.io import atomic_write, jsonable
    from vcfc.results import plots
    from vcfc.runners.experiment import run_experiment
    from vcfc.runners.rundir import RunDir
    from vcfc.runners.where_to_split import cut_of, summarize, timing, vs_image

    t0 = time.perf_counter()
    result = run_experiment(exp, out / "run", progress=show_progress(args), new=args.new, workers=args.workers)
    wall = time.perf_counter() - t0
    if result.interrupted:
        return 130
    rows = RunDir(out / "run").rows().table()
    if rows.empty or not rows["status"].eq("ok").any():
        raise InputError(f"{out / 'run'}: no successful rows (see the errors in its report)")
    all_cuts = [cut_of(args.model, INPUT), *cuts]
    curves = summarize(rows, all_cuts, targets, n_boot=args.bootstrap)
    bd = vs_image(rows, n_boot=args.bootstrap)
    images = int(rows.loc[rows["status"].eq("ok"), "image_id"].nunique())
    per_cut = timing(rows, cuts)
    summary = {
        "model": args.model, "weights": args.weights, "data": [str(d) for d in args.data], "images": images,
        "calibration_images": exp.allocation.profile_images if exp.allocation.calibrates else 0,
        "codec": args.codec, "preset": exp.coding.specs()[0].checked().preset,
        "qps": exp.coding.qps, "methods": exp.allocation.methods, "targets": targets,
        "cuts": [c.to_dict() for c in all_cuts],
        "curves": [{"layer": c.layer, "allocation": c.allocation, "config": c.config, "points": c.points,
                    "at": {f"{t:g}": vars(a) for t, a in c.at.items()},
                    "vs_image_at": {m: {f"{t:g}": {"change_pct": a.bytes, "ci_low": a.ci_low, "ci_high": a.ci_high,
                                                   "reason": a.reason} for t, a in per.items()}
                                    for m, per in c.vs_image.items()}} for c in curves],
        "vs_image": bd.to_dict("records"),
        "timing": {"wall_s": wall, "grid_s": result.elapsed_s, "s_per_image_per_cut": per_cut,
                   "tasks_run": result.done, "tasks_resumed": result.skipped},
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "splits.json", json.dumps(jsonable(summary), indent=1))
    _plot(plots, curves, all_cuts, targets, out / "splits", summary)
    report = _report(out, args.bootstrap)
    if args.json:
        print(json.dumps(jsonable(summary)))
        return 3 if result.errors else 0
    _print_table(summary, curves, all_cuts, targets)
    _print_at_targets(curves, all_cuts, targets)
    _print_vs_image(bd)
    print(f"\nplot: {out / 'splits.png'}   json: {out / 'splits.json'}   report: {report}")
    print(f"time: {wall:.0f} s in all; per image and cut (all methods and QPs): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in per_cut.items()))
    return 3 if result.errors else 0


def _plot(plots: Any, curves: list[Any], cuts: list[Any], targets: list[float], stem: Path, s: dict) -> None:
    import pandas as pd

    share = {c.layer: c.flops_share for c in cuts}
    rows = [{"layer": c.layer, "allocation": c.allocation, "target": t, "flops_share": share[c.layer],
             "bytes": a.bytes, "ci_low": a.ci_low, "ci_high": a.ci_high, "pareto": a.pareto}
            for c in curves for t, a in c.at.items()]
    fig = plots.plot_split_points(pd.DataFrame(rows), targets,
                                  title=f"{s['model']} ({s['weights']}): where to split — {s['images']} images of "
                                        f"{_names(s['data'])}, {s['codec']} {s['preset']}; input = the coded image; "
                                        f"error bars: 95 % CI")
    plots.save(fig, stem, formats=("png",))
    plots.close(fig)


def _report(out: Path, n_boot: int) -> Path:
    from .cmd_experiment import make_report

    return make_report(out / "run", out / "report", anchor="input:uniform", rate="bytes", n_boot=n_boot)[0]


def _names(paths: list[str]) -> str:
    return " + ".join(Path(p).name for p in paths)


def _bytes_text(a: Any) -> str:
    if not math.isfinite(a.bytes):
        if a.reason and a.reason.startswith("not reached"):  # say how close the finest QP came
            return f"not reached (max {a.reason.split('best ')[-1].rstrip(')')})" if "best" in a.reason else "not reached"
        return "< coarsest QP" if a.reason else "—"
    ci = f"[{a.ci_low:,.0f}, {a.ci_high:,.0f}]" if math.isfinite(a.ci_low) else "[no interval]"
    return f"{a.bytes:,.0f} {ci}{' *' if a.pareto else ''}"


def _print_table(s: dict, curves: list[Any], cuts: list[Any], targets: list[float]) -> None:
    by = {c.layer: c for c in cuts}
    held = f" ({s['calibration_images']} more set λ)" if s["calibration_images"] else ""
    print(f"\n{s['model']} ({s['weights']}) on {_names(s['data'])}: {s['images']} images evaluated{held}, "
          f"{s['codec']} {s['preset']}; bytes per image to reach each "
          f"fidelity (top-1 agreement with the uncompressed network) [95 % CI]; * = Pareto front")
    head = f"{'cut':10s} {'head FLOPs':>10s} {'elements':>17s}  {'method':12s}" + "".join(
        f"{'fidelity ' + format(t, 'g'):>28s}" for t in targets)
    print(head)
    print("-" * len(head))
    order = {c.layer: i for i, c in enumerate(cuts)}
    for c in sorted(curves, key=lambda c: (order.get(c.layer, 99), c.allocation)):
        cut = by[c.layer]
        elements = f"{cut.elements:,} ({cut.element_ratio:.2f}×)"
        print(f"{c.layer:10s} {100 * cut.flops_share:9.1f}% {elements:>17s}  {c.allocation:12s}"
              + "".join(f"{_bytes_text(c.at[t]):>28s}" for t in targets))


def _change_text(a: Any) -> str:
    if not math.isfinite(a.bytes):
        return a.reason or "—"
    ci = f"[{a.ci_low:+.1f}, {a.ci_high:+.1f}]" if math.isfinite(a.ci_low) else "[no interval]"
    bound = {"at most": "≤ ", "at least": "≥ "}.get((a.reason or "").split(":")[0], "")
    return f"{bound}{a.bytes:+.1f} % {ci}"


def _print_at_targets(curves: list[Any], cuts: list[Any], targets: list[float]) -> None:
    order = {c.layer: i for i, c in enumerate(cuts)}
    ours = sorted([c for c in curves if c.vs_image], key=lambda c: (order.get(c.layer, 99), c.allocation))
    for image_method in sorted({m for c in ours for m in c.vs_image}, reverse=True):
        print(f"\nBytes against the image ({image_method}) at each fidelity, paired "
              f"(negative = the features need fewer bytes) [95 % CI]:")
        for c in ours:
            per = c.vs_image.get(image_method, {})
            print(f"  {c.layer:10s} {c.allocation:12s}" + "".join(f"{_change_text(per[t]):>30s}" for t in targets))


def _print_vs_image(bd: Any) -> None:
    if bd is None or len(bd) == 0:
        return
    print("\nBD-rate on bytes per image against the image, over the fidelities both curves reach "
          "(negative = the features need fewer bytes) [95 % CI]:")
    for r in bd.to_dict("records"):
        if r["layer"] == INPUT or r["quality"] != "fidelity":
            continue
        lo, hi = r["bd_rate_ci_low"], r["bd_rate_ci_high"]
        value = "—" if not math.isfinite(r["bd_rate"]) else f"{r['bd_rate']:+.1f} %"
        ci = f"[{lo:+.1f}, {hi:+.1f}]" if math.isfinite(lo) and math.isfinite(hi) else f"({r.get('reason') or 'no interval'})"
        print(f"  {r['layer']:10s} {r['allocation']:12s} vs image {str(r['anchor']).split('/')[-1]:12s} "
              f"{value:>9s} {ci}  n = {int(r['n_images'])}")
