"""torch.fx sub-graph extraction: the one cutting helper behind model splits (vcfc.runners) and
the sensitivity sweep's sub-graphs (vcfc.sensitivity). Imports torch: load it only where used."""

from __future__ import annotations

from torch import fx, nn

from .errors import InputError


class CutBypassed(InputError):
    """A path from the graph's input reaches the output without going through the cut node."""


def extract_subgraph(root: nn.Module, graph: fx.Graph, out: fx.Node, inp: fx.Node | None = None,
                     name: str = "x") -> fx.GraphModule:
    """GraphModule (sharing ``root``'s parameters) computing ``out`` from ``inp`` alone.

    With ``inp`` None the sub-graph keeps the graph's own placeholder(s). With ``inp`` given it
    becomes the single input (named ``name``); CutBypassed if ``out`` depends on a placeholder
    other than through ``inp`` (e.g. a residual connection around the cut).
    The one fx helper behind model splits (vcfc.runners.splits) and the sweep's sub-graphs.
    """
    needed: set[fx.Node] = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        if n is inp:
            continue
        if inp is not None and n.op == "placeholder":
            raise CutBypassed(f"another path bypasses {inp.name}")
        stack.extend(n.all_input_nodes)
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {} if inp is None else {inp: g.placeholder(name)}
    for n in graph.nodes:
        if n in needed and n not in env:
            env[n] = g.node_copy(n, lambda a: env[a])
    g.output(env[out])
    return fx.GraphModule(root, g).eval()
