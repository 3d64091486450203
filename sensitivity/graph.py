"""torch.fx helpers on a tail GraphModule: its penultimate sub-graph, and its leading conv.

Kept free of `runners`: they take any fx.GraphModule whose single placeholder is the cut tensor
(what `runners.models.split(...).tail_module` is).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn


class Pooled(nn.Module):
    """Global-average-pools a map output to a vector (as `Split.penultimate` does)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        t = self.inner(x)
        return t.mean(dim=(-2, -1)) if t.dim() == 4 else t


def _sub_graph(gm: fx.GraphModule, out: fx.Node, inp: fx.Node | None = None) -> fx.GraphModule:
    """GraphModule computing `out` (from `inp` as its placeholder, default: gm's own input)."""
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    if inp is not None:
        env[inp] = g.placeholder("x")
    needed: set[fx.Node] = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        if n is not inp:
            stack.extend(n.all_input_nodes)
    for n in gm.graph.nodes:
        if n in needed and n not in env:
            if n.op == "placeholder" and inp is not None:
                raise ValueError("the sub-graph depends on the input other than through the cut node")
            env[n] = g.node_copy(n, lambda a: env[a])
    g.output(env[out])
    return fx.GraphModule(gm, g).eval()


def penultimate_graph(tail: fx.GraphModule) -> nn.Module:
    """features -> input of the tail's last Linear/Conv2d, pooled if a map: a differentiable
    twin of `Split.penultimate` (which runs under no_grad) for the Taylor estimator and the sweep."""
    mods = dict(tail.named_modules())
    last = None
    for n in tail.graph.nodes:
        if n.op == "call_module" and isinstance(mods.get(n.target), (nn.Linear, nn.Conv2d)):
            last = n
    if last is None:
        raise ValueError("no Linear/Conv2d classifier layer in the tail")
    return Pooled(_sub_graph(tail, last.all_input_nodes[0]))


@dataclass
class LinearHead:
    """The tail's first op is `conv` (zero padding), so tail(x) = rest(conv(x)) and
    conv(x + e_i d) = conv(x) + conv_nobias(e_i d): the per-channel deltas need one input channel each."""

    conv: nn.Conv2d
    rest: nn.Module          # GraphModule (or Pooled GraphModule): conv output -> result

    def delta(self, d: Tensor, channels: Tensor) -> Tensor:
        """conv without bias of single-channel maps: d (B,H,W) holds channel channels[b] of variant b."""
        w = self.conv.weight[:, channels]                       # (Cout, B, k, k)
        b = len(channels)
        cout = w.shape[0]
        if self.conv.kernel_size == (1, 1) and self.conv.stride == (1, 1) and self.conv.padding == (0, 0):
            # 1x1: an outer product per variant, no convolution machinery
            return torch.einsum("ob,bhw->bohw", w[:, :, 0, 0], d)
        # grouped conv: group b sees only input b and that channel's filter slice
        wg = w.transpose(0, 1).reshape(b * cout, 1, *w.shape[2:])
        y = torch.nn.functional.conv2d(d.unsqueeze(0), wg, None, self.conv.stride, self.conv.padding,
                                       self.conv.dilation, groups=b)
        return y.reshape(b, cout, *y.shape[2:])


def linear_head(fn: object) -> LinearHead | None:
    """A LinearHead if `fn` is a GraphModule (or Pooled one) whose input feeds only one plain
    Conv2d (groups 1, zero padding); else None (the trick does not apply)."""
    pooled = isinstance(fn, Pooled)
    gm = fn.inner if pooled else fn
    if not isinstance(gm, fx.GraphModule):
        return None
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(phs) != 1 or len(phs[0].users) != 1:
        return None
    first = next(iter(phs[0].users))
    mods = dict(gm.named_modules())
    conv = mods.get(first.target) if first.op == "call_module" else None
    if not (isinstance(conv, nn.Conv2d) and type(conv) is nn.Conv2d and conv.groups == 1
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
            and first.args[0] is phs[0] and len(first.args) == 1 and not first.kwargs):
        return None
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    rest = _sub_graph(gm, out, inp=first)
    return LinearHead(conv, Pooled(rest) if pooled else rest)  # type: ignore[arg-type]
