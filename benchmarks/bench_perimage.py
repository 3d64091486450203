"""Per-image allocation cost vs a uniform encode, per image: perimage (exact and Taylor sweep),
rdo-uniform and rdo, on real features.

    .venv/bin/python benchmarks/bench_perimage.py [--device cpu|cuda] [--images 8] [--qp 32]

For each case (squeezenet1_1 fire3, mobilenet_v2 block3; real weights and ImageNet images from
../shared when present) and each image: the uniform encode + decode at --qp (layout frames, the
reference cost), then each allocator from scratch on a fresh frame bank (its codec work
included), the final file assembled and decoded. Reported per method: seconds per image, the
ratio to uniform, encoder runs and pictures coded per image, and the time split codec / tail.
Images run one after another (one encoder thread each), so the ratios compare work, not overlap;
`--parallel N` also times N images at once (threads), which is how `vcfc run` overlaps codec work.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

from vcfc.io import bundled

SHARED = Path(os.environ.get("VCFC_SHARED", REPO.parent / "shared"))

CASES = [("squeezenet1_1", "fire3", "DEFAULT"), ("squeezenet1_1", "pool3", "DEFAULT"),
         ("mobilenet_v2", "block3", "IMAGENET1K_V1")]


def cpu_seconds() -> float:
    """This process's CPU time and its finished children's (the encoders and decoders ffmpeg ran)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def torch_home() -> None:
    if (SHARED / "weights").is_dir() and "TORCH_HOME" not in os.environ:
        home = Path(tempfile.mkdtemp(prefix="vcfc-bench-th-"))
        (home / "hub" / "checkpoints").mkdir(parents=True)
        for f in (SHARED / "weights").glob("*.pth"):
            shutil.copy(f, home / "hub" / "checkpoints" / f.name)
        os.environ["TORCH_HOME"] = str(home)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--qp", type=int, default=32)
    ap.add_argument("--qp-range", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=0, help="also time this many images at once")
    ap.add_argument("--cases", default=",".join(f"{m}:{layer}" for m, layer, _ in CASES),
                    help="model:layer,… (default: all three)")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "perimage.json"))
    args = ap.parse_args()
    torch_home()

    import vcfc
    from vcfc.bank import FrameBank
    from vcfc.runners.datasets import open_dataset
    from vcfc.runners.image_coding import calibrate
    from vcfc.runners.models import split
    from vcfc.sensitivity.channel_sweep import ChannelSweep
    from vcfc.sensitivity.device import resolve_device
    from vcfc.sensitivity.distances import get_distance
    from vcfc.sensitivity.options import RdoSettings, SweepOptions
    from vcfc.sensitivity.perimage import perimage_qps
    from vcfc.sensitivity.rdo import rdo_qps, settings_for
    from vcfc.sensitivity.rdo_fast import rdo_fast_qps
    from vcfc.spec import CodingSpec

    dev = resolve_device(args.device)
    spec = CodingSpec("x265", preset="fast", layout="frames").checked()
    results = []
    wanted = {tuple(c.split(":")) for c in args.cases.split(",")}
    for model, layer, weights in [c for c in CASES if c[:2] in wanted]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                sp = split(model, at=layer, weights=weights, device=dev)
            except vcfc.InputError:
                sp, weights = split(model, at=layer, weights=None, device=dev), "none"
        root = SHARED / "data" / "imagenet-sample"
        ds = open_dataset(root if root.is_dir() else bundled("kodak"), transform=sp.transforms,
                          limit=args.images + 2)
        with torch.no_grad():
            feats = [sp.head(s.image[None].to(dev))[0] for s in ds]
        calib, feats = feats[:2], feats[2:]
        pen = sp.penultimate_module()
        sweeps = {m: ChannelSweep(pen, get_distance("penultimate"), SweepOptions(device=dev, method=m), spec, args.qp)
                  for m in ("exact", "taylor")}
        kl_sweep = ChannelSweep(sp.tail_module, get_distance("kl"), SweepOptions(device=dev), spec, args.qp)
        settings = RdoSettings(lam=0.0)
        lam = calibrate(sp, calib, spec, [args.qp], settings)[args.qp]

        def uniform(f):
            data = vcfc.encode(f.cpu(), qp=args.qp, spec=spec, threads=1)
            vcfc.decode(data)
            return None

        def perimage(method):
            def run(f):
                bank = FrameBank(f.cpu(), spec, threads=1)
                with torch.no_grad():
                    q, _ = perimage_qps(f, bank, args.qp, args.qp_range, sweeps[method])
                vcfc.decode(bank.assemble([int(v) for v in q]))
                return bank
            return run

        def rdo(allocation):
            search = rdo_fast_qps if allocation == "rdo-fast" else rdo_qps

            def run(f):
                bank = FrameBank(f.cpu(), spec, threads=1)
                with torch.no_grad():
                    r = search(f, tail=sp.tail_module, bank=bank, qp=args.qp,
                               settings=settings_for(allocation, {"lam": lam}), sweep=kl_sweep)
                vcfc.decode(bank.assemble([int(v) for v in r.qps]))
                return bank
            return run

        methods = {"uniform": uniform, "perimage (exact)": perimage("exact"), "perimage (taylor)": perimage("taylor"),
                   **{m: rdo(m) for m in ("rdo-uniform", "rdo", "rdo+skip", "rdo-fast")}}
        for f in feats[:1]:  # warm-up: kernels, ffmpeg's first start, chunk tuning
            for fn in methods.values():
                fn(f)
        row = {"model": model, "layer": layer, "weights": weights, "device": str(dev), "images": len(feats),
               "qp": args.qp, "lambda": lam, "methods": {}}
        for name, fn in methods.items():
            times, cpu, encodes, pictures, codec_s = [], [], [], [], []
            for f in feats:
                sync()
                t, c = time.perf_counter(), cpu_seconds()
                bank = fn(f)
                sync()
                times.append(time.perf_counter() - t)
                cpu.append(cpu_seconds() - c)
                if bank is not None:
                    encodes.append(bank.encodes)
                    pictures.append(bank.encoded_pictures)
                    codec_s.append(bank.encode_s)
            m = {"s_per_image": sum(times) / len(times), "cpu_s_per_image": sum(cpu) / len(cpu),
                 "encodes_per_image": sum(encodes) / len(encodes) if encodes else 1.0,
                 "pictures_per_image": sum(pictures) / len(pictures) if pictures else float(feats[0].shape[0]),
                 "codec_s_per_image": sum(codec_s) / len(codec_s) if codec_s else None}
            if args.parallel > 1:
                t = time.perf_counter()
                with ThreadPoolExecutor(args.parallel) as pool:
                    list(pool.map(fn, feats))
                m["parallel_s_per_image"] = (time.perf_counter() - t) / len(feats)
            row["methods"][name] = m
        base = row["methods"]["uniform"]
        for m in row["methods"].values():
            m["ratio_to_uniform"] = m["s_per_image"] / base["s_per_image"]
            m["cpu_ratio_to_uniform"] = m["cpu_s_per_image"] / base["cpu_s_per_image"]
            if "parallel_s_per_image" in m:
                m["parallel_ratio_to_uniform"] = m["parallel_s_per_image"] / base["parallel_s_per_image"]
        results.append(row)
        print(f"\n{model} {layer} ({weights}), {len(feats)} images, QP {args.qp}, device {dev}, λ {lam:.3g}")
        print(f"{'method':<20}{'s/image':>9}{'× uniform':>11}{'CPU s':>8}{'CPU ×':>7}{'encodes':>9}{'pictures':>10}{'codec s':>9}"
              + (f"{'parallel ×':>12}" if args.parallel > 1 else ""))
        for name, m in row["methods"].items():
            codec = f"{m['codec_s_per_image']:.3f}" if m["codec_s_per_image"] is not None else "—"
            par = f"{m['parallel_ratio_to_uniform']:>12.2f}" if "parallel_ratio_to_uniform" in m else ""
            print(f"{name:<20}{m['s_per_image']:>9.3f}{m['ratio_to_uniform']:>11.2f}{m['cpu_s_per_image']:>8.2f}"
                  f"{m['cpu_ratio_to_uniform']:>7.2f}{m['encodes_per_image']:>9.1f}"
                  f"{m['pictures_per_image']:>10.0f}{codec:>9}{par}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cases": results, "args": vars(args), "cpus": os.cpu_count()}, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
