"""Per-image channel sweeps: batched exact, naive (Algorithm 1 as written) and first-order Taylor.

All take `fn` (features (B,C,H,W) -> output used by the distance: the penultimate output or the
full tail output), the clean features x (1,C,H,W) and, except naive, their codec round trip xn.
They return a (C,) float64 tensor of distances to the reference fn(x), on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from vcfc.spec import CodingSpec

from .noise import naive_channel_roundtrip
from .tail_graphs import LinearHead, linear_head

Fn = Callable[[Tensor], Tensor]
Dist = Callable[[Tensor, Tensor], Tensor]


def chunk_size(x: Tensor, max_batch: int, max_bytes: int | None, activation_factor: float = 12.0) -> int:
    """Variants per forward pass: at most max_batch, and at most max_bytes / (bytes per variant).

    Bytes per variant are estimated as activation_factor × the feature tensor's size (early-layer
    tails keep a few maps of that order alive at once; measured peak on CUDA is reported by the
    benchmark)."""
    if max_bytes is None:
        return max(1, max_batch)
    per = activation_factor * x[0].numel() * x.element_size()
    return int(max(1, min(max_batch, max_bytes // max(per, 1))))


def _variants(x: Tensor, xn: Tensor, idx: Tensor) -> Tensor:
    fmt = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 else torch.contiguous_format
    # A fresh tensor every time: .contiguous() of a one-variant expand would alias x itself.
    b = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=fmt)
    b.copy_(x.expand(len(idx), *x.shape[1:]))
    b[torch.arange(len(idx), device=x.device), idx] = xn[0, idx]
    return b


class ChunkTuner:
    """Picks the variants-per-pass that is fastest on this machine by timing real sweep chunks.

    On CPUs, big batches fall out of cache and run slower per variant than small ones (measured:
    squeezenet1_1 tail, 2 cores: 2.1 ms/variant at 8, 3.9 at 32), so the right size is found by
    trying sizes 1, 2, 4, … on the first chunks of the sweep (no work is wasted: those chunks are
    part of the sweep) and keeping the fastest per variant."""

    def __init__(self, max_batch: int) -> None:
        self.candidates = [b for b in (2, 4, 8, 16, 32, 64, 128) if b <= max_batch] or [max_batch]
        self.times: dict[int, float] = {}
        self.seen: set[int] = set()

    def next_size(self) -> int:
        for b in self.candidates:
            if b not in self.times:
                return b
        return self.best

    @property
    def best(self) -> int:
        return min(self.times, key=self.times.get) if self.times else self.candidates[-1]

    def record(self, size: int, seconds: float, n: int) -> None:
        if size not in self.seen:
            # The first pass at a new batch shape pays for kernel/primitive creation: not timed.
            self.seen.add(size)
            return
        if size not in self.times and n == size:
            self.times[size] = seconds / n
            # Stop growing once a size is clearly slower than the best so far.
            if len(self.times) >= 2 and self.times[size] > 1.3 * min(self.times.values()):
                self.candidates = [b for b in self.candidates if b <= size]


@torch.no_grad()
def sweep_exact(fn: Fn, x: Tensor, xn: Tensor, dist: Dist, chunk: int | ChunkTuner,
                linear: LinearHead | None = None) -> Tensor:
    """Every channel replaced by its round trip, `chunk` variants per forward pass (or as many
    as a ChunkTuner finds fastest).

    linear: run fn as rest(conv(x) + conv_nobias(δ_i)) -- one conv(x) for all variants."""
    c = x.shape[1]
    ref = fn(x)
    out = torch.empty(c, dtype=torch.float64)
    if linear is not None:
        base = linear.conv(x)
        delta = (xn - x)[0]
    tuner = chunk if isinstance(chunk, ChunkTuner) else None
    s = 0
    while s < c:
        size = tuner.next_size() if tuner else chunk
        idx = torch.arange(s, min(c, s + size), device=x.device)
        t0 = time.perf_counter()
        if linear is None:
            y = fn(_variants(x, xn, idx))
        else:
            y = linear.rest(base + linear.delta(delta[idx], idx))
        out[s : s + len(idx)] = dist(ref, y).double().cpu()
        if tuner:
            tuner.record(size, time.perf_counter() - t0, len(idx))
        s += len(idx)
    return out


@torch.no_grad()
def sweep_naive(fn: Fn, x: Tensor, dist: Dist, qp: int, spec: CodingSpec,
                channels: list[int] | None = None) -> Tensor:
    """Algorithm 1 as written: per channel, code that channel alone (one ffmpeg run), decode,
    put it back, one batch-1 forward. `channels` limits the sweep (others are NaN)."""
    c = x.shape[1]
    ref = fn(x)
    out = torch.full((c,), float("nan"), dtype=torch.float64)
    for i in range(c) if channels is None else channels:
        v = x.clone()
        v[0, i] = naive_channel_roundtrip(x, i, qp, spec).to(x.device, x.dtype)
        out[i] = float(dist(ref, fn(v))[0])
    return out


def sweep_taylor(fn: Fn, x: Tensor, xn: Tensor, dist: Dist, probes: int = 16, chunk: int = 16,
                 distance: str = "mse", seed: int = 0) -> Tensor:
    """Gradient-based estimate, no per-channel forward passes.

    probes = 0: the plain first-order term S_i ≈ ½ g_i·δ_i, g = ∂d/∂x' at x' = xn (all channels
      noisy), δ = xn − x: one backward pass. (At x' = x the gradient of an MSE/KL is zero, hence
      the noisy point.) Cross terms between channels make it a weak ranking.
    probes = K > 0 (default): linearise the network at x (J = ∂fn/∂x) and estimate the quadratic
      term d(x + δ_i) ≈ ‖J δ_i‖²/D (MSE; KL: ½ δ_iᵀJᵀ F J δ_i with the softmax Fisher F) with K
      random output-space probes v (E[v vᵀ] = I or F): S_i ≈ mean_k (v_kᵀ J δ_i)² · scale.
      One batched forward+backward over K copies of x (in chunks of `chunk`).
    """
    delta = (xn - x)[0]
    with torch.no_grad():
        ref = fn(x)
    if probes <= 0:
        xp = xn.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            d = dist(ref, fn(xp)).sum()
            (g,) = torch.autograd.grad(d, xp)
        return (0.5 * (g[0] * delta).flatten(1).sum(1)).double().cpu()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    acc = torch.zeros(x.shape[1], dtype=torch.float64)
    per_sample = ref[0].numel()
    for s in range(0, probes, max(1, chunk)):
        k = min(chunk, probes - s)
        xp = x.detach().expand(k, *x.shape[1:]).clone().requires_grad_(True)
        with torch.enable_grad():
            y = fn(xp)
            if distance == "kl":
                # v = onehot(c) − p with c ~ p has covariance F = diag(p) − p pᵀ (per position)
                p = torch.softmax(ref.float(), dim=1).expand_as(y)
                flat = p.movedim(1, -1).reshape(-1, p.shape[1]).cpu()
                c = torch.multinomial(flat, 1, generator=gen).squeeze(1)
                onehot = torch.nn.functional.one_hot(c, p.shape[1]).to(p.dtype)
                v = (onehot.reshape(*p.movedim(1, -1).shape).movedim(-1, 1).to(y.device) - p).to(y.dtype)
                scale = 0.5 / (per_sample / y.shape[1])      # ½, averaged over positions
            else:
                v = torch.randn(y.shape, generator=gen).to(y.device, y.dtype)
                scale = 1.0 / per_sample                     # mean over output elements
            (g,) = torch.autograd.grad((y * v).sum(), xp)
        proj = (g * delta.unsqueeze(0)).flatten(2).sum(2)    # (k, C): v_kᵀ J δ_i
        acc += (proj.double() ** 2).sum(0).cpu() * scale
    return acc / probes


def pick_linear(fn: Fn, x: Tensor, xn: Tensor, dist: Dist, chunk: int, mode: str) -> LinearHead | None:
    """mode on|off|auto. auto: time <=16 variants both ways (after a warm-up) and keep the
    trick only if it is faster and agrees to 1e-4 relative."""
    if mode == "off":
        return None
    lin = linear_head(fn)
    if lin is None or mode == "on":
        return lin
    n = min(chunk, x.shape[1], 16)        # small: the calibration must stay cheap next to the sweep
    _one_chunk(fn, x, xn, dist, n, None)  # warm-up: allocator, kernel selection
    times = []
    for use in (None, lin):
        t0 = time.perf_counter()
        r = _one_chunk(fn, x, xn, dist, n, use)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0, r))
    (t_plain, r_plain), (t_lin, r_lin) = times
    close = torch.allclose(r_lin, r_plain, rtol=1e-4, atol=1e-12 + 1e-6 * float(r_plain.abs().max()))
    return lin if close and t_lin < t_plain else None


@torch.no_grad()
def _one_chunk(fn: Fn, x: Tensor, xn: Tensor, dist: Dist, n: int, lin: LinearHead | None) -> Tensor:
    idx = torch.arange(n, device=x.device)
    ref = fn(x)
    if lin is None:
        y = fn(_variants(x, xn, idx))
    else:
        y = lin.rest(lin.conv(x) + lin.delta((xn - x)[0, idx], idx))
    return dist(ref, y).double().cpu()
