"""Peak memory of decoding a big tensor: decode peak RSS over the decoded tensor's size.

    .venv/bin/python benchmarks/bench_memory.py [--shape 512x512x512] [--codec x265] [--qp 37]

Encodes a float32 tensor of --shape (C×H×W, default 512×512×512: 512 MiB, one mosaic picture
of ~11585²) once, then in a FRESH process (so nothing of the encode is counted) reads the file
and decodes it, and reports that process's peak RSS (VmHWM, Linux) as a multiple of the
output tensor, with and without the process's baseline (Python + numpy + PyAV imported, before
reading the file). Target (issue 9): peak RSS ≤ 3× the output. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time, json
import numpy as np
import vcfc, av  # imported before the baseline, like a user's process would have them
from pathlib import Path

def hwm():  # peak RSS of this process image (VmHWM; ru_maxrss would include the parent's before exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

base = hwm()
data = Path(sys.argv[1]).read_bytes()
t = time.perf_counter()
out = vcfc.decode(data)
seconds = time.perf_counter() - t
peak = hwm()
print(json.dumps({"baseline_rss": base, "peak_rss": peak, "output_bytes": int(out.nbytes), "file_bytes": len(data),
                  "decode_s": seconds}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="512x512x512", help="C×H×W of the float32 tensor")
    ap.add_argument("--codec", default="x265")
    ap.add_argument("--qp", type=int, default=37)
    ap.add_argument("--layout", default="mosaic")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "memory.json"))
    args = ap.parse_args()

    import numpy as np

    import vcfc

    c, h, w = (int(v) for v in args.shape.lower().split("x"))
    rng = np.random.default_rng(0)
    # smooth-ish, ReLU-like maps: cheap to make at this size, codable like real features
    x = rng.standard_normal((c, h, w), dtype=np.float32).cumsum(axis=2)
    x *= np.float32(1 / np.sqrt(w))
    np.maximum(x, 0, out=x)
    t = time.perf_counter()
    data = vcfc.encode(x, codec=args.codec, qp=args.qp, layout=args.layout)
    encode_s = time.perf_counter() - t
    del x
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "big.vcfc"
        f.write_bytes(data)
        r = subprocess.run([sys.executable, "-c", CHILD, str(f)], capture_output=True, text=True, check=True,
                           cwd=REPO)
    m = json.loads(r.stdout.strip().splitlines()[-1])
    m.update(shape=[c, h, w], codec=args.codec, qp=args.qp, layout=args.layout, encode_s=encode_s,
             peak_over_output=m["peak_rss"] / m["output_bytes"],
             extra_over_output=(m["peak_rss"] - m["baseline_rss"]) / m["output_bytes"])
    mib = 2**20
    print("| tensor | file | decode s | baseline RSS | peak RSS | peak / output | (peak − baseline) / output |\n|---|---|---|---|---|---|---|")
    print(f"| {c}×{h}×{w} float32 ({m['output_bytes'] / mib:.0f} MiB), {args.codec} QP {args.qp} {args.layout} | "
          f"{m['file_bytes'] / mib:.1f} MiB | {m['decode_s']:.1f} | {m['baseline_rss'] / mib:.0f} MiB | "
          f"{m['peak_rss'] / mib:.0f} MiB | {m['peak_over_output']:.2f}× | {m['extra_over_output']:.2f}× |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(m, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
