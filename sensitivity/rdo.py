"""Closed-loop rate–distortion search per image: argmin D_task + λ·R over QP vectors.

The encoder runs the tail anyway (Hu et al.'s setting), so it can look at what each candidate
coding does to the task output. D is measured through the tail on the JOINTLY decoded features
(every channel at its candidate QP at once), R is the size of the real .vcfc file of the
candidate (every byte), in bits per feature element. One λ for all images: images that need
bits get them. Candidates come from a frame bank (layout frames): the tensor is coded once per
grid QP and any QP vector is then assembled from those pictures, so a candidate costs one
batched tail pass, not an encode.

Search, per image: (1) every uniform QP of the grid; unless uniform_only: (2) the linear rule's
shape on this image's own KL sensitivities, snapped to the grid, at the best uniform QP;
(3) with tool "skip": the n channels whose replacement by their fill value moves KL least are
not coded, for n on a ladder up to half the channels; (4) greedy moves: channels in groups of
similar sensitivity step one grid QP up or down (with "skip", one step past the coarsest QP is
"not coded"), or a whole group is skipped; the best move of a round kept while it lowers D + λR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcfc.bank import FrameBank
from vcfc.coding import SKIP
from vcfc.errors import InputError
from vcfc.results.metrics import kl_rows

from .allocation import RDO_OPTIONS, ImageJob, normalize
from .channel_sweep import ChannelSweep, as_batch
from .options import RdoSettings


def grid_qps(qp: int, span: int, step: int, limits: tuple[int, int]) -> list[int]:
    """The QPs a search may use around base ``qp``: multiples of ``step`` within qp ± span, and qp.
    A grid anchored at 0 (not at qp) lets searches at different base QPs share coded pictures."""
    lo, hi = limits
    return sorted({g for g in range(qp - span, qp + span + 1) if g % step == 0 and lo <= g <= hi} | {qp})


def distortion(ref: Tensor, out: Tensor, settings: RdoSettings) -> Tensor:
    """(B,) task distortion of outputs ``out`` against the reference output ``ref`` (1, K)."""
    d = kl_rows(ref, out)
    if settings.distortion == "kl-flip":
        d = d + settings.flip_penalty * (out.argmax(1) != ref.argmax(1)).double()
    return d


@dataclass
class RdoResult:
    qps: np.ndarray            # chosen QP per channel
    cost: float                # D + λ·R
    distortion: float
    bpfe: float
    candidates: int            # QP vectors evaluated through the tail
    history: list[float] = field(default_factory=list)  # best cost after each stage/round


class _Search:
    """Candidates as per-channel indices into the levels (the grid's QPs, then SKIP with tool
    skip); costs cached by index vector."""

    def __init__(self, x: Tensor, tail: Callable[[Tensor], Tensor], bank: FrameBank, grid: list[int],
                 settings: RdoSettings, device: torch.device, dtype: torch.dtype, max_batch: int,
                 coded: dict[int, np.ndarray] | None = None, sweep: ChannelSweep | None = None) -> None:
        """coded: per grid QP the channels coded at it (a lazy search); None: every channel at every QP.
        sweep: the image's ChannelSweep; on the CPU candidates then go through its channels-last copy of
        the tail (the same function, about twice as fast there)."""
        self.bank, self.s = bank, settings
        self.channels_last = sweep is not None and sweep.fast and sweep.fn is tail
        self.tail = sweep.sweep_fn if self.channels_last else tail
        self.grid = grid + ([SKIP] if "skip" in settings.tool_set and not settings.uniform_only else [])
        self.max_batch = max_batch
        c = sum(s[0] for s in bank.q.shapes.values())
        # (K, C): which channel may take which level; (K, C, H, W): the channels as decoded there
        self.available = np.ones((len(self.grid), c), bool)
        if coded is None:
            bank.ensure({g: None for g in grid})
            vectors = list(self.grid)
        else:
            names = [n for n in bank.q.shapes]
            bank.ensure({g: [(names[0], int(ch)) for ch in chans] for g, chans in coded.items()})
            fallback = next(g for g, chans in coded.items() if len(chans) == c)  # a QP every channel has
            vectors = []
            for k, g in enumerate(self.grid):
                if g != SKIP:
                    self.available[k] = np.isin(np.arange(c), coded.get(g, []))
                vectors.append(g if g == SKIP else np.where(self.available[k], g, fallback).tolist())
        self.levels = torch.stack([as_batch(bank.reconstruct(v), device, dtype)[0] for v in vectors])
        self.x = as_batch(x, device, dtype)
        with torch.no_grad():  # the reference through the same function as the candidates
            self.ref = self.tail(self.x.contiguous(memory_format=torch.channels_last) if self.channels_last else self.x)
        self.elements = bank.q.elements
        self.cache: dict[bytes, tuple[float, float, float]] = {}
        self.evaluated = 0

    def qps(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.grid)[idx]

    def allowed(self, cand: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """``cand`` with every channel whose level is not coded put back to ``cur``'s."""
        ok = self.available[cand, np.arange(cand.size)]
        return np.where(ok, cand, cur)

    def costs(self, cands: list[np.ndarray]) -> list[tuple[float, float, float]]:
        """(cost, distortion, bpfe) per candidate index vector."""
        todo = [c for c in {c.tobytes(): c for c in cands}.values() if c.tobytes() not in self.cache]
        c_idx = torch.arange(self.levels.shape[1], device=self.levels.device)
        for start in range(0, len(todo), self.max_batch):
            chunk = todo[start : start + self.max_batch]
            idx = torch.as_tensor(np.stack(chunk), device=self.levels.device)
            batch = self.levels[idx, c_idx]
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                d = distortion(self.ref, self.tail(batch), self.s).cpu().numpy()
            for cand, dist in zip(chunk, d):
                bpfe = 8.0 * self.bank.size([int(v) for v in self.qps(cand)]) / self.elements
                self.cache[cand.tobytes()] = (float(dist) + self.s.lam * bpfe, float(dist), bpfe)
            self.evaluated += len(chunk)
        return [self.cache[c.tobytes()] for c in cands]

    def best(self, cands: list[np.ndarray]) -> tuple[np.ndarray, tuple[float, float, float]]:
        costs = self.costs(cands)
        k = int(np.argmin([c[0] for c in costs]))
        return cands[k], costs[k]


