"""The graph IR: Graph / Node / Value with self-maintaining producer/consumer links.

A `Value` is a tensor: dtype, static shape, optional constant data, a free `meta`
dict and optional typed quantization parameters. A `Node` applies an op (ONNX
op names and attribute conventions) to input values and produces output values.
Edits go through Node/Graph methods so that `Value.producer` and
`Value.consumers` always agree with the nodes' input and output lists.

    g = Graph("net")
    x = g.add_input("x", np.float32, (1, 3, 8, 8))
    w = g.add_constant("w", np.ones((4, 3, 3, 3), np.float32))
    y, = g.add_node("Conv", [x, w], attrs={"pads": [1, 1, 1, 1]}).outputs
    g.outputs.append(y)
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import networkx as nx
import numpy as np

from qcompiler.errors import GraphError
from qcompiler.ir.quant import QuantParams


class Value:
    """A tensor in the graph: an activation, a graph input or a constant."""

    def __init__(self, name: str, dtype, shape: Sequence[int] | None, data: np.ndarray | None = None):
        self.name = name
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(d) for d in shape) if shape is not None else None
        self.data = data
        self.producer: Node | None = None
        self.consumers: list[Node] = []  # one entry per use (a node using it twice appears twice)
        self.meta: dict = {}
        self.quant: QuantParams | None = None

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape is not None else 0

    def __repr__(self):
        shape = "?" if self.shape is None else "x".join(map(str, self.shape)) or "scalar"
        return f"%{self.name}:{self.dtype.name}[{shape}]"


class Node:
    """An op applied to input values; attributes follow ONNX names and types."""

    def __init__(self, op: str, name: str, attrs: dict | None = None):
        self.op = op
        self.name = name
        self.attrs: dict = dict(attrs or {})
        self.meta: dict = {}
        self._inputs: list[Value | None] = []
        self._outputs: list[Value] = []

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Value, ...]:
        return tuple(self._outputs)

    def input(self, i: int) -> Value | None:
        """The i-th input, or None when absent (optional ONNX inputs)."""
        return self._inputs[i] if i < len(self._inputs) else None

    def set_input(self, i: int, value: Value | None) -> None:
        old = self._inputs[i]
        if old is not None:
            old.consumers.remove(self)
        self._inputs[i] = value
        if value is not None:
            value.consumers.append(self)

    def append_input(self, value: Value | None) -> None:
        self._inputs.append(None)
        self.set_input(len(self._inputs) - 1, value)

    def set_inputs(self, values: Iterable[Value | None]) -> None:
        """Replace the whole input list (consumer lists follow)."""
        for i in range(len(self._inputs)):
            self.set_input(i, None)
        self._inputs = []
        for v in values:
            self.append_input(v)

    def replace_input(self, old: Value, new: Value) -> None:
        for i, v in enumerate(self._inputs):
            if v is old:
                self.set_input(i, new)

    @property
    def users(self) -> list[Node]:
        """Nodes reading any output of this one, each once, in first-use order."""
        return list(dict.fromkeys(u for v in self._outputs for u in v.consumers))

    def __repr__(self):
        return f"{self.op}({self.name})"


class Graph:
    """A dataflow graph of Nodes over Values with graph inputs and outputs."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.nodes: list[Node] = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.meta: dict = {}
        self._names: set[str] = set()

    # ---- construction -------------------------------------------------
    def unique_name(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def add_value(self, name: str, dtype, shape, data=None) -> Value:
        return Value(self.unique_name(name), dtype, shape, data)

    def add_input(self, name: str, dtype, shape) -> Value:
        v = self.add_value(name, dtype, shape)
        self.inputs.append(v)
        return v

    def add_constant(self, name: str, data: np.ndarray) -> Value:
        data = np.asarray(data)
        return self.add_value(name, data.dtype, data.shape, data)

    def add_node(self, op: str, inputs: Iterable[Value | None], outputs: int | Sequence[Value] = 1,
                 attrs: dict | None = None, name: str | None = None, index: int | None = None) -> Node:
        """Create a node; `outputs` is a count (fresh untyped values) or given values.

        It is appended to `nodes` (or placed at `index`); passes rewriting around a node use
        `insert_before` / `insert_after`, which also type the fresh outputs.
        """
        node = Node(op, self.unique_name(name or op), attrs)
        for v in inputs:
            node.append_input(v)
        if isinstance(outputs, int):
            outputs = [Value(self.unique_name(f"{node.name}_out{i}" if i else f"{node.name}_out"),
                             np.float32, None) for i in range(outputs)]
        for v in outputs:
            if v.producer is not None:
                raise GraphError(f"value {v.name} already produced by node {v.producer.name}")
            v.producer = node
            node._outputs.append(v)
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(index, node)
        return node

    def insert_before(self, anchor: Node, op: str, inputs: Iterable[Value | None],
                      outputs: int | Sequence[Value] = 1, attrs: dict | None = None,
                      name: str | None = None) -> Node:
        """A new node placed just before `anchor`; fresh outputs get their inferred dtype/shape.

            Before: %y = Relu[r](%x)
            g.insert_before(r, "Neg", [x])
            After:  %Neg_out = Neg(%x); %y = Relu[r](%x)
        """
        return self._insert(self._index_of(anchor), op, inputs, outputs, attrs, name)

    def insert_after(self, anchor: Node, op: str, inputs: Iterable[Value | None],
                     outputs: int | Sequence[Value] = 1, attrs: dict | None = None,
                     name: str | None = None) -> Node:
        """As `insert_before`, just after `anchor` (chain several by anchoring on the last one)."""
        return self._insert(self._index_of(anchor) + 1, op, inputs, outputs, attrs, name)

    def _index_of(self, node: Node) -> int:
        for i, n in enumerate(self.nodes):
            if n is node:
                return i
        raise GraphError(f"node {node.name} ({node.op}) is not in graph {self.name}")

    def _insert(self, index, op, inputs, outputs, attrs, name) -> Node:
        from qcompiler.ir.shapes import infer_node  # shapes imports this module
        fresh = isinstance(outputs, int)
        node = self.add_node(op, inputs, outputs, attrs=attrs, name=name, index=index)
        if fresh:
            for v, t in zip(node.outputs, infer_node(node)):
                if t is not None and t.shape is not None:
                    v.shape = t.shape
                    v.dtype = np.dtype(t.dtype) if t.dtype is not None else v.dtype
        return node

    # ---- editing ------------------------------------------------------
    def replace_all_uses_with(self, old: Value, new: Value) -> None:
        """Point every consumer (and graph output slot) of `old` at `new`."""
        for node in list(old.consumers):
            node.replace_input(old, new)
        self.outputs = [new if v is old else v for v in self.outputs]

    def erase_node(self, node: Node, keep_outputs: bool = False) -> tuple[Value, ...]:
        """Remove a node whose outputs are unused; refuses (naming the users) otherwise.

        With `keep_outputs=True` the node goes even while its outputs are used: they stay in
        the graph without a producer and are returned, for a new node to produce (pass them
        as its `outputs`); until then `verify()` fails. This is how several nodes are
        replaced by one that keeps their tensors' names (see passes/horizontal_merge.py).
        """
        if not keep_outputs:
            for v in node.outputs:
                self._refuse_if_used(v, node, f"cannot erase node {node.name} ({node.op}): its output")
        self._drop(node)
        outs = node.outputs
        for v in outs:
            v.producer = None
        node._outputs = []
        return outs

    def replace_node(self, old: Node, new: Node | Sequence[Value]) -> None:
        """Replace `old` by a node or by values, then erase it.

        - `new` a Node (already in the graph, before old's users): it takes over old's
          output values (their names, shapes, quantization, meta and every use); its own
          fresh outputs must be unused and are dropped. Old outputs beyond new's count must
          be unused.
        - `new` a sequence of values, one per output of `old`: every use of old's outputs
          (graph output slots included) moves to them.

            Before: %a = Mul[m](%x, %x); %y = LRN[l](%x)
            g.replace_node(l, m)
            After:  %y = Mul[m](%x, %x)
        """
        if isinstance(new, Node):
            what = f"cannot replace node {old.name} ({old.op}) by {new.name} ({new.op})"
            if len(new.outputs) > len(old.outputs):
                raise GraphError(f"{what}: {len(new.outputs)} outputs for {len(old.outputs)}")
            for v in new.outputs:
                self._refuse_if_used(v, new, f"{what}: the new node's own output")
            for v in old.outputs[len(new.outputs):]:
                self._refuse_if_used(v, old, f"{what}: the output the new node does not produce,")
            taken = self.erase_node(old, keep_outputs=True)
            for i, (mine, theirs) in enumerate(zip(new.outputs, taken)):
                mine.producer, theirs.producer = None, new
                new._outputs[i] = theirs
                self._names.discard(mine.name)  # never used: its name is free again
            return
        new = list(new)
        if len(new) != len(old.outputs):
            raise GraphError(f"cannot replace node {old.name} ({old.op}): {len(new)} values for "
                             f"{len(old.outputs)} outputs")
        for v, w in zip(old.outputs, new):
            self.replace_all_uses_with(v, w)
        self.erase_node(old)

    def _refuse_if_used(self, v: Value, producer: Node, what: str) -> None:
        users = list(dict.fromkeys(u.name for u in v.consumers if u is not producer))
        if any(o is v for o in self.outputs):
            users.append("a graph output")
        if users:
            raise GraphError(f"{what} {v.name} is still used by {', '.join(users)}")

    def _drop(self, node: Node) -> None:
        """Take a node out of `nodes` and out of its inputs' consumer lists."""
        del self.nodes[self._index_of(node)]
        for v in node._inputs:
            if v is not None:
                v.consumers.remove(node)
        node._inputs = []

    def bypass_node(self, node: Node, input_index: int = 0) -> None:
        """Remove a single-output node, wiring its users to one of its inputs.

        When the node wrote a graph output, the bypassed-to value takes over the
        output's name so that the user-visible interface does not change.
        """
        src, out = node.inputs[input_index], node.outputs[0]
        keep_name = out in self.outputs and src.producer is not None and src not in self.outputs
        self.replace_all_uses_with(out, src)
        self.erase_node(node)
        if keep_name:
            src.name, out.name = out.name, src.name

    def replace_with_constants(self, node: Node, arrays: Sequence[np.ndarray]) -> None:
        """Turn a node's outputs into constants holding `arrays` and drop the node."""
        outs = self.erase_node(node, keep_outputs=True)
        for v, arr in zip(outs, arrays):
            arr = np.asarray(arr)
            v.data, v.dtype, v.shape = arr, arr.dtype, tuple(arr.shape)

    # ---- queries ------------------------------------------------------
    def values(self) -> list[Value]:
        """Every value reachable from nodes, inputs and outputs, in a stable order."""
        seen: dict[int, Value] = {}
        for v in self.inputs:
            seen.setdefault(id(v), v)
        for n in self.nodes:
            for v in list(n.inputs) + list(n.outputs):
                if v is not None:
                    seen.setdefault(id(v), v)
        for v in self.outputs:
            seen.setdefault(id(v), v)
        return list(seen.values())

    def constants(self) -> list[Value]:
        return [v for v in self.values() if v.is_constant]

    def to_networkx(self) -> nx.MultiDiGraph:
        """Node-level dependency graph (edge per value passed between nodes)."""
        dg = nx.MultiDiGraph()
        dg.add_nodes_from(self.nodes)
        for n in self.nodes:
            for v in n.inputs:
                if v is not None and v.producer is not None:
                    dg.add_edge(v.producer, n, value=v)
        return dg

    def toposort(self) -> "Graph":
        """Reorder `nodes` topologically, stable with respect to the current order."""
        order = {n: i for i, n in enumerate(self.nodes)}
        try:
            self.nodes = list(nx.lexicographical_topological_sort(self.to_networkx(), key=order.get))
        except nx.NetworkXUnfeasible as e:
            cycle = nx.find_cycle(self.to_networkx())
            raise GraphError("graph has a cycle through nodes "
                             + " -> ".join(u.name for u, *_ in cycle)) from e
        return self

    def verify(self) -> None:
        """Check links, order, names and every output's dtype/shape against shape inference;
        raise GraphError naming the offending node/value (linear in the graph size)."""
        from qcompiler.ir.verify import verify_graph
        verify_graph(self)

    def copy(self) -> "Graph":
        """A deep copy (values, nodes, data, meta); iterative, so deep graphs do not recurse."""
        g = Graph(self.name)
        g.meta = copy.deepcopy(self.meta)
        g._names = set(self._names)
        new: dict[int, Value] = {}
        for v in self.values():
            c = Value(v.name, v.dtype, v.shape, None if v.data is None else v.data.copy())
            c.meta = copy.deepcopy(v.meta)
            c.quant = copy.deepcopy(v.quant)
            new[id(v)] = c
        for n in self.nodes:
            m = Node(n.op, n.name, copy.deepcopy(n.attrs))
            m.meta = copy.deepcopy(n.meta)
            for v in n.inputs:
                m.append_input(None if v is None else new[id(v)])
            for v in n.outputs:
                out = new[id(v)]
                out.producer = m
                m._outputs.append(out)
            g.nodes.append(m)
        g.inputs = [new[id(v)] for v in self.inputs]
        g.outputs = [new[id(v)] for v in self.outputs]
        return g

    # ---- printing -----------------------------------------------------
    def dump(self) -> str:
        """Readable text form, one line per node."""

        def fmt(v: Value | None) -> str:
            if v is None:
                return "_"
            s = repr(v)
            if v.is_constant:
                s = f"const {s}"
            if v.quant is not None:
                s += f" {v.quant!r}"
            return s

        lines = [f"graph {self.name}(" + ", ".join(map(fmt, self.inputs)) + ")"]
        for n in self.nodes:
            attrs = {k: v for k, v in n.attrs.items() if not isinstance(v, np.ndarray)}
            a = (" " + " ".join(f"{k}={v}" for k, v in attrs.items())) if attrs else ""
            lines.append(f"  {', '.join(map(fmt, n.outputs))} = {n.op}[{n.name}]{a}("
                         + ", ".join(map(fmt, n.inputs)) + ")")
        lines.append("  return " + ", ".join(map(fmt, self.outputs)))
        return "\n".join(lines)

    def __repr__(self):
        return f"Graph({self.name}, {len(self.nodes)} nodes)"
