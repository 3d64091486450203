"""The `vcfc` command line. Errors are one line on stderr with exit code 2; never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import VcfcError
from .version import __version__

EPILOG = """\
examples:
  vcfc doctor                                    which ffmpeg, which encoders/decoders
  vcfc encode feat.npy feat.vcfc --codec x265 --qp 32
  vcfc encode fpn.safetensors fpn.vcfc --codec vvenc --qp 37 --layout mosaic-level
  vcfc encode feat.npy feat.vcfc --channel-qps qps.txt --quant zscore --bits 10
  vcfc info feat.vcfc --json
  vcfc decode feat.vcfc restored.npy

ffmpeg: the one bundled with imageio-ffmpeg unless --ffmpeg PATH or $VCFC_FFMPEG says otherwise.
"""

ENCODE_EPILOG = """\
IN is a .npy array (C×H×W, 1×C×H×W or H×W) or a .safetensors file of named tensors (e.g. an
FPN pyramid p2..p5). QPs: --qp N gives every channel the same QP; --channel-qps FILE gives one
integer per line, one line per channel (tensors in file order). For --codec jpeg the QP is
100 − JPEG quality (higher = coarser, as for the video codecs); --codec lossless needs no QP.

layouts:  mosaic        channels tiled into one near-square frame (pyramids: one frame for all levels)
          mosaic-level  one mosaic frame per tensor
          frames        one frame per channel (channel-as-frame, as in Hu et al.)
