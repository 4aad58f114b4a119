"""Dead-output elimination: keep only what reaches the (chosen) graph outputs.

- `select_outputs`: with `--outputs a,b` the graph outputs become those tensors
  (any tensor name, not only the original outputs); unknown names are an error.
- `dead_code`: nodes that reach no graph output are removed, and so are graph
  inputs that nothing reads (constants vanish with their last user).
- `eliminate_identity`: Identity and inference-mode Dropout are bypassed.

    Before: %a = Conv(%x); %b = Relu(%x) [unused]; %y = Identity(%a)
    After:  %y = Conv(%x)
"""
from __future__ import annotations

import networkx as nx

from qcompiler.errors import QccError
from qcompiler.ir import Graph
from qcompiler.ir.pass_manager import PassContext, register_pass

NO_OP = {"Identity", "Dropout"}


@register_pass("select_outputs", "make the --outputs tensors the graph outputs (no-op without --outputs)")
def select_outputs(graph: Graph, ctx: PassContext) -> bool:
    wanted = list(ctx.options.get("outputs") or [])
    if not wanted:
        return False
    by_name = {v.name: v for v in graph.values() if not v.is_constant}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise QccError(f"--outputs names unknown tensor(s) {unknown}; e.g. {sorted(by_name)[:8]}")
    new = [by_name[w] for w in wanted]
    changed = new != graph.outputs
    graph.outputs = new
    return changed


@register_pass("dead_code", "remove nodes that reach no graph output and graph inputs nothing reads")
def dead_code(graph: Graph, ctx: PassContext) -> bool:
    dg = graph.to_networkx()
    live = {v.producer for v in graph.outputs if v.producer is not None}
    for n in list(live):
        live |= nx.ancestors(dg, n)
    dead = [n for n in graph.nodes if n not in live]
    for n in reversed(dead):  # consumers before producers
        graph.erase_node(n)
    unused = [v for v in graph.inputs if not v.consumers and v not in graph.outputs]
    graph.inputs = [v for v in graph.inputs if v not in unused]
    return bool(dead or unused)


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
