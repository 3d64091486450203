"""Does coding a channel at half resolution add to rdo+skip? (issue 18's `half` tool, measured
before building it into the container.)

    .venv/bin/python benchmarks/study_half_resolution.py [--images 24] [--cases squeezenet1_1:fire3,mobilenet_v2:block3]

Per image and base QP: rdo+skip as the product runs it, then greedy rounds over its sensitivity
groups in which a group of coded channels may instead be coded at half size (2×2 mean, min-max
8-bit of the half-size tensor, x265 at the channel's QP or one grid step finer, bilinear back to
full size, `align_corners=False`), every candidate judged by KL + λ·bits with the half pictures'
bytes, their stream prefix and a one-bit-per-channel flag counted. λ is set on the first 16
images (held out) as `vcfc run` sets it. Reported: BD-rate of bytes of rdo+skip+half against
rdo+skip at equal top-1 fidelity and KL (dB), 95 % paired-bootstrap intervals, and channels
halved / skipped per image. A study, not a product path: the half pictures are not in a .vcfc file.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_perimage import SHARED, torch_home

REPO = Path(__file__).resolve().parents[1]
QPS = {"fire3": [20, 24, 28, 32, 36], "pool3": [20, 24, 28, 32, 36], "block3": [27, 30, 33, 36, 39]}
WEIGHTS = {"squeezenet1_1": "DEFAULT", "mobilenet_v2": "IMAGENET1K_V1"}
CALIBRATION = 16


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24, help="images evaluated (after the 16 that set λ)")
    ap.add_argument("--cases", default="squeezenet1_1:fire3,mobilenet_v2:block3")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "half-resolution.json"))
    args = ap.parse_args()
    torch_home()

    from vcfc.bank import FrameBank
    from vcfc.coding import SKIP
    from vcfc.results.metrics import kl_rows
    from vcfc.runners.datasets import open_dataset
    from vcfc.runners.image_coding import calibrate
    from vcfc.runners.models import split
    from vcfc.sensitivity.allocation import normalize
    from vcfc.sensitivity.channel_sweep import ChannelSweep, as_batch
    from vcfc.sensitivity.distances import get_distance
    from vcfc.sensitivity.options import RdoSettings, SweepOptions
    from vcfc.sensitivity.rdo import _groups, rdo_qps, settings_for
    from vcfc.spec import CodingSpec

    spec = CodingSpec("x265", preset="fast", layout="frames").checked()
    cpu = torch.device("cpu")
    report = []
    for case in args.cases.split(","):
        model, layer = case.split(":")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sp = split(model, at=layer, weights=WEIGHTS.get(model, "DEFAULT"))
        ds = open_dataset(SHARED / "data" / "imagenet-sample", transform=sp.transforms, limit=CALIBRATION + args.images)
        with torch.no_grad():
            feats = [sp.head(s.image[None])[0] for s in ds]
        tail, qps = sp.tail_module.eval(), QPS.get(layer, [22, 27, 32, 37])
        lams = calibrate(sp, feats[:CALIBRATION], spec, qps, RdoSettings(lam=0.0))
        rows = []
        for qp in qps:
            settings = settings_for("rdo+skip", {"lam": lams[qp]})
            sweep = ChannelSweep(tail, get_distance("kl"), SweepOptions(device="cpu"), spec, qp)
            for i, x in enumerate(feats[CALIBRATION:]):
                c, h, w = x.shape
                bank = FrameBank(x, spec, threads=1)
                start = rdo_qps(x, tail=tail, bank=bank, qp=qp, settings=settings, sweep=sweep)
                half = FrameBank(F.avg_pool2d(x[None], 2, ceil_mode=True)[0], spec, threads=1)
                name = next(iter(bank.q.shapes))
                with torch.no_grad():
                    ref = tail(x[None])

                def build(qv: np.ndarray, halved: np.ndarray) -> tuple[torch.Tensor, int]:
                    """The features decoded and the bytes: full-size channels from the bank's file,
                    halved ones from their own pictures, upsampled."""
                    full = np.where(halved, SKIP, qv).tolist()
                    rec = torch.as_tensor(np.asarray(bank.reconstruct(full))).clone()
                    size = bank.size(full)
                    by_qp: dict[int, list[int]] = {}
                    for ch in np.flatnonzero(halved):
                        by_qp.setdefault(int(qv[ch]), []).append(int(ch))
                    for q, chans in by_qp.items():
                        half.ensure({q: [(name, ch) for ch in chans]})
                        small = torch.as_tensor(np.asarray(half.reconstruct(q)))
                        up = F.interpolate(small[None], scale_factor=2, mode="bilinear", align_corners=False)[0, :, :h, :w]
                        rec[chans] = up[chans]
                        prefix = next(v for k, v in half.prefix.items() if k[0] == q)
                        size += sum(len(half.pictures[(q, name, ch)]) for ch in chans) + len(prefix)
                    if by_qp:
                        size += (c + 7) // 8  # which channels are halved
                    return rec, size

                cache: dict[bytes, tuple[float, tuple[int, float, float]]] = {}

                def costs(states: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[float, tuple[int, float, float]]]:
                    todo = [s for s in states if s[0].tobytes() + s[1].tobytes() not in cache]
                    if todo:
                        recs, sizes = zip(*[build(*s) for s in todo])
                        with torch.no_grad():
                            out = tail(torch.stack(recs))
                        for s, kl, size, o in zip(todo, kl_rows(ref, out).numpy(), sizes, out):
                            cache[s[0].tobytes() + s[1].tobytes()] = (
                                float(kl) + lams[qp] * 8 * size / x.numel(), (size, float(kl), float(o.argmax() == ref.argmax())))
                    return [cache[s[0].tobytes() + s[1].tobytes()] for s in states]

                cur = (np.asarray(start.qps, np.int64), np.zeros(c, bool))
                cost = first = costs([cur])[0]
                with torch.no_grad():
                    sens = normalize(sweep(as_batch(x, cpu), as_batch(bank.reconstruct(qp), cpu)).numpy())
                lo, hi = spec.qp_limits
                for _ in range(settings.rounds):
                    moves = []
                    for g in _groups(sens, settings.groups):
                        g = g[cur[0][g] != SKIP]
                        if not len(g):
                            continue
                        for dq in (0, -settings.step):
                            q, hv = cur[0].copy(), cur[1].copy()
                            q[g], hv[g] = np.clip(q[g] + dq, lo, hi), True
                            moves.append((q, hv))
                        if cur[1][g].any():
                            hv = cur[1].copy()
                            hv[g] = False
                            moves.append((cur[0].copy(), hv))
                    scored = costs(moves)
                    k = int(np.argmin([m[0] for m in scored]))
                    if scored[k][0] >= cost[0] - 1e-12:
                        break
                    cur, cost = moves[k], scored[k]
                rows.append({"qp": qp, "image": i, "rdo+skip": first[1], "rdo+skip+half": cost[1],
                             "halved": int(cur[1].sum()), "skipped": int((cur[0] == SKIP).sum())})
            print(f"{model} {layer} QP {qp}: halved {np.mean([r['halved'] for r in rows if r['qp'] == qp]):.1f} "
                  f"of {feats[0].shape[0]} channels per image", flush=True)
        n = len(feats) - CALIBRATION
        arr = {m: np.full((3, n, len(qps)), np.nan) for m in ("rdo+skip", "rdo+skip+half")}
        for r in rows:
            for m in arr:
                arr[m][:, r["image"], qps.index(r["qp"])] = r[m]
        case_out = {"model": model, "layer": layer, "images": n, "qps": qps, "lambdas": lams, "rows": rows}
        bd = bd_rates(arr["rdo+skip"], arr["rdo+skip+half"], f"{model} {layer}, n = {n}: rdo+skip+half vs rdo+skip")
        case_out.update({f"bd_{quality}": v for quality, v in bd.items()})
        report.append(case_out)
    write_report(args.out, report, args)
    return 0


def bd_rates(anchor: np.ndarray, test: np.ndarray, what: str) -> dict[str, list]:
    """BD-rates of bytes of ``test`` against ``anchor`` (each [bytes, KL, top-1 agreement] ×
    images × QPs) at equal top-1 fidelity and at equal KL (dB), with their 95 % intervals; printed."""
    from vcfc.results.bdrate import bd_rate_bootstrap

    out = {}
    for quality, k, of_mean in (("fidelity", 2, None), ("kl_db", 1, lambda m: -10 * np.log10(m))):
        b = bd_rate_bootstrap(anchor[0], anchor[k], test[0], test[k], quality_of_mean=of_mean)
        out[quality] = [b.value, b.ci_low, b.ci_high, b.reason]
        print(f"{what} at equal {quality}: {b.value:+.1f} % [{b.ci_low:+.1f}, {b.ci_high:+.1f}]"
              + (f" ({b.reason})" if b.reason else ""), flush=True)
    return out


def write_report(path: str, cases: list[dict], args: argparse.Namespace) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"cases": cases, "args": vars(args)}, indent=1, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
