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

from .graph import LinearHead, linear_head
from .noise import CodecSpec, naive_channel_roundtrip

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
    b = x.expand(len(idx), *x.shape[1:]).clone()
    b[torch.arange(len(idx), device=x.device), idx] = xn[0, idx]
    return b


@torch.no_grad()
def sweep_exact(fn: Fn, x: Tensor, xn: Tensor, dist: Dist, chunk: int,
                linear: LinearHead | None = None) -> Tensor:
    """Every channel replaced by its round trip, `chunk` variants per forward pass.

    linear: run fn as rest(conv(x) + conv_nobias(δ_i)) -- one conv(x) for all variants."""
    c = x.shape[1]
    ref = fn(x)
    out = torch.empty(c, dtype=torch.float64)
    if linear is not None:
        base = linear.conv(x)
        delta = (xn - x)[0]
    for s in range(0, c, chunk):
        idx = torch.arange(s, min(c, s + chunk), device=x.device)
        if linear is None:
            y = fn(_variants(x, xn, idx))
        else:
            y = linear.rest(base + linear.delta(delta[idx], idx))
        out[s : s + len(idx)] = dist(ref, y).double().cpu()
    return out


@torch.no_grad()
def sweep_naive(fn: Fn, x: Tensor, dist: Dist, qp: int, spec: CodecSpec,
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
