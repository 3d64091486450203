"""Every example in `vcfc --help` and each command's --help parses as typed; the file commands'
examples (encode, decode, info) run as typed on small inputs of the names they use."""

from __future__ import annotations

import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vcfc.runners.cli import build_parser


def examples() -> list[tuple[str, list[str]]]:
    """(command, argv) of every `vcfc …` line of every help text, continuation lines joined,
    comments and pipes dropped."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    texts = [("vcfc", parser.epilog or "")] + [(name, p.epilog or "") for name, p in sub.choices.items()]
    out = []
    for name, text in texts:
        joined = text.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if not line.startswith("vcfc "):
                continue
            for part in line.split("&&"):
                part = part.split("|")[0].split("#")[0].strip()
                words = shlex.split(part)
                if name == "vcfc" and len(words) > 2:  # the overview's lines end in a description
                    words = part.split("   ")[0].split()
                if "<image>" not in part:
                    out.append((name, words[1:]))
    return out


@pytest.mark.parametrize("name, argv", examples(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_help_example_parses(name, argv):
    args = build_parser().parse_args(argv)
    assert callable(args.func)


def test_the_file_examples_run_as_typed(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "feat.npy", rng.random((6, 12, 12), dtype=np.float32))
    from safetensors.numpy import save_file

    save_file({"p2": rng.random((4, 16, 16), dtype=np.float32), "p3": rng.random((4, 8, 8), dtype=np.float32)},
              str(tmp_path / "fpn.safetensors"))
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    (tmp_path / "qps.txt").write_text("".join(f"{30 + c}\n" for c in range(6)))
    ran = 0
    for name, argv in examples():
        if name not in ("encode", "decode", "info") or argv[0] not in ("encode", "decode", "info"):
            continue
        if argv[0] == "encode" and (tmp_path / argv[2]).exists():
            argv = [*argv, "--force"]  # the same output name in two examples
        r = subprocess.run([sys.executable, "-m", "vcfc", *argv], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, (argv, r.stderr)
        ran += 1
    assert ran >= 9
