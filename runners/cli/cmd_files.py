"""`vcfc encode` / `decode` / `info` / `doctor`: features ↔ .vcfc files, and the codec check."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import vcfc
from vcfc.codecs import CODECS
from vcfc.coding import SKIP
from vcfc.errors import CodecError, FormatError, InputError
from vcfc.ffmpeg import capabilities, find_ffmpeg
from vcfc.io import (
    FEATURE_SUFFIXES,
    PICTURE_SUFFIXES,
    atomic_write,
    load_features,
    load_qps,
    output_file,
    save_features,
)

from .args import StageProgress, add_command, codec_help, coding_flags, ffmpeg_flag, force_flag, parse_hw, spec_from

ENCODE_EPILOG = f"""\
examples:
  vcfc encode feat.npy feat.vcfc --codec x265 --qp 32
  vcfc encode fpn.safetensors fpn.vcfc --codec vvenc --qp 37 --layout mosaic-level
  vcfc encode feat.npy feat.vcfc --channel-qps qps.txt --quant zscore --bits 10 --layout frames
  vcfc encode feat.npy feat.vcfc --codec av1 --qp 32 --input-size 224x224
  vcfc encode photo.png photo.vcfc --layout image --codec x265 --qp 32     # a picture, YUV 4:2:0

IN is a .npy array (C×H×W, 1×C×H×W or H×W; never unpickled) or a .safetensors file of named
tensors (e.g. an FPN pyramid p2..p5); with --layout image, a picture (.png, .jpg, …, or a
uint8 RGB .npy) coded as one colour picture. QPs: --qp N gives every channel the same QP;
--channel-qps FILE gives one integer per line, one line per channel (tensors in file order).

codecs:
{codec_help()}

layouts:  mosaic        channels tiled into one near-square frame (pyramids: one frame for all levels)
          mosaic-level  one mosaic frame per tensor
          frames        one frame per channel (channel-as-frame, as in Hu et al.): per-channel QPs exact
          image         an RGB picture as one colour picture: YUV 4:2:0 BT.601 full range (x265, AV1
                        8-bit, VVenC 10-bit), JFIF 4:2:0 (jpeg), R/G/B 4:4:4 (lossless: exact pixels)
quantizers: minmax (per tensor), minmax-channel, log (heavy-tailed ReLU features), zscore
Progress is shown on stderr for work longer than a few seconds (a terminal only; --quiet: never).
"""

DECODE_EPILOG = """\
examples:
  vcfc decode feat.vcfc restored.npy
  vcfc decode fpn.vcfc restored.safetensors     # a file of several tensors needs .safetensors
  vcfc decode photo.vcfc photo-decoded.png       # a picture (layout image) as an image file

The output has the shape and dtype the features had when encoded (bf16 is kept in .safetensors).
"""

INFO_EPILOG = """\
examples:
  vcfc info feat.vcfc
  vcfc info feat.vcfc --json | python -c "import json,sys; print(json.load(sys.stdin)['bpfe'])"

bpfe = bits per feature element, counting every byte of the file (header and side information
included); bpp = bits per pixel of the network input (when encode got --input-size), or of the
picture itself (layout image).
"""

DOCTOR_EPILOG = """\
examples:
  vcfc doctor
  vcfc doctor --ffmpeg /usr/local/bin/ffmpeg