quantizers: minmax (per tensor), minmax-channel, log (heavy-tailed ReLU features), zscore
"""


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_diagnostics()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VcfcError as exc:
        _fail(str(exc))
        return 2
    except KeyboardInterrupt:
        print("vcfc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI promises no tracebacks
        if os.environ.get("VCFC_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set VCFC_DEBUG=1 for a traceback)")
        return 1


def _quiet_diagnostics() -> None:
    """Warnings become one `vcfc: warning:` line each; library log records do not repeat them."""
    import logging
    import warnings

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        print(f"vcfc: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    for name in ("runners", "sensitivity", "results", "packing"):
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vcfc",
        description="Compress deep-network features with x265 / VVenC and measure what it costs the task.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vcfc {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def _ffmpeg_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ffmpeg", metavar="PATH", help="ffmpeg binary to use (default: $VCFC_FFMPEG, else imageio-ffmpeg's)")


def _add_encode(sub) -> None:
    p = sub.add_parser(
        "encode",
        help="features (.npy/.safetensors) → .vcfc bitstream",
        description="Quantize, pack and code features into a self-describing .vcfc file.",
        epilog=ENCODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN", help="features: .npy or .safetensors")
    p.add_argument("output", metavar="OUT.vcfc")
    p.add_argument("--codec", default="x265", choices=["x265", "vvenc", "jpeg", "lossless"], help="default: x265")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--qp", type=int, help="one QP for every channel")
    q.add_argument("--channel-qps", metavar="FILE", help="text file, one integer QP per channel")
    p.add_argument("--quant", default="minmax", choices=["minmax", "minmax-channel", "log", "zscore"], help="default: minmax")
    p.add_argument("--bits", type=int, default=8, choices=[8, 10], help="quantizer bit depth (default 8)")
    p.add_argument("--layout", default="mosaic", choices=["mosaic", "mosaic-level", "frames"], help="default: mosaic")
    p.add_argument("--preset", help="encoder preset (x265: ultrafast..placebo, vvenc: faster..slower)")
    p.add_argument("--reorder", default="none", choices=["none", "similarity"], help="channel order before packing")
    p.add_argument("--input-size", metavar="HxW", help="network input size, recorded for bits per pixel")
    _ffmpeg_flag(p)
    p.set_defaults(func=_cmd_encode)


def _cmd_encode(args: argparse.Namespace) -> int:
    from . import api
    from .errors import InputError
    from .io import load_features, load_qps

    features = load_features(args.input)
    if args.qp is None and args.channel_qps is None and args.codec != "lossless":
        raise InputError(f"--codec {args.codec} needs --qp N or --channel-qps FILE")
    input_size = None
    if args.input_size:
        try:
            h, w = (int(v) for v in args.input_size.lower().split("x"))
            input_size = (h, w)
        except ValueError:
            raise InputError(f"--input-size expects HxW such as 224x224, got {args.input_size!r}") from None
    data = api.encode(
        features,
        codec=args.codec,
        qp=args.qp,
        channel_qps=load_qps(args.channel_qps) if args.channel_qps else None,
        quant=args.quant,
        bits=args.bits,
        layout=args.layout,
        preset=args.preset,
        reorder=args.reorder,
        input_size=input_size,
        ffmpeg=args.ffmpeg,
    )
    _write_bytes(args.output, data)
    info = api.inspect(data)
    print(f"{args.output}: {info['bytes']} bytes ({info['side_info_bytes']} side info), {info['bpfe']:.4f} bits/element")
    return 0


def _add_decode(sub) -> None:
    p = sub.add_parser("decode", help=".vcfc → features (.npy/.safetensors)", description="Decode a .vcfc file to features.")
    p.add_argument("input", metavar="IN.vcfc")
    p.add_argument("output", metavar="OUT", help=".npy (single tensor) or .safetensors")
    _ffmpeg_flag(p)
    p.set_defaults(func=_cmd_decode)


def _cmd_decode(args: argparse.Namespace) -> int:
    from . import api
    from .io import save_features

    features = api.decode(_read_bytes(args.input), ffmpeg=args.ffmpeg)
    save_features(args.output, features)
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a .vcfc file and its rate", description="Describe a .vcfc file: codec, shapes, QPs, honest rate.")
    p.add_argument("input", metavar="IN.vcfc")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from . import api

    info = api.inspect(_read_bytes(args.input))
    if args.json:
        print(json.dumps(info))
        return 0
    qps = sorted({q for v in info["channel_qps"].values() for q in v})
    print(f"file        {args.input}")
    print(f"codec       {info['codec']} (preset {info['preset']}), {info['bits']}-bit, quant {info['quant']}, layout {info['layout']}")
    for name, shape in info["shapes"].items():
        print(f"tensor      {name}: {'×'.join(map(str, shape))} {info['dtypes'][name]}")
    print(f"QPs         {qps[0]}" if len(qps) == 1 else f"QPs         {len(qps)} distinct, {qps[0]}..{qps[-1]}")
    print(f"streams     {len(info['streams'])}")
    print(f"bytes       {info['bytes']} ({info['side_info_bytes']} side info, {info['payload_bytes']} payload)")
    print(f"rate        {info['bpfe']:.4f} bits/element, {info['ratio_to_float32']:.1f}× smaller than float32")
    if "bpp" in info:
        print(f"            {info['bpp']:.4f} bits/input pixel at {info['input_hw'][0]}×{info['input_hw'][1]}")
    return 0


def _add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check ffmpeg and its encoders/decoders", description="Print the ffmpeg vcfc uses and what it can code.")
    _ffmpeg_flag(p)
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    import av

    from .ffmpeg import capabilities, find_ffmpeg

    path = find_ffmpeg(args.ffmpeg)
    caps = capabilities(path)
    print(f"vcfc     {__version__}")
    print(f"ffmpeg   {path}")
    print(f"version  {caps['version']}")
    ok = True
    for kind, names in (("encoders", ("libx265", "libvvenc", "mjpeg")), ("decoders", ("hevc", "vvc"))):
        for n in names:
            have = caps[kind].get(n, False)
            ok &= have
            print(f"{kind[:-1]:8s} {n:9s} {'yes' if have else 'NO'}")
    in_process = set(av.codecs_available)
    print(f"PyAV     {av.__version__}: in-process decoders hevc={'yes' if 'hevc' in in_process else 'NO'} vvc={'yes' if 'vvc' in in_process else 'NO'}")
    if not ok:
        print("some codecs are missing: point vcfc at a fuller ffmpeg with --ffmpeg PATH or VCFC_FFMPEG", file=sys.stderr)
    return 0 if ok else 1


def _read_bytes(path: str) -> bytes:
    from .errors import InputError

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None


def _write_bytes(path: str, data: bytes) -> None:
    from .errors import InputError

    tmp = Path(f"{path}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)  # never leave a half-written .vcfc behind
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None


def _fail(msg: str) -> None:
    print(f"vcfc: error: {msg.splitlines()[0] if msg else 'failed'}", file=sys.stderr)


def _plugin_commands() -> list[Callable]:
    # Each module registers its own subcommands; heavy imports stay inside the command functions.
    from .commands import evaluate, experiment, sensitivity

    return [evaluate.register, sensitivity.register, experiment.register]


COMMANDS: list[Callable] = [_add_encode, _add_decode, _add_info, _add_doctor, *_plugin_commands()]

if __name__ == "__main__":
    sys.exit(main())
