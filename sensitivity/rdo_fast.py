"""rdo-fast: rdo's closed-loop search at a bounded codec cost (about two uniform encodes per image).

rdo codes every channel at every grid QP (five encodes at span 6, step 3) before it judges any
candidate. rdo-fast codes only what its search can use:
  1. every channel at the base QP: the uniform encode itself;
  2. this image's one-channel KL sensitivities to that noise (no coding): on a CPU, for many
     channels, estimated by a Taylor sweep (one batched forward + backward of a few probes); the
     order in which channels are tried for skipping is estimated from it (no second sweep);
  3. the least sensitive half of the channels at base + step, the most sensitive quarter at
     base − step: 3/4 of an encode's pictures;
  4. the same stages as rdo (the linear rule's shape, the skip ladder, greedy group moves), each
     channel taking only the levels it was coded at, plus skip (no coding at all).
Every candidate is still judged by KL(out_ref‖out) + λ·bits of the real file; λ is rdo's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcfc.bank import FrameBank
from vcfc.coding import SKIP
from vcfc.errors import InputError

from .allocation import ImageJob, normalize
from .channel_sweep import ChannelSweep, as_batch
from .options import RdoSettings
from .rdo import SWEEP_DISTANCE, RdoResult, _Search, refine, settings_for

COARSE_SHARE = 1 / 2  # of the channels, the least sensitive: also coded at base + step
FINE_SHARE = 1 / 4    # the most sensitive: also coded at base − step
TAYLOR_PROBES = 8     # output-space probes of the sensitivity estimate; its rank correlation with
                      # the exact sweep: 0.73–0.83 (fire3), 0.55–0.82 (block3), 4 images each
TAYLOR_FROM = 4 * TAYLOR_PROBES  # channels above which the estimate is cheaper than the exact sweep


def coded_sets(sens: np.ndarray, qp: int, step: int, limits: tuple[int, int]) -> dict[int, np.ndarray]:
    """Which channels rdo-fast codes at which QP: all at ``qp``, the least sensitive half at
    qp + step and the most sensitive quarter at qp − step (where the codec's range allows)."""
    c = sens.size
    order = np.argsort(sens, kind="stable")  # least sensitive first
    out = {qp: np.arange(c)}
    n_coarse, n_fine = int(round(c * COARSE_SHARE)), int(round(c * FINE_SHARE))
    if qp + step <= limits[1] and n_coarse:
        out[qp + step] = np.sort(order[:n_coarse])
    if qp - step >= limits[0] and n_fine:
        out[qp - step] = np.sort(order[c - n_fine:])
    return out


def sensitivities(sweep: ChannelSweep, x: Tensor, xn: Tensor) -> np.ndarray:
    """(C,) one-channel sensitivities of x to the noise of xn (both (1,C,H,W)).

    On a CPU, for tensors of more than TAYLOR_FROM channels and a differentiable distance: the
    Taylor estimate (TAYLOR_PROBES probes, seed 0 for every image, so the same whatever the
    worker count), 1/2–1/4 of an exact sweep's cost there (fire3: 0.45 s vs 1.6 s). Its ranking
    only orders the candidates, every one of which is then judged exactly. Elsewhere the exact
    sweep: the cheaper with few channels (block3's 24), and on a GPU it costs milliseconds."""
    if sweep.device.type != "cpu" or x.shape[1] <= TAYLOR_FROM or not sweep.distance.differentiable:
        with torch.no_grad():
            return sweep(x, xn).numpy()
    return sweep.taylor(x, xn, TAYLOR_PROBES, seed=0).numpy()  # gradients on inside, where needed


def channel_mse(x: Tensor, y: Tensor) -> np.ndarray:
    """(C,) mean squared difference per channel of two (1,C,H,W) tensors, float64."""
    return ((x[0] - y[0]).double() ** 2).mean(dim=(1, 2)).cpu().numpy()


def skip_order(sens: np.ndarray, mse_base: np.ndarray, mse_fill: np.ndarray) -> np.ndarray:
    """Channels by the estimated task cost of skipping them, cheapest first, without a second sweep:
    a channel's KL grows about in proportion to its error's energy, so its sensitivity to the base
    QP's noise scaled by (fill error ÷ base error). An error-free channel costs 0 if its fill is
    exact too, else it goes last."""
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.where(mse_base > 0, sens * mse_fill / mse_base, np.where(mse_fill > 0, np.inf, 0.0))
    return np.argsort(est, kind="stable")


def rdo_fast_qps(x: Any, *, tail: Callable[[Tensor], Tensor], bank: FrameBank, qp: int, settings: RdoSettings,
                 sweep: ChannelSweep, max_batch: int = 32) -> RdoResult:
    """The QP vector (SKIP for channels left out) of one image (C×H×W): see the module docstring."""
    s = settings.checked()
    if not bank.q.single:
        raise InputError("rdo-fast takes one feature tensor (not a dict of tensors)")
    bank.ensure({qp: None})  # the uniform encode
    xb = as_batch(x, sweep.device, sweep.dtype)
    base = as_batch(bank.reconstruct(qp), sweep.device, sweep.dtype)
    raw = sensitivities(sweep, xb, base)
    sens = normalize(raw)
    coded = coded_sets(sens, qp, s.step, bank.spec.qp_limits)
    search = _Search(x, tail, bank, sorted(coded), s, sweep.device, sweep.dtype, max_batch, coded=coded, sweep=sweep)
    k0 = search.grid.index(qp)
    cur = np.full(sens.size, k0, np.int64)
    cost = search.costs([cur])[0]
    history = [cost[0]]
    order = None
    if search.grid[-1] == SKIP:  # the skip level (every channel at its fill value) is the search's last
        order = skip_order(raw, channel_mse(xb, base), channel_mse(xb, search.levels[-1:]))
    cur, cost = refine(search, cur, cost, k0, sens, sweep, history, skip_order=order)
    return RdoResult(search.qps(cur), cost[0], cost[1], cost[2], search.evaluated, history)


def allocate_job(job: ImageJob) -> np.ndarray:
    """The `rdo-fast` allocator of a run (registered in vcfc.sensitivity.allocation)."""
    settings = settings_for(job.allocation, job.options)
    return rdo_fast_qps(job.features, tail=job.tail, bank=job.bank, qp=job.qp, settings=settings,
                        sweep=job.sweep(SWEEP_DISTANCE)).qps