def rdo_qps(x: Any, *, tail: Callable[[Tensor], Tensor], bank: FrameBank, qp: int, settings: RdoSettings,
            sweep: ChannelSweep | None = None, max_batch: int = 32) -> RdoResult:
    """The QP vector of one image (C×H×W) minimising D + λ·R (see the module docstring).

    sweep: a ChannelSweep over the tail with the KL distance, for the per-channel stages (not
    needed with uniform_only).
    """
    s = settings.checked()
    if not bank.q.single:
        raise InputError("rdo takes one feature tensor (not a dict of tensors)")
    grid = grid_qps(qp, s.span, s.step, bank.spec.qp_limits)
    device = sweep.device if sweep is not None else _device_of(tail)
    dtype = sweep.dtype if sweep is not None else torch.float32
    search = _Search(x, tail, bank, grid, s, device, dtype, max_batch, sweep=sweep)
    c = search.levels.shape[1]
    uniform = [np.full(c, k, np.int64) for k in range(len(grid))]
    cur, cost = search.best(uniform)
    history = [cost[0]]
    if not s.uniform_only and len(search.grid) > 1:
        if sweep is None:
            raise InputError("rdo: per-channel search needs a sweep (ChannelSweep over the tail, distance kl)")
        k0 = int(cur[0])
        sens = normalize(sweep(search.x, search.levels[k0 : k0 + 1]).numpy())
        cur, cost = refine(search, cur, cost, k0, sens, sweep, history)
    return RdoResult(search.qps(cur), cost[0], cost[1], cost[2], search.evaluated, history)


Cost = tuple[float, float, float]


