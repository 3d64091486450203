"""Does clipping the quantiser's range per image pay? (issue 18's optional `clip` tool, measured
before building it.)

    .venv/bin/python benchmarks/study_clipping.py [--images 40] [--cases squeezenet1_1:fire3,mobilenet_v2:block3]

Per image: the features clipped above at their own p-th percentile (p = 99.999, 99.99, 99.9),
then coded as usual (8-bit min-max of the clipped tensor, which is exactly a clipping quantiser,
x265 fast, layout frames, one QP for every channel), decoded, through the tail. Reported: BD-rate
of bytes against plain min-max at equal top-1 fidelity and KL (dB), 95 % paired-bootstrap
intervals. The first 16 images are skipped (the protocol's calibration images).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_perimage import SHARED, torch_home
from study_half_resolution import CALIBRATION, QPS, WEIGHTS, bd_rates, write_report

REPO = Path(__file__).resolve().parents[1]
PERCENTILES = [99.999, 99.99, 99.9]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--cases", default="squeezenet1_1:fire3,mobilenet_v2:block3")
    ap.add_argument("--out", default=str(REPO / "bench-out" / "clipping.json"))
    args = ap.parse_args()
    torch_home()

    import vcfc
    from vcfc.results.metrics import kl_rows
    from vcfc.runners.datasets import open_dataset
    from vcfc.runners.models import split
    from vcfc.spec import CodingSpec

    spec = CodingSpec("x265", preset="fast", layout="frames").checked()
    report = []
    for case in args.cases.split(","):
        model, layer = case.split(":")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sp = split(model, at=layer, weights=WEIGHTS.get(model, "DEFAULT"))
        samples = list(open_dataset(SHARED / "data" / "imagenet-sample", transform=sp.transforms,
                                    limit=CALIBRATION + args.images))[CALIBRATION:]
        qps = QPS.get(layer, [22, 27, 32, 37])
        variants = [None, *PERCENTILES]
        # [variant, (bytes, KL, top-1 agreement), image, QP]
        res = np.full((len(variants), 3, len(samples), len(qps)), np.nan)
        for i, s in enumerate(samples):
            with torch.no_grad():
                x = sp.head(s.image[None])[0]
                ref = sp.tail_module(x[None])
            xn = x.numpy()
            for a, p in enumerate(variants):
                xc = xn if p is None else np.clip(xn, xn.min(), np.percentile(xn, p)).astype(np.float32)
                for j, qp in enumerate(qps):
                    data = vcfc.encode(xc, qp=qp, spec=spec, threads=1)
                    with torch.no_grad():
                        out = sp.tail_module(torch.as_tensor(vcfc.decode(data))[None])
                    res[a, :, i, j] = (len(data), float(kl_rows(ref, out)[0]), float(out.argmax() == ref.argmax()))
        case_out = {"model": model, "layer": layer, "images": len(samples), "qps": qps, "bd": {}}
        for a, p in enumerate(PERCENTILES, 1):
            bd = bd_rates(res[0], res[a], f"{model} {layer}, n = {len(samples)}: clipped at p{p} vs min-max")
            case_out["bd"].update({f"p{p}/{quality}": v for quality, v in bd.items()})
        report.append(case_out)
    write_report(args.out, report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
