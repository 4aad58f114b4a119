"""Shape and dtype inference (qcompiler/ir/shapes.py): every rule against the float kernel's
actual output on every kernel test case, and the errors verify() and the frontend give."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from qcompiler.errors import GraphError, QccError
from qcompiler.frontend.onnx_attrs import attrs_from_onnx
from qcompiler.interp import FLOAT_KERNELS, INT_KERNELS
from qcompiler.ir import Graph, QuantParams
from qcompiler.ir.shapes import RULES, Type, infer_node

test_float_kernels = pytest.importorskip("tests.test_float_kernels")
CASES = test_float_kernels.ALL


def _graph_of(case):
    """The case as a one-node Graph: fed float inputs are graph inputs (shape only), the rest
    constants (integer inputs define shapes: sizes, axes, pads, ...; Range's are its size)."""
    _, proto = test_float_kernels._model(case)
    g = Graph("case")
    ins = []
    for i, arr in enumerate(case.inputs):
        if arr is None:
            ins.append(None)
        elif i < case.feed and arr.dtype.kind == "f" and case.op != "Range":
            ins.append(g.add_input(f"in{i}", arr.dtype, arr.shape))
        else:
            ins.append(g.add_constant(f"in{i}", arr))
    node = g.add_node(case.op, ins, case.n_out, attrs=attrs_from_onnx(proto), name="n0")
    node.meta["opset"] = case.opset
    return g, node


@pytest.mark.parametrize("case", CASES)
def test_rule_matches_the_float_kernel(case):
    g, node = _graph_of(case)
    got = infer_node(node)
    want = test_float_kernels.run_kernel(case)
    for k, (t, arr) in enumerate(zip(got, want)):
        arr = np.asarray(arr)
        assert t is not None, f"output {k}: no inference"
        assert t.shape == arr.shape, f"output {k}: inferred {t.shape}, kernel {arr.shape}"
        assert t.dtype is None or np.dtype(t.dtype) == arr.dtype, f"output {k}: {t.dtype} vs {arr.dtype}"


def test_every_interpreter_op_has_a_rule():
    assert sorted((set(FLOAT_KERNELS) | set(INT_KERNELS)) - set(RULES)) == []


def _conv_graph(declared):
    g = Graph("t")
    x = g.add_input("x", np.float32, (1, 3, 8, 8))
    w = g.add_constant("w", np.ones((4, 3, 3, 3), np.float32))
    conv = g.add_node("Conv", [x, w], attrs={"strides": [2, 2]}, name="conv")
    y = conv.outputs[0]
    y.shape = declared
    g.outputs.append(y)
    return g, y


def test_verify_checks_declared_shapes():
    g, y = _conv_graph((1, 4, 3, 3))
    g.verify()
    y.shape = (1, 4, 4, 4)
    with pytest.raises(GraphError, match=r"node conv \(Conv\): output conv_out is declared "
                                         r"float32\[1x4x4x4\] but the op computes float32\[1x4x3x3\]"):
        g.verify()


def test_verify_checks_dtype_and_quantized_dtype():
    g, y = _conv_graph((1, 4, 3, 3))
    y.dtype = np.dtype(np.int32)
    with pytest.raises(GraphError, match=r"declared int32\[1x4x3x3\] but the op computes float32"):
        g.verify()
    y.quant = QuantParams(np.float32(0.1), 0, dtype=np.int16)
    with pytest.raises(GraphError, match=r"computes int16\[1x4x3x3\] \(its QuantParams' dtype\)"):
        g.verify()
    y.dtype = np.dtype(np.int16)
    g.verify()


def test_untyped_and_unknown_outputs_are_not_checked():
    g, y = _conv_graph(None)  # a fresh value: no declared shape yet
    g.verify()
    z = g.add_node("Reshape", [y, g.inputs[0]], name="dynamic").outputs[0]  # shape from a tensor
    z.shape = (7,)
    assert infer_node(z.producer) == [None]
    g.verify()


def test_contradicting_inputs_name_the_node():
    g = Graph("t")
    x = g.add_input("x", np.float32, (1, 3, 8, 8))
    w = g.add_constant("w", np.ones((4, 2, 3, 3), np.float32))
    y = g.add_node("Conv", [x, w], name="bad").outputs[0]
    y.shape = (1, 4, 6, 6)
    with pytest.raises(GraphError, match=r"node bad \(Conv\): inputs .* do not fit the op .*weight"):
        g.verify()


def test_insert_types_fresh_outputs():
    g = Graph("t")
    x = g.add_input("x", np.float32, (2, 3))
    w = g.add_constant("w", np.ones((5, 3), np.float32))
    out = g.add_node("Identity", [x], name="id")
    gemm = g.insert_before(out, "Gemm", [x, w], attrs={"transB": 1}, name="fc")
    assert gemm.outputs[0].shape == (2, 5) and gemm.outputs[0].dtype == np.float32
    assert Type(np.dtype(np.float32), (2, 5)) == infer_node(gemm)[0]


def _onnx_model(out_shape, value_info=()):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out_shape)
    w = onnx.numpy_helper.from_array(np.ones((10, 4), np.float32), "w")
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1, name="fc"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w], value_info=list(value_info))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_frontend_refuses_a_wrongly_declared_output(tmp_path):
    from qcompiler.frontend.onnx_import import load_model
    path = tmp_path / "m.onnx"
    onnx.save(_onnx_model([1, 12345]), str(path))
    with pytest.raises(QccError, match=r"'y': the model declares float32\[1, 12345\] but node relu \(Relu\) computes "
                                           r"float32\[1, 10\]"):
        load_model(path)


def test_frontend_refuses_a_lying_value_info(tmp_path):
    from qcompiler.frontend.onnx_import import load_model
    path = tmp_path / "m.onnx"
    lie = helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, [1, 7])
    onnx.save(_onnx_model([1, 10], [lie]), str(path))
    with pytest.raises(QccError, match=r"'h': the model declares float32\[1, 7\] but node fc \(Gemm\) computes"):
        load_model(path)


def test_frontend_fills_undeclared_shapes(tmp_path):
    from qcompiler.frontend.onnx_import import load_model
    path = tmp_path / "m.onnx"
    onnx.save(_onnx_model(["n", "m"]), str(path))  # dynamic: not a declaration
    g = load_model(path)
    assert g.outputs[0].shape == (1, 10)
