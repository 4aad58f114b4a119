"""Unroll ONNX LSTM into the ops every int8 target runs: Gemm, Split, Add, Sigmoid, Tanh, Mul.

Per direction and gate k in ONNX order (i, o, f, c), with H = hidden_size and x_t, h, c the
step's input and state ([batch, ...]; see qcompiler/interp/float_kernels/rnn.py):

    z_k = x_t Wk^T + (Wbk + Rbk) + h Rk^T          every step's x_t Wk^T + b_k is ONE Gemm
    i, f, o = sigmoid(z_i + Pi*c), sigmoid(z_f + Pf*c), sigmoid(z_o + Po*c_new)
    c_new = f * c + i * tanh(z_c);  h_new = o * tanh(c_new)

    Before: %Y, %Y_h, %Y_c = LSTM(%X[seq, batch, in], W, R, B, _, h0, c0) hidden_size=H
    After:  %x2 = Reshape(%X, [seq*batch, in])
            per direction d and gate k:
              %xk = Gemm(%x2, W[d, k], Wb[d, k] + Rb[d, k]) transB=1    [seq*batch, H]
              %xk_0, ..., %xk_{seq-1} = Split(%xk) axis=0               [batch, H] each
            per step t (reverse: t = seq-1 .. 0), gate k:
              %r_i, %r_o, %r_f, %r_c = Split(Gemm(%h, R[d]) transB=1) axis=1   (none while h is 0)
              %zk = Add(%xk_t, %r_k)
              %i, %f, %o = Sigmoid(...); %g = Tanh(%zc)
              %c = Add(Mul(%f, %c), Mul(%i, %g)); %h = Mul(%o, Tanh(%c))
            %Y = Reshape(Concat(h of (t=0, d=0), (0, 1), (1, 0), ... ) axis=0, [seq, dirs, batch, H])
            %Y_h / %Y_c: the last h / c of each direction, concatenated and reshaped (if used)

The input projection takes one Gemm per gate rather than one for all four: each gate's keeps
its own int8 range (on the CRNN they differ 9x, so horizontal_merge would refuse to merge them).
The recurrent projection is one Gemm per step (the four gates' results share one range, what
horizontal_merge makes of four anyway; measured equal on the CRNN) on one constant R[d] for
every step: unrolling copies no weights.
A constant initial state enters as constants (h0 Rk^T, Pk * c0 computed here; f * c0 a Mul
by a constant); a zero state drops its terms.

Refused (UnsupportedOpError naming the node): non-constant weights or initial state, partial
`sequence_lens`, `clip`, `input_forget`, layout=1, activations other than Sigmoid/Tanh/Tanh,
an input without a static shape.

Quantization: each step's tensors are separate values, so calibration gives each step its own
range; the Concat behind Y makes every h_t share one (qcompiler/quant/quantize.py). Values
with the same meta["range_group"] (here: the cell states c_t of one direction) share one range,
the union of their calibrated ones: state statistics are the same at every step, and one scale
keeps c's requantization the same from step to step.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import UnsupportedOpError
from qcompiler.interp.float_kernels.rnn import default_activations
from qcompiler.ir import Graph, Node, Value
from qcompiler.ir.pass_manager import PassContext, register_pass

GATES = ("i", "o", "f", "c")    # ONNX's order of the 4*H rows of W, R and each half of B
# node meta key: the node's part in an unrolled recurrent cell (input_projection,
# recurrent_projection, gate, cell, hidden); qcompiler/quant/precision.py reads it
RECURRENT = "recurrent"


def _const(node: Node, i: int) -> np.ndarray | None:
    v = node.input(i)
    return None if v is None or not v.is_constant or v.data.size == 0 else v.data


def check(node: Node) -> list[str]:
    """Why `node` cannot be unrolled (empty: it can)."""
    a = node.attrs
    problems = []
    x = node.inputs[0]
    if x.shape is None or len(x.shape) != 3:
        problems.append(f"input X has shape {x.shape}: needs a static [seq, batch, input] shape "
                        "(fix dynamic dims with --input-shape)")
    for i, what in ((1, "W"), (2, "R"), (3, "B"), (5, "initial_h"), (6, "initial_c"), (7, "P")):
        v = node.input(i)
        if v is not None and not v.is_constant:
            problems.append(f"{what} is computed, not a constant")
    lens = node.input(4)
    if lens is not None and not (lens.is_constant and x.shape and np.all(lens.data == x.shape[0])):
        problems.append("sequence_lens is not absent or every batch entry's full length")
    if a.get("clip") is not None:
        problems.append(f"clip={a['clip']} (clipped gate inputs)")
    if int(a.get("input_forget", 0)):
        problems.append("input_forget=1 (coupled input and forget gates)")
    if int(a.get("layout", 0)):
        problems.append("layout=1 (batch-major)")
    if not default_activations(node):
        problems.append(f"activations={a.get('activations')} (only Sigmoid, Tanh, Tanh)")
    direction = a.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "reverse", "bidirectional"):
        problems.append(f"direction={direction!r}")
    return [f"LSTM (node {node.name}): {p} -- only such LSTMs are unrolled into int8 ops" for p in problems]


class _Unroller:
    """Builds the unrolled ops of one LSTM node just before it."""

    def __init__(self, graph: Graph, node: Node):
        self.g, self.node = graph, node
        x = node.inputs[0]
        self.seq, self.batch, self.width = x.shape
        w, r = _const(node, 1), _const(node, 2)
        self.hidden = r.shape[-1]
        direction = node.attrs.get("direction", "forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        self.dirs = ("forward", "reverse") if direction == "bidirectional" else (direction,)
        nd, hd = len(self.dirs), self.hidden
        b = _const(node, 3)
        self.w, self.r = w.astype(np.float32), r.astype(np.float32)
        self.b = (b if b is not None else np.zeros((nd, 8 * hd))).astype(np.float32)
        self.p = _const(node, 7)
        self.h0, self.c0 = _const(node, 5), _const(node, 6)

    def add(self, op, ins, name, attrs=None, outputs=1, role=None) -> Node:
        n = self.g.insert_before(self.node, op, ins, outputs, attrs=attrs, name=f"{self.node.name}_{name}")
        if role is not None:
            n.meta[RECURRENT] = role
        return n

    def out(self, op, ins, name, attrs=None, role=None) -> Value:
        return self.add(op, ins, name, attrs, role=role).outputs[0]

    def const(self, name, data) -> Value:
        return self.g.add_constant(f"{self.node.name}_{name}", np.asarray(data, np.float32))

    def rows(self, a: np.ndarray, k: int) -> np.ndarray:
        return a[k * self.hidden:(k + 1) * self.hidden]

    def input_projections(self, x2: Value, d: int) -> list[list[Value]]:
        """[gate][step] -> x_t Wk^T + b_k, [batch, H] each (one Gemm and one Split per gate)."""
        per_gate = []
        hd = 4 * self.hidden
        for k, gate in enumerate(GATES):
            bias = self.rows(self.b[d, :hd], k) + self.rows(self.b[d, hd:], k)
            xk = self.out("Gemm", [x2, self.const(f"d{d}_W{gate}", self.rows(self.w[d], k)),
                                   self.const(f"d{d}_b{gate}", bias)], f"d{d}_x{gate}", {"transB": 1},
                          role="input_projection")
            if self.seq == 1:
                per_gate.append([xk])
            else:
                per_gate.append(list(self.add("Split", [xk], f"d{d}_x{gate}_steps", {"axis": 0},
                                              outputs=self.seq).outputs))
        return per_gate

    def state(self, data: np.ndarray | None, d: int) -> np.ndarray | None:
        return None if data is None or not np.any(data[d]) else data[d].astype(np.float32)

    def direction(self, x2: Value, d: int) -> tuple[list[Value], Value, Value]:
        """The h of every step (in step order), the last h and the last c of direction d."""
        xs = self.input_projections(x2, d)
        h: Value | np.ndarray | None = self.state(self.h0, d)   # None: zero; ndarray: a constant
        c: Value | np.ndarray | None = self.state(self.c0, d)
        p = self.p[d].astype(np.float32) if self.p is not None and np.any(self.p[d]) else None
        peep = dict(zip(("i", "o", "f"), np.split(p, 3))) if p is not None else {}
        steps = range(self.seq - 1, -1, -1) if self.dirs[d] == "reverse" else range(self.seq)
        r_all = None  # R[d] ([4H, H]): one constant read by every step's Gemm (stored once)
        hs: dict[int, Value] = {}
        for t in steps:
            tag = f"d{d}_t{t}"
            z = {}
            if isinstance(h, np.ndarray):
                recs = [self.const(f"{tag}_h0R{gate}", h @ self.rows(self.r[d], k).T) for k, gate in enumerate(GATES)]
            elif h is not None:
                if r_all is None:
                    r_all = self.const(f"d{d}_R", self.r[d])
                rec = self.out("Gemm", [h, r_all], f"{tag}_hR", {"transB": 1}, role="recurrent_projection")
                recs = list(self.add("Split", [rec], f"{tag}_hR_gates", {"axis": 1}, outputs=4).outputs)
            for k, gate in enumerate(GATES):
                z[gate] = xs[k][t] if h is None else self.out("Add", [xs[k][t], recs[k]], f"{tag}_z{gate}", role="gate")
            for gate in ("i", "f"):
                if gate in peep and c is not None:
                    term = (self.const(f"{tag}_Pc{gate}", peep[gate] * c) if isinstance(c, np.ndarray)
                            else self.out("Mul", [c, self.const(f"{tag}_P{gate}", peep[gate])], f"{tag}_Pc{gate}",
                                          role="gate"))
                    z[gate] = self.out("Add", [z[gate], term], f"{tag}_zp{gate}", role="gate")
            i = self.out("Sigmoid", [z["i"]], f"{tag}_i", role="gate")
            g = self.out("Tanh", [z["c"]], f"{tag}_g", role="gate")
            ig = self.out("Mul", [i, g], f"{tag}_ig", role="cell")
            if c is None:
                c_new = ig
            else:
                f = self.out("Sigmoid", [z["f"]], f"{tag}_f", role="gate")
                fc = self.out("Mul", [f, self.const(f"{tag}_c0", c) if isinstance(c, np.ndarray) else c], f"{tag}_fc",
                              role="cell")
                c_new = self.out("Add", [fc, ig], f"{tag}_c", role="cell")
            c_new.meta["range_group"] = f"{self.node.name}_d{d}_c"
            if c is not None and not isinstance(c, np.ndarray):
                fc.meta["range_group"] = c_new.meta["range_group"]   # |f * c| <= |c|: c's range
            if "o" in peep:
                po = self.out("Mul", [c_new, self.const(f"{tag}_Po", peep["o"])], f"{tag}_Pco", role="gate")
                z["o"] = self.out("Add", [z["o"], po], f"{tag}_zpo", role="gate")
            o = self.out("Sigmoid", [z["o"]], f"{tag}_o", role="gate")
            tc = self.out("Tanh", [c_new], f"{tag}_tanh_c", role="cell")
            h, c = self.out("Mul", [o, tc], f"{tag}_h", role="hidden"), c_new
            hs[t] = h
        return [hs[t] for t in range(self.seq)], h, c

    def stacked(self, values: list[Value], shape: tuple[int, ...], name: str) -> Value:
        v = values[0] if len(values) == 1 else self.out("Concat", values, f"{name}_concat", {"axis": 0})
        return self.out("Reshape", [v, self.g.add_constant(f"{self.node.name}_{name}_shape",
                                                           np.array(shape, np.int64))], name)

    def run(self) -> list[Value | None]:
        """Build everything; the values replacing Y, Y_h, Y_c (None: the output is unused)."""
        node = self.node
        x2 = self.out("Reshape", [node.inputs[0], self.g.add_constant(
            f"{node.name}_x2_shape", np.array([self.seq * self.batch, self.width], np.int64))], "x2")
        per_dir = [self.direction(x2, d) for d in range(len(self.dirs))]
        nd, state = len(self.dirs), (len(self.dirs), self.batch, self.hidden)
        used = [bool(v.consumers) or v in self.g.outputs for v in node.outputs] + [False] * 3
        y = ([hs[t] for t in range(self.seq) for hs, _, _ in per_dir], (self.seq, nd, self.batch, self.hidden))
        y_h = ([h for _, h, _ in per_dir], state)
        y_c = ([c for _, _, c in per_dir], state)
        return [self.stacked(vals, shape, name) if used[k] else None
                for k, (name, (vals, shape)) in enumerate(zip(("Y", "Y_h", "Y_c"), (y, y_h, y_c)))
                if k < len(node.outputs)]


def _replace(graph: Graph, node: Node, new: list[Value | None]) -> None:
    for old, v in zip(node.outputs, new):
        if v is None:
            continue
        was_output = old in graph.outputs
        graph.replace_all_uses_with(old, v)
        if was_output:  # keep the user-visible name
            old.name, v.name = v.name, old.name
    graph.erase_node(node)


@register_pass("unroll_lstm", "LSTM -> per-step Gemm/Add/Sigmoid/Tanh/Mul (no int8 LSTM kernel)")
def unroll_lstm(graph: Graph, ctx: PassContext) -> bool:
    lstms = [n for n in graph.nodes if n.op == "LSTM"]
    problems = [p for n in lstms for p in check(n)]
    if problems:
        raise UnsupportedOpError(problems, "the model (unroll_lstm)")
    for n in lstms:
        before = len(graph.nodes)
        u = _Unroller(graph, n)
        _replace(graph, n, u.run())
        ctx.log.append(f"unroll_lstm: {n.name} ({'+'.join(u.dirs)}, {u.seq} steps, hidden {u.hidden}) -> "
                       f"{len(graph.nodes) - before + 1} nodes")
    return bool(lstms)