def refine(search: _Search, cur: np.ndarray, cost: Cost, k0: int, sens: np.ndarray, sweep: ChannelSweep,
           history: list[float], skip_order: np.ndarray | None = None) -> tuple[np.ndarray, Cost]:
    """The per-channel stages from the uniform candidate at level k0 (sens: this image's
    normalised one-channel sensitivities to that level's noise): the linear rule's shape, the
    skip ladder, then greedy group moves; only levels a channel has been coded at are taken.
    skip_order: channels by what skipping them costs, cheapest first (None: measured by a
    one-channel sweep of the fill values)."""
    s, c = search.s, cur.size
    n_qps = len(search.grid) - (search.grid[-1] == SKIP)
    top = len(search.grid) - 1  # the coarsest level (SKIP with tool skip)
    skip = top if search.grid[-1] == SKIP else None

    def step(cands: list[np.ndarray], cur: np.ndarray, cost: Cost) -> tuple[np.ndarray, Cost, bool]:
        """The best of ``cands`` (each limited to coded levels) if it lowers the cost, and whether it did."""
        cands = [m for m in (search.allowed(m, cur) for m in cands) if not np.array_equal(m, cur)]
        if cands:
            cand, ccost = search.best(cands)
            if ccost[0] < cost[0] - 1e-12:
                return cand, ccost, True
        return cur, cost, False

    # the linear rule's shape on this image's own sensitivities, in whole grid steps
    shaped = [np.clip(k0 - np.floor(r * sens + 0.5).astype(np.int64), 0, n_qps - 1) for r in (1, 2, 3)]
    shaped += [np.clip(v + 1, 0, n_qps - 1) for v in shaped]
    cur, cost, _ = step(shaped, cur, cost)
    history.append(cost[0])
    if skip is not None:  # the channels whose fill value costs the task least, not coded
        order = skip_order if skip_order is not None else np.argsort(
            sweep(search.x, search.levels[skip : skip + 1]).numpy(), kind="stable")
        ladder = sorted({max(1, (c * k) // 32) for k in range(1, 17)})
        skipped = []
        for n in ladder:
            m = cur.copy()
            m[order[:n]] = skip
            skipped.append(m)
        cur, cost, _ = step(skipped, cur, cost)
        history.append(cost[0])
    groups = _groups(sens, s.groups)
    for _ in range(s.rounds):
        moves = []
        for g in groups:
            for d in (-1, 1):
                m = cur.copy()
                m[g] = np.clip(m[g] + d, 0, top)
                moves.append(m)
            if skip is not None:
                m = cur.copy()
                m[g] = skip
                moves.append(m)
        cur, cost, improved = step(moves, cur, cost)
        if not improved:
            break
        history.append(cost[0])
    return cur, cost


SWEEP_DISTANCE = "kl"  # the per-channel stages group channels by what they do to rdo's own objective
# the search's knobs a configuration may set besides λ
SETTING_KEYS = tuple(k for k in RDO_OPTIONS if k != "lam")


def settings_for(allocation: str, options: dict[str, Any]) -> RdoSettings:
    """RdoSettings of a configuration: its options (λ required), whether it is rdo-uniform, and
    the tools its name switches on ("rdo+skip": the search may also leave channels uncoded)."""
    if options.get("lam") is None:
        raise InputError("rdo needs λ: give --lambda, or let it be calibrated")
    base, _, tools = allocation.partition("+")
    if base == "rdo-fast":  # skipping costs no coding: always on in the cost-bounded search
        tools = "+".join(sorted({"skip", *filter(None, tools.split("+"))}))
    return RdoSettings(lam=float(options["lam"]), uniform_only=base == "rdo-uniform", tools=tools,
                       **{k: options[k] for k in SETTING_KEYS if options.get(k) is not None}).checked()


def allocate_job(job: ImageJob) -> np.ndarray:
    """The `rdo` and `rdo-uniform` allocators of a run (registered in vcfc.sensitivity.allocation)."""
    settings = settings_for(job.allocation, job.options)
    # rdo-uniform too: its candidates then go through the same function as rdo's (on a CPU the
    # sweep's channels-last copy of the tail), so its costs compare exactly with rdo's
    sweep = job.sweep(SWEEP_DISTANCE)
    return rdo_qps(job.features, tail=job.tail, bank=job.bank, qp=job.qp, settings=settings, sweep=sweep).qps


def _device_of(fn: Callable[[Tensor], Tensor]) -> torch.device:
    """Where a module's parameters live (the candidates go there); CPU for plain callables."""
    params = getattr(fn, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


def _groups(sens: np.ndarray, n: int) -> list[np.ndarray]:
    """Channel indices in ``n`` groups of similar sensitivity (by rank), least sensitive first."""
    order = np.argsort(sens, kind="stable")
    return [g for g in np.array_split(order, min(n, len(order))) if len(g)]


def calibrate_lambda(images: list[tuple[Any, Callable[[Tensor], Tensor], FrameBank]], qp: int, step: int,
                     settings: RdoSettings, device: torch.device | None = None) -> float:
    """λ at base ``qp``: minus the slope of the mean uniform distortion–rate curve between qp − step
    and qp + step, over calibration images (x, tail, bank). The search at this λ then lands near
    the uniform QP's rate, so rdo's points sit beside uniform's on the rate axis."""
    device = device or torch.device("cpu")
    lo, hi = images[0][2].spec.qp_limits
    qa, qb = max(lo, qp - step), min(hi, qp + step)
    d = {qa: [], qb: []}
    r = {qa: [], qb: []}
    for x, tail, bank in images:
        xb = as_batch(x, device, torch.float32)
        with torch.no_grad():
            ref = tail(xb)
            for q in (qa, qb):
                out = tail(as_batch(bank.reconstruct(q), device, torch.float32))
                d[q].append(float(distortion(ref, out, settings)[0]))
                r[q].append(8.0 * bank.size(q) / bank.q.elements)
    dd = np.mean(d[qb]) - np.mean(d[qa])
    dr = np.mean(r[qa]) - np.mean(r[qb])
    return float(max(dd / dr, 1e-12)) if dr > 0 else 1e-12
