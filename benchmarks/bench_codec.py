"""Codec-core benchmark: rate, feature PSNR, speed, overhead vs bare ffmpeg, layouts at equal PSNR.

    .venv/bin/python benchmarks/bench_codec.py [--quick] [--out bench-out/codec.json]

Tensors: a VGG16-conv1-sized map (64×224×224: conv1+ReLU of a random-init VGG16 on a Kodak
image) and a 4-level FPN pyramid (256 × 200×336 / 100×168 / 50×84 / 25×42: a random-init
Faster R-CNN FPN on a Kodak image at 800×1344). Random weights keep the image's structure,
which is what the codec sees; no task accuracy is claimed here.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

import vcfc
from vcfc.codecs import get_codec
from vcfc.ffmpeg import capabilities, find_ffmpeg
from vcfc.packing.layouts import pack, plan_streams
from vcfc.packing.quantizers import quantize

PRESETS = {"x265": ("ultrafast", "fast", "medium"), "vvenc": ("faster", "fast", "medium")}
QPS = (22, 27, 32, 37)
SHARED = REPO.parent / "shared"


def kodak_image(h: int, w: int):
    import torch
    from PIL import Image

    files = sorted((SHARED / "data" / "kodak").glob("*.png"))
    if files:
        img = Image.open(files[0]).convert("RGB").resize((w, h), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)
    else:  # no shared data: a smooth synthetic picture keeps the benchmark runnable
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        x = torch.from_numpy(np.stack([np.sin(9 * xx) * np.cos(7 * yy), xx, yy]).astype(np.float32))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return ((x - mean) / std)[None]


def make_tensors(quick: bool) -> dict[str, object]:
    import torch
    import torchvision

    torch.manual_seed(0)
    with torch.no_grad():
        vgg = torchvision.models.vgg16(weights=None).features[:2].eval()
        conv1 = vgg(kodak_image(224, 224))[0].numpy()
        h, w = (400, 672) if quick else (800, 1344)
        det = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
        pyr = det.backbone(kodak_image(h, w))
        fpn = {f"p{i + 2}": pyr[str(i)][0].numpy() for i in range(4)}
    return {"vgg16-conv1 64x224x224": conv1, f"fpn p2-p5 256x{h // 4}x{w // 4}": fpn}


def psnr(ref, out) -> float:
    refs = ref if isinstance(ref, dict) else {"x": ref}
    outs = out if isinstance(out, dict) else {"x": out}
    se = sum(float(np.sum((outs[k].astype(np.float64) - refs[k]) ** 2)) for k in refs)
    n = sum(v.size for v in refs.values())
    peak = max(float(v.max()) for v in refs.values()) - min(float(v.min()) for v in refs.values())
    return float("inf") if se == 0 else 10 * np.log10(peak**2 / (se / n))


def elements(x) -> int:
    return sum(v.size for v in x.values()) if isinstance(x, dict) else x.size


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def bare_ffmpeg(codec_name: str, x, bits: int, qp: int, preset: str, layout: str) -> tuple[int, float]:
    """The same quantized frames through one plain ffmpeg call with the same settings: bytes, seconds."""
    backend = get_codec(codec_name)
    arrays = x if isinstance(x, dict) else {"x": x}
    codes = {k: quantize(v, "minmax", bits)[0] for k, v in arrays.items()}
    shapes = {k: v.shape for k, v in codes.items()}
    channels = [(k, c) for k, s in shapes.items() for c in range(s[0])]
    total_bytes, total_s = 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, plan in enumerate(plan_streams(shapes, channels, layout, backend.align)):
            frames = backend.pad_to_min(pack(codes, plan))
            n, h, w = frames.shape
            raw, args = backend.raw_frames(frames, bits), backend.ffmpeg_args(n, h, w, bits, qp, preset)
            src, dst = Path(tmp) / f"in{i}.raw", Path(tmp) / f"out{i}.bin"
            src.write_bytes(raw)
            args = [*args[:-1], str(dst)]  # the output (last argument) to a file, the input from one
            args[args.index("-i") + 1] = str(src)
            cmd = [backend.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
            _, s = timed(subprocess.run, cmd, check=True, capture_output=True)
            total_bytes += dst.stat().st_size
            total_s += s
    return total_bytes, total_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="FPN at half resolution, one preset per codec (also with --overhead-only)")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "codec.json"))
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--overhead-only", action="store_true",
                    help="only the vcfc-vs-bare-ffmpeg comparison, each side timed as the best of --repeats runs")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.overhead_only:
        return overhead_only(args)

    tensors = make_tensors(args.quick)
    for codec in ("x265", "vvenc"):  # warm-up: ffmpeg capability probe and page cache, not timed
        vcfc.decode(vcfc.encode(np.ones((1, 16, 16), np.float32), codec=codec, qp=30))
    rows, overhead, layout_cmp = [], [], []
    for tname, x in tensors.items():
        n = elements(x)
        for codec in ("x265", "vvenc"):
            presets = PRESETS[codec][:1] if args.quick else PRESETS[codec]
            for preset in presets:
                curves: dict[str, tuple[list, list]] = {}
                # Channel-as-frame is compared at the fastest preset only: it costs many frames.
                for layout in ("mosaic", "frames") if preset == presets[0] else ("mosaic",):
                    rates, quals = [], []
                    for qp in QPS:
                        data, enc_s = timed(vcfc.encode, x, codec=codec, qp=qp, preset=preset, bits=args.bits, layout=layout)
                        out, dec_s = timed(vcfc.decode, data)
                        info = vcfc.inspect(data)
                        row = dict(tensor=tname, codec=codec, preset=preset, layout=layout, qp=qp, bytes=len(data),
                                   side_info_bytes=info["side_info_bytes"], bpfe=8 * len(data) / n,
                                   psnr=psnr(x, out), encode_s=enc_s, decode_s=dec_s)
                        rows.append(row)
                        print(f"{tname:28s} {codec:5s} {preset:9s} {layout:7s} qp={qp:2d} {len(data):9d} B "
                              f"bpfe={row['bpfe']:.4f} psnr={row['psnr']:6.2f} enc={enc_s:6.2f}s dec={dec_s:5.2f}s", flush=True)
                        rates.append(len(data))
                        quals.append(row["psnr"])
                        if layout == "mosaic" and (qp in (QPS[0], QPS[-1])):
                            bare_bytes, bare_s = bare_ffmpeg(codec, x, args.bits, qp, preset, layout)
                            overhead.append(dict(tensor=tname, codec=codec, preset=preset, qp=qp, vcfc_bytes=len(data),
                                                 bare_bytes=bare_bytes, bytes_ratio=len(data) / bare_bytes,
                                                 vcfc_encode_s=enc_s, bare_encode_s=bare_s, time_ratio=enc_s / bare_s))
                    curves[layout] = (rates, quals)
                if "frames" not in curves:
                    continue
                layout_cmp.append(dict(tensor=tname, codec=codec, preset=preset,
                                       frames_vs_mosaic_bd_rate_pct=bd_rate(curves["mosaic"], curves["frames"])))

    print_tables(rows, overhead, layout_cmp)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(
        machine=dict(platform=platform.platform(), python=platform.python_version(), cpus=__import__("os").cpu_count()),
        ffmpeg=capabilities(find_ffmpeg())["version"], bits=args.bits,
        rows=rows, overhead=overhead, layouts=layout_cmp), indent=1))
    print(f"\nwrote {args.out}")
    return 0


def overhead_only(args) -> int:
    """Bytes and encode time of vcfc.encode vs one bare ffmpeg call, alternating, best of N each."""
    tensors = make_tensors(args.quick)
    for codec in ("x265", "vvenc"):
        vcfc.decode(vcfc.encode(np.ones((1, 16, 16), np.float32), codec=codec, qp=30))
    rows = []
    for tname, x in tensors.items():
        for codec in ("x265", "vvenc"):
            for preset in PRESETS[codec][:1] if args.quick else PRESETS[codec]:
                for qp in (QPS[0], QPS[-1]):
                    ours, bare = [], []
                    for _ in range(args.repeats):
                        data, s = timed(vcfc.encode, x, codec=codec, qp=qp, preset=preset, bits=args.bits)
                        ours.append(s)
                        b_bytes, b_s = bare_ffmpeg(codec, x, args.bits, qp, preset, "mosaic")
                        bare.append(b_s)
                    rows.append(dict(tensor=tname, codec=codec, preset=preset, qp=qp, vcfc_bytes=len(data), bare_bytes=b_bytes,
                                     bytes_ratio=len(data) / b_bytes, vcfc_encode_s=min(ours), bare_encode_s=min(bare),
                                     time_ratio=min(ours) / min(bare)))
                    print(f"{tname:28s} {codec:5s} {preset:9s} qp={qp:2d} bytes x{rows[-1]['bytes_ratio']:.4f} "
                          f"time {min(ours):6.2f}s vs {min(bare):6.2f}s = x{rows[-1]['time_ratio']:.3f}", flush=True)
    print_tables([], rows, [])
    out = Path(args.out).with_name("codec-overhead.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(repeats=args.repeats, rows=rows), indent=1))
    print(f"wrote {out}")
    return 0


def bd_rate(anchor, test) -> float | None:
    """Rate difference of `test` vs `anchor` at equal feature PSNR (Bjøntegaard, pchip), in percent."""
    import bjontegaard

    try:
        return float(bjontegaard.bd_rate(anchor[0], anchor[1], test[0], test[1], method="pchip", min_overlap=0))
    except Exception as exc:  # noqa: BLE001 - a non-monotone curve is reported, not fatal
        print(f"  BD-rate unavailable: {exc}")
        return None


def print_tables(rows, overhead, layout_cmp) -> None:
    print("\noverhead vs a bare ffmpeg call on the same frames (mosaic layout)")
    print(f"{'tensor':28s} {'codec':5s} {'preset':9s} {'qp':>3s} {'vcfc B':>9s} {'bare B':>9s} {'B ratio':>8s} {'vcfc s':>7s} {'bare s':>7s} {'t ratio':>7s}")
    for o in overhead:
        print(f"{o['tensor']:28s} {o['codec']:5s} {o['preset']:9s} {o['qp']:3d} {o['vcfc_bytes']:9d} {o['bare_bytes']:9d} "
              f"{o['bytes_ratio']:8.4f} {o['vcfc_encode_s']:7.2f} {o['bare_encode_s']:7.2f} {o['time_ratio']:7.3f}")
    print("\nlayouts at equal feature PSNR: BD-rate of channel-as-frame vs mosaic (negative: frames cheaper)")
    for c in layout_cmp:
        v = c["frames_vs_mosaic_bd_rate_pct"]
        print(f"{c['tensor']:28s} {c['codec']:5s} {c['preset']:9s} {'n/a' if v is None else f'{v:+.1f}%'}")


if __name__ == "__main__":
    sys.exit(main())
