"""Screenshot a report.html as a reviewer sees it: headless Chromium at a fixed window width.

    python -m vcfc.results.screenshot RUN/report/report.html --out /tmp/shots [--width 1280]

writes ``full.png`` (the page, trailing blank space cut off) and ``part_01.png``, … (slices of
1500 px, small enough to look at one by one). Needs a Chromium (``apt-get install -y chromium``;
``--chromium PATH`` or $CHROMIUM otherwise). Nothing is fetched: the report is self-contained.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import numpy as np

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None = None) -> str:
    for name in (explicit, os.environ.get("CHROMIUM"), *CANDIDATES):
        if name and (path := shutil.which(name)):
            return path
    raise SystemExit("no Chromium found: apt-get install -y chromium, or pass --chromium PATH")


def screenshot(html: Path, out_dir: Path, width: int = 1280, height: int = 16000, part: int = 1500,
               chromium: str | None = None) -> list[Path]:
    """Render ``html`` at ``width`` px; returns [full.png, part_01.png, …]."""
    out_dir.mkdir(parents=True, exist_ok=True)
    full = out_dir / "full.png"
    with tempfile.TemporaryDirectory() as profile:
        cmd = [find_chromium(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={full}",
               Path(html).resolve().as_uri()]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
    img = matplotlib.image.imread(full)
    ink = np.where((img[..., :3] < 0.98).any(axis=(1, 2)))[0]
    img = img[: int(ink[-1]) + 40 if ink.size else img.shape[0]]
    matplotlib.image.imsave(full, img)
    paths = [full]
    for i, top in enumerate(range(0, img.shape[0], part), 1):
        p = out_dir / f"part_{i:02d}.png"
        matplotlib.image.imsave(p, img[top : top + part])
        paths.append(p)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--out", type=Path, default=Path("shots"))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--chromium")
    args = ap.parse_args(argv)
    for p in screenshot(args.html, args.out, args.width, chromium=args.chromium):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
