"""The `vcfc` command line. Errors are one line on stderr with exit code 2; never a traceback.

Each module here registers its own subcommands. They import the heavy layers (torch, models,
datasets) inside the command functions, not at the top: `vcfc info` / `encode` / `decode` on a
.npy would otherwise pay torch's import (measured on the 2-core dev machine: `vcfc --help` 0.46 s
this way, 3.5 s with torch imported at start-up); the top level imports only the registries,
which are torch-free.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from vcfc.errors import VcfcError
from vcfc.ffmpeg import terminate_children
from vcfc.version import __version__

from . import cmd_eval, cmd_experiment, cmd_files, cmd_sensitivity, cmd_splits
from .args import EXIT_CODES, Parser

EPILOG = f"""\
examples:
  vcfc doctor                                    which ffmpeg, which encoders/decoders
  vcfc encode feat.npy feat.vcfc --codec x265 --qp 32
  vcfc info feat.vcfc --json
  vcfc decode feat.vcfc restored.npy
  vcfc eval --model squeezenet1_1 --layer fire3 --data ../shared/data/imagenet-sample --qp 32 --allocation perimage
  vcfc run experiment.toml --out runs/exp1 && vcfc report runs/exp1
  vcfc splits --model squeezenet1_1 --data ../shared/data/imagenet-sample --limit 40   where to cut
  vcfc demo                                      the main job on bundled images, in a few minutes

Each command has --help with examples. ffmpeg: imageio-ffmpeg's bundled binary unless --ffmpeg
PATH or $VCFC_FFMPEG says otherwise. $TORCH_HOME: where torchvision finds weights offline
(`make weights` fills .cache/torch from ../shared). $VCFC_DEBUG=1: tracebacks for internal errors.

{EXIT_CODES}"""

COMMANDS = (cmd_files, cmd_eval, cmd_sensitivity, cmd_experiment, cmd_splits)


def build_parser() -> Parser:
    parser = Parser(prog="vcfc", description="Compress deep-network features with video codecs and measure what it costs the task.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vcfc {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_diagnostics()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = _sigterm_as_interrupt()
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
    except Exception as exc:
        if os.environ.get("VCFC_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set VCFC_DEBUG=1 for a traceback)")
        return 1
    finally:
        terminate_children()  # whatever happened, no encoder outlives the command
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt():
    """`kill`, batch schedulers: SIGTERM is handled like Ctrl-C (children stopped, rows kept)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _quiet_diagnostics() -> None:
    """Warnings become one `vcfc: warning:` line each; library log records do not repeat them."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"vcfc: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    for name in ("vcfc.runners", "vcfc.sensitivity", "vcfc.results", "vcfc.packing"):
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False


def _fail(msg: str) -> None:
    print(f"vcfc: error: {msg.splitlines()[0] if msg else 'failed'}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
