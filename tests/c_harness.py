"""Small quantized graphs run through the C backend (compiled for the host) and through the
integer reference, for tests/test_c_kernels.py and tests/test_c_backend.py."""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

from qcompiler.backends.c import COptions, emit
from qcompiler.backends.c.build import HostModel
from qcompiler.backends.c.layout import Layout
from qcompiler.interp import INT_KERNELS
from qcompiler.ir import Graph, QuantParams


def pq(scale, zp=0, dtype=np.int8):
    return QuantParams(np.float32(scale), zp, dtype=dtype)


def rand_scale(rng, lo=-2.5, hi=-0.5):
    return float(np.float32(10 ** rng.uniform(lo, hi)))


def rand_q(rng):
    return pq(rand_scale(rng), int(rng.integers(-128, 100)))


def rand_act(rng, shape, zp, spread=50):
    return np.clip(np.round(rng.normal(zp, spread, size=shape)), -128, 127).astype(np.int8)


class Net:
    """Builds a quantized graph node by node, computing every value with the integer reference
    (which also gives the values their static shapes)."""

    def __init__(self, name: str = "t"):
        self.g = Graph(name)
        self.arrays: dict[str, np.ndarray] = {}
        self.feeds: dict[str, np.ndarray] = {}

    def input(self, arr, q):
        v = self.g.add_input(f"x{len(self.g.inputs)}", arr.dtype, arr.shape)
        v.quant = q
        self.feeds[v.name] = self.arrays[v.name] = arr
        return v

    def const(self, arr, q=None):
        v = self.g.add_constant("c", np.asarray(arr))
        v.quant = q
        return v

    def node(self, op, ins, q, attrs=None, n_out=1, opset=None):
        node = self.g.add_node(op, ins, outputs=n_out, attrs=attrs or {})
        if opset is not None:
            node.meta["opset"] = opset
        qs = q if isinstance(q, list) else [q] * n_out
        for v, qq in zip(node.outputs, qs):
            v.quant = qq
        args = [None if v is None else (v.data if v.is_constant else self.arrays[v.name]) for v in ins]
        outs = INT_KERNELS[op](node, args)
        for v, arr in zip(node.outputs, outs):
            arr = np.asarray(arr)
            v.shape, v.dtype = tuple(arr.shape), arr.dtype
            self.arrays[v.name] = arr
        return node.outputs[0] if n_out == 1 else list(node.outputs)

    def output(self, *values):
        self.g.outputs.extend(values)
        return self


# e.g. QCC_C_TEST_FLAGS="-fsanitize=undefined -fno-sanitize-recover=all" for a UBSan run of every case
ENV_FLAGS = tuple(os.environ.get("QCC_C_TEST_FLAGS", "").split())


def run_c(net: Net, workdir, name: str = "m", cc: str | None = None, flags=ENV_FLAGS, c_io: str = "caller"):
    """(report entries, {output name: array}) of the net compiled for the host."""
    comp = SimpleNamespace(quant_graph=net.g, name=name, header="from a qcc test", target_options=COptions(c_io))
    report = emit(comp, workdir)
    c = report["c"]
    sizes = [[int(np.prod(d["shape"])) for d in report[k]] for k in ("inputs", "outputs")]
    offsets = None
    if c_io == "scratch":
        offsets = [d["offset"] for d in report["inputs"]], [d["offset"] for d in report["outputs"]]
    model = HostModel(workdir, c["ident"], *sizes, c["scratch_bytes"], flags, cc, offsets,
                      [d["dtype"] for d in report["inputs"]], [d["dtype"] for d in report["outputs"]])
    lay = {d["name"]: Layout.transposed(d["onnx_shape"], d["perm"]) for d in report["inputs"] + report["outputs"]}
    outs = model.run([lay[v.name].store(net.feeds[v.name]) for v in net.g.inputs])
    return report, {v.name: lay[v.name].load(o, v.shape) for v, o in zip(net.g.outputs, outs)}


def assert_same(want, got):
    want, got = np.asarray(want), np.asarray(got)
    assert want.shape == got.shape, (want.shape, got.shape)
    if not np.array_equal(want, got):
        diff = np.abs(want.astype(np.int32) - got.astype(np.int32))
        raise AssertionError(f"{int((diff > 0).sum())}/{want.size} elements differ, max |diff| {int(diff.max())}")


def check(net: Net, workdir, **kw) -> dict:
    """Run the net in C and require every output equal to the reference; returns the report."""
    report, got = run_c(net, workdir, **kw)
    for v in net.g.outputs:
        assert_same(net.arrays[v.name], got[v.name])
    return report