Exit status 0 when every registered codec can encode and decode, 1 otherwise.
"""


def register(sub: Any) -> None:
    p = add_command(sub, "encode", "features (.npy/.safetensors) → .vcfc bitstream",
                    "Quantize, pack and code features into a self-describing .vcfc file.", ENCODE_EPILOG)
    p.add_argument("input", metavar="IN", help="features: .npy or .safetensors; a picture (.png, .jpg, …) with --layout image")
    p.add_argument("output", metavar="OUT.vcfc")
    force_flag(p)
    q = p.add_mutually_exclusive_group()
    q.add_argument("--qp", type=int, help="one QP for every channel")
    q.add_argument("--channel-qps", metavar="FILE", help="text file, one integer QP per channel")
    coding_flags(p)
    p.add_argument("--input-size", metavar="HxW", help="network input size, recorded for bits per pixel")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    ffmpeg_flag(p)
    p.set_defaults(func=cmd_encode)

    p = add_command(sub, "decode", ".vcfc → features (.npy/.safetensors)", "Decode a .vcfc file to features.", DECODE_EPILOG)
    p.add_argument("input", metavar="IN.vcfc")
    p.add_argument("output", metavar="OUT", help=".npy (single tensor) or .safetensors")
    force_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    ffmpeg_flag(p)
    p.set_defaults(func=cmd_decode)

    p = add_command(sub, "info", "describe a .vcfc file and its rate",
                    "Describe a .vcfc file: codec, shapes, QPs, honest rate.", INFO_EPILOG)
    p.add_argument("input", metavar="IN.vcfc")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_info)

    p = add_command(sub, "doctor", "check ffmpeg and its encoders/decoders",
                    "Print the ffmpeg vcfc uses and, for every registered codec, whether it can encode and decode.",
                    DOCTOR_EPILOG)
    ffmpeg_flag(p)
    p.set_defaults(func=cmd_doctor)


def cmd_encode(args: argparse.Namespace) -> int:
    picture = Path(args.input).suffix.lower() in PICTURE_SUFFIXES
    if picture and args.layout not in (None, "image"):
        raise InputError(f"{args.input} is a picture: it is coded with --layout image, not {args.layout}")
    if picture:
        args.layout = "image"
    spec = spec_from(args)
    if args.qp is None and args.channel_qps is None and spec.uses_qp:
        raise InputError(f"--codec {args.codec} needs --qp N or --channel-qps FILE")
    output_file(args.output, args.force)  # say so before coding, not after
    features = load_features(args.input)
    input_size = parse_hw(args.input_size) if args.input_size else None
    if spec.layout == "image" and input_size is not None:
        raise InputError("--input-size is for features: a picture's own size gives its bits per pixel")
    with StageProgress(args.quiet) as progress:
        data = vcfc.encode(features, qp=args.qp, channel_qps=load_qps(args.channel_qps) if args.channel_qps else None,
                           spec=spec, input_size=input_size, ffmpeg=args.ffmpeg, progress=progress)
    atomic_write(args.output, data)  # never leave a half-written .vcfc behind
    info = vcfc.inspect(data)
    rate = (f"{info['bpp']:.4f} bits/pixel ({info['input_hw'][0]}×{info['input_hw'][1]})" if spec.layout == "image"
            else f"{info['bpfe']:.4f} bits/element")
    print(f"{args.output}: {info['bytes']} bytes ({info['side_info_bytes']} side info), {rate}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    data = _read_bytes(args.input)
    out = Path(args.output)
    if out.suffix not in FEATURE_SUFFIXES and out.suffix.lower() not in PICTURE_SUFFIXES:
        raise InputError(f"{out}: output must end in .npy or .safetensors (a picture: {', '.join(PICTURE_SUFFIXES)})")
    with _about(args.input):
        info = vcfc.inspect(data)
    if out.suffix.lower() in PICTURE_SUFFIXES and info["layout"] != "image":
        raise InputError(f"{out}: {args.input} holds features, not a picture: write .npy or .safetensors")
    output_file(out, args.force)  # say so before decoding, not after
    with StageProgress(args.quiet) as progress:
        with _about(args.input):
            features = vcfc.decode(data, ffmpeg=args.ffmpeg, progress=progress)
    save_features(out, features)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _about(args.input):
        info = vcfc.inspect(_read_bytes(args.input))
    if args.json:
        print(json.dumps(info))
        return 0
    qps = sorted({q for v in info["channel_qps"].values() for q in v})
    print(f"file        {args.input}")
    if "color" in info:  # a picture (layout image)
        c = info["color"]
        h, w = info["input_hw"]
        print(f"codec       {info['codec']} (preset {info['preset']}), layout image: one RGB picture as {c['format']} "
              f"({c['matrix']}, {c['range']} range, {c['chroma']})")
        print(f"picture     {h}×{w}, QP {qps[0]}")
        print(f"bytes       {info['bytes']} ({info['side_info_bytes']} side info, {info['payload_bytes']} payload)")
        print(f"rate        {info['bpp']:.4f} bits/pixel")
        return 0
    print(f"codec       {info['codec']} (preset {info['preset']}), {info['bits']}-bit, quant {info['quant']}, layout {info['layout']}")
    for name, shape in info["shapes"].items():
        print(f"tensor      {name}: {'×'.join(map(str, shape))} {info['dtypes'][name]}")
    coded = [q for q in qps if q != SKIP]
    print("QPs         none (every channel skipped)" if not coded else f"QPs         {coded[0]}" if len(coded) == 1
          else f"QPs         {len(coded)} distinct, {coded[0]}..{coded[-1]}")
    skipped = sum(info["skipped"].values())
    if skipped:
        total = sum(len(v) for v in info["channel_qps"].values())
        print(f"skipped     {skipped} of {total} channels not coded (filled with their mean code)")
    print(f"streams     {len(info['streams'])}")
    print(f"bytes       {info['bytes']} ({info['side_info_bytes']} side info, {info['payload_bytes']} payload)")
    print(f"rate        {info['bpfe']:.4f} bits/element, {info['ratio_to_float32']:.1f}× smaller than float32")
    if "bpp" in info:
        print(f"            {info['bpp']:.4f} bits/input pixel at {info['input_hw'][0]}×{info['input_hw'][1]}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import av  # deferred: PyAV's libraries load only for the commands that decode

    path = find_ffmpeg(args.ffmpeg)
    caps = capabilities(path)
    in_process = set(av.codecs_available)
    print(f"vcfc     {vcfc.__version__}")
    print(f"ffmpeg   {path}")
    print(f"version  {caps['version']}")
    print(f"PyAV     {av.__version__} (decodes in-process)")
    ok = True
    for name, cls in CODECS.items():
        enc = cls.encoder is None or cls.encoder in caps["encoders"]
        dec = cls.decoder is None or cls.decoder in in_process
        ok &= enc and dec
        parts = [f"encoder {cls.encoder:9s} {'yes' if enc else 'NO'}" if cls.encoder else "encoder built in (Pillow)",
                 f"decoder {cls.decoder:9s} {'yes' if dec else 'NO'}" if cls.decoder else ""]
        version = cls.library_version(path) if enc else None
        print(f"codec    {name:9s} {'   '.join(p for p in parts if p)}{f'   ({version})' if version else ''}")
    if not ok:
        print("some codecs are missing: point vcfc at a fuller ffmpeg with --ffmpeg PATH or VCFC_FFMPEG")
    return 0 if ok else 1


@contextmanager
def _about(path: str | Path) -> Iterator[None]:
    """A broken or undecodable file's error names the file."""
    try:
        yield
    except (FormatError, CodecError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
