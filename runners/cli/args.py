"""Argument parsing shared by the commands: one-line errors, and option choices taken from the
registries (codecs, quantizers, layouts, reorders, allocations, distances), never typed twice."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any, NoReturn

from vcfc.codecs import CODECS
from vcfc.errors import InputError
from vcfc.packing.layouts import LAYOUTS
from vcfc.packing.quantizers import BIT_DEPTHS, QUANTIZERS
from vcfc.packing.reorder import REORDERS
from vcfc.spec import CodingSpec

EXIT_CODES = """\
exit status: 0 done; 2 bad input or usage (nothing run); 3 finished but some images or tasks
failed (they are recorded; see the errors); 1 internal error; 130 interrupted (rerun to resume).
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to read more, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vcfc: error: {message} (see `{self.prog} --help`)\n")


def add_command(sub: Any, name: str, help: str, description: str, epilog: str = "") -> Parser:
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def quiet_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bar (one is drawn only on a terminal: never into a redirected log)")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars for people: on a terminal, unless --quiet."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def force_flag(p: argparse.ArgumentParser, what: str = "an existing output file") -> None:
    p.add_argument("--force", action="store_true", help=f"replace {what} (without it: exit 2, nothing done)")


def own_network_flags(p: argparse.ArgumentParser) -> None:
    """--task / --transform: what an experiment file's [[models]] task / transform say."""
    p.add_argument("--task", choices=("classification", "segmentation"),
                   help="your own network (--model package.module:builder): what its output is "
                        "(default: from the module's type, a classifier unless a torchvision FCN/DeepLabV3/R-CNN)")
    p.add_argument("--transform", metavar="PKG.MOD:FN",
                   help="your own preprocessing: a callable from a PIL image to the input tensor "
                        "(default: the builder's, else ImageNet's resize 256 / crop 224 / normalise)")


def model_options(args: argparse.Namespace) -> dict[str, str]:
    """split()'s task / transform from the flags, checked (one line, before any work)."""
    from vcfc.runners.custom_models import check_model_options

    task, transform = getattr(args, "task", None), getattr(args, "transform", None)
    check_model_options(args.model, task, transform, where="--")
    return {k: v for k, v in (("task", task), ("transform", transform)) if v is not None}


def ffmpeg_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ffmpeg", metavar="PATH", help="ffmpeg binary to use (default: $VCFC_FFMPEG, else imageio-ffmpeg's)")


def codec_help() -> str:
    return "\n".join(f"  {name:9s} {cls.description} (QP {cls.qp_range[0]}..{cls.qp_range[1]}"
                     f"{'' if cls.uses_qp else ', ignored'}; presets {', '.join(cls.presets)}; default {cls.default_preset})"
                     for name, cls in CODECS.items())


def coding_flags(p: argparse.ArgumentParser, *, default_layout: str = "mosaic", allow_none: bool = False) -> None:
    """--codec --preset --quant --bits --layout --reorder (a CodingSpec)."""
    codecs = (["none"] if allow_none else []) + list(CODECS)
    p.add_argument("--codec", default="x265", choices=codecs,
                   help="default: x265" + ("; none = no coding (the reference run)" if allow_none else ""))
    p.add_argument("--preset", help="encoder preset (default: the codec's; see the list below)")
    p.add_argument("--quant", default="minmax", choices=QUANTIZERS, help="default: minmax")
    p.add_argument("--bits", type=int, default=8, choices=BIT_DEPTHS, help="quantizer bit depth (default 8)")
    p.add_argument("--layout", choices=LAYOUTS, help=f"default: {default_layout} (image: an RGB picture, "
                                                     f"e.g. the network input; --layer input codes that way)")
    p.set_defaults(default_layout=default_layout)
    p.add_argument("--reorder", default="none", choices=REORDERS, help="channel order before packing (default none)")


def spec_from(args: argparse.Namespace) -> CodingSpec | None:
    """The CodingSpec the flags describe (None for --codec none), validated."""
    if args.codec == "none":
        return None
    return CodingSpec(codec=args.codec, quant=args.quant, bits=args.bits, layout=args.layout or args.default_layout,
                      preset=args.preset, reorder=args.reorder).checked()


def parse_hw(text: str, flag: str = "--input-size") -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"{flag} expects HxW such as 224x224, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise InputError(f"{flag} expects a positive size, got {text!r}")
    return h, w


def positive(flag: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{flag} must be positive, got {value}")


class StageProgress:
    """`progress(stage, done, total)` for the API: one stderr line redrawn every second with the
    stage and the elapsed time (so a single 60-s picture is not silent), shown only on a
    terminal, only after a couple of seconds (short work stays quiet), never with --quiet."""

    def __init__(self, quiet: bool = False, after_s: float = 2.0) -> None:
        self.on = not quiet and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.after_s = after_s
        self.state = "starting"
        self.shown = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True) if self.on else None

    def __enter__(self) -> StageProgress:
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.shown:
            print(file=sys.stderr)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.state = f"{stage} {done}/{total} streams" if total > 1 or stage in ("encode", "decode") else stage

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            elapsed = time.monotonic() - self.t0
            if elapsed >= self.after_s:
                self.shown = True
                print(f"\rvcfc: {self.state}, {elapsed:.0f} s   ", end="", file=sys.stderr, flush=True)
