"""How one image's features become a .vcfc file under an evaluation config, and rdo's λ.

Fixed QPs (uniform, a file, a profile-based allocation) are coded directly; per-image allocators
(perimage, rdo, rdo-uniform: vcfc.sensitivity.allocation's source "image") decide the image's QP vector
while coding it, through the function their registry entry names. With layout frames everything
goes through the image's FrameBank, so all the configs of one image share their encodes
(uniform at QP q IS the perimage sweep's noise at q).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import vcfc
from vcfc.bank import FrameBank, PictureBank, make_bank
from vcfc.codecs import CODECS
from vcfc.errors import InputError
from vcfc.picture import IMAGE_LAYOUT
from vcfc.sensitivity.allocation import ALLOCATORS, ImageJob
from vcfc.sensitivity.channel_sweep import ChannelSweep, sweep_function
from vcfc.sensitivity.distances import get_distance
from vcfc.sensitivity.options import RdoSettings, SweepOptions
from vcfc.sensitivity.rdo import calibrate_lambda, grid_qps
from vcfc.spec import CodingSpec

from .splits import Split


class ImageContext:
    """One image of a batch: its features (C,H,W or dict, on the split's device), its size, and
    the frame banks of the specs it is coded with (created on first use)."""

    def __init__(self, features: Any, input_hw: tuple[int, int], ffmpeg: str | None, cores: int = 1) -> None:
        self.features = features
        self.input_hw = input_hw
        self.ffmpeg = ffmpeg
        self.cores = max(1, cores)  # this image's share: parallel QPs in a bank, or one encoder's threads
        self.banks: dict[CodingSpec, FrameBank | PictureBank] = {}

    def cpu(self) -> Any:
        f = self.features
        return {k: v.detach().cpu() for k, v in f.items()} if isinstance(f, dict) else f.detach().cpu()

    def bank(self, spec: CodingSpec) -> FrameBank | PictureBank:
        if spec not in self.banks:
            # single-threaded encoders, several QPs at once: the bitstream is the same as threaded
            self.banks[spec] = make_bank(self.cpu(), spec, ffmpeg=self.ffmpeg, threads=1,
                                         input_size=self.input_hw, workers=self.cores)
        return self.banks[spec]

    def bankable(self, spec: CodingSpec) -> bool:
        """Whether a bank can code this spec: a picture (layout image), or one picture per channel."""
        return spec.layout == IMAGE_LAYOUT or (spec.layout == "frames" and CODECS[spec.codec].frames_separable)


def code_image(split: Split, ctx: ImageContext, cfg: Any) -> tuple[bytes, dict[str, float]]:
    """(the .vcfc bytes, seconds per stage) of one image under ``cfg`` (an EvalConfig with a spec)."""
    spec: CodingSpec = cfg.spec
    alloc = ALLOCATORS.get(cfg.allocation)
    source = alloc.source
    if source == "image" or (spec.uses_qp and ctx.bankable(spec)):
        if not ctx.bankable(spec):
            raise InputError(f"allocation {cfg.allocation} needs --layout frames (or image for the network input) "
                             f"and a codec whose pictures can be re-assembled (got {spec.codec}, {spec.layout})")
        bank = ctx.bank(spec)
        enc0, pack0 = bank.encode_s, bank.pack_s
        quant, bank.quant_s = bank.quant_s, 0.0  # the first row of this bank pays its quantisation
        if source == "image":
            job = ImageJob(ctx.features, split.tail_module, bank, int(cfg.qp), cfg.allocation, dict(cfg.options),
                           functools.partial(_sweep, split, spec=spec, qp=int(cfg.qp)))
            qps = [int(v) for v in alloc.allocate_image(job)]
        else:
            qps = list(cfg.channel_qps) if cfg.channel_qps is not None else int(cfg.qp)
        data = bank.assemble(qps)
        packing = bank.pack_s - pack0
        # the bank's encoder and decoder runs (packing inside them is reported as pack)
        return data, {"quantize": quant, "pack": packing, "encode": max(0.0, bank.encode_s - enc0 - packing)}
    t: dict[str, float] = {}
    qps = cfg.channel_qps
    data = vcfc.encode(ctx.cpu(), qp=None if qps is not None else cfg.qp, channel_qps=list(qps) if qps is not None else None,
                       spec=spec, input_size=ctx.input_hw, ffmpeg=ctx.ffmpeg, threads=ctx.cores, workers=1, timings=t)
    return data, t


_local = threading.local()


def _sweep(split: Split, distance: str, *, spec: CodingSpec, qp: int) -> ChannelSweep:
    """A ChannelSweep over the split's tail, one per thread (its chunk tuner is timing state).

    Cached per (split, distance) so the tuning is paid once: spec and qp only serve the naive
    method's own codec calls, which runs never use (their noise comes from the frame bank)."""
    cache = getattr(_local, "sweeps", None)
    if cache is None:
        cache = _local.sweeps = {}
    key = (id(split), distance)
    if key not in cache:
        dist = get_distance(distance)
        pen = split.penultimate_module() if dist.reads == "penultimate" else None
        fn = sweep_function(dist, split.tail_module, pen)
        cache[key] = ChannelSweep(fn, dist, SweepOptions(device=split.device), spec, qp)
    return cache[key]


def calibrate(split: Split, features: list[Any], spec: CodingSpec, qps: list[int], settings: RdoSettings,
              ffmpeg: str | None = None) -> dict[int, float]:
    """λ per base QP from calibration images' features (C,H,W each): see vcfc.sensitivity.rdo.calibrate_lambda."""
    if not features:
        raise InputError("rdo: no calibration images to set λ")
    images = [(f, split.tail_module, make_bank(f.detach().cpu(), spec, ffmpeg=ffmpeg, workers=2)) for f in features]
    out = {}
    for qp in qps:
        lo, hi = spec.qp_limits
        grid = grid_qps(qp, settings.span, settings.step, (lo, hi))
        out[int(qp)] = calibrate_lambda(images, qp, _neighbour_step(grid, qp), settings, split.device)
    return out


def _neighbour_step(grid: list[int], qp: int) -> int:
    """Half-width of the slope measurement: the grid's spacing around qp (at least 1)."""
    others = [abs(g - qp) for g in grid if g != qp]
    return max(1, min(others)) if others else 1
