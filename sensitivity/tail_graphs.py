"""Sub-graphs of a split's tail that the sweep uses: the penultimate output (before the
classifier layer) and the leading convolution (the sweep's linear trick).

They take any fx.GraphModule with a single placeholder, the cut tensor (what
`vcfc.runners.models.split(...).tail_module` is); the cutting itself is vcfc.subgraph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from vcfc.errors import InputError
from vcfc.subgraph import extract_subgraph


class Pooled(nn.Module):
    """Global-average-pools a map output to a vector (as `Split.penultimate` does)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        t = self.inner(x)
        return t.mean(dim=(-2, -1)) if t.dim() == 4 else t


def classifier_input(tail: fx.GraphModule) -> fx.Node:
    """The node feeding the tail's last Linear/Conv2d (the classifier layer)."""
    mods = dict(tail.named_modules())
    last = None
    for n in tail.graph.nodes:
        if n.op == "call_module" and isinstance(mods.get(n.target), (nn.Linear, nn.Conv2d)):
            last = n
    if last is None:
        raise InputError("no Linear/Conv2d classifier layer after the cut: no penultimate output")
    return last.all_input_nodes[0]


def penultimate_graph(tail: fx.GraphModule) -> nn.Module:
    """features -> input of the tail's last Linear/Conv2d, globally average-pooled if a map:
    what `Split.penultimate` runs (under no_grad), differentiable for the Taylor estimator."""
    return Pooled(extract_subgraph(tail, tail.graph, classifier_input(tail)))


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
    rest = extract_subgraph(gm, gm.graph, out, inp=first)
    return LinearHead(conv, Pooled(rest) if pooled else rest)  # type: ignore[arg-type]
