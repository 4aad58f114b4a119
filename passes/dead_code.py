"""Dead-code elimination and removal of inference no-ops (Identity, Dropout).

    Before: %a = Conv(%x); %b = Relu(%x) [unused]; %y = Identity(%a)
    After:  %y = Conv(%x)
"""
from __future__ import annotations

import networkx as nx

from qcompiler.ir import Graph
from qcompiler.pass_manager import PassContext, register_pass

NO_OP = {"Identity", "Dropout"}


@register_pass("dead_code", "remove nodes that reach no graph output")
def dead_code(graph: Graph, ctx: PassContext) -> bool:
    dg = graph.to_networkx()
    live = {v.producer for v in graph.outputs if v.producer is not None}
    for n in list(live):
        live |= nx.ancestors(dg, n)
    dead = [n for n in graph.nodes if n not in live]
    for n in reversed(dead):  # consumers before producers
        graph.nodes.remove(n)
        n._detach()
    return bool(dead)


@register_pass("eliminate_identity", "remove Identity and inference-mode Dropout nodes")
def eliminate_identity(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for n in list(graph.nodes):
        if n.op not in NO_OP:
            continue
        if any(v.consumers or v in graph.outputs for v in n.outputs[1:]):
            continue  # a Dropout mask is used: leave it to the interpreter
        src = n.inputs[0]
        if n.outputs[0] in graph.outputs and (src in graph.inputs or src in graph.outputs):
            continue  # would merge a graph input/output pair; keep the explicit copy
        graph.bypass_node(n)
        changed = True
    return changed
