"""The op patterns of the real-model corpus (bench/corpus.py), as small onnx.helper models:
each compiles for TFLite, runs bit-exactly in TFLite Micro against the integer reference,
keeps every tensor integer (no op falls back to float), and its optimized float graph still
computes what onnxruntime computes on the original.

    yolov8 (nudenet_320n)    SiLU, C2f Split/Concat, SPPF MaxPools, nearest Resize, DFL Softmax,
                             shape subgraph (Shape/Gather/Range/Expand), Div by a constant
    yolox (ddddocr_det)      Focus (four stride-2 Slices + Concat), SiLU, Resize, Sigmoid heads
    pp-lcnet (orientation)   Conv+BN+HardSwish, squeeze-excite with HardSigmoid, Mul by 0.8,
                             Shape/Slice/Concat Reshape, MatMul head, Softmax
    picodet (layout)         hard-swish written x*Clip(x+3,0,6)/6 and *(1/6) before the product,
                             unfused BN, HardSigmoid SE, Resize, Split [10, 32] + Sigmoid
    crnn (ddddocr_ocr)       Conv/SiLU backbone, Reshape + Transpose into [steps, 1, features], a
                             bidirectional LSTM with a ConstantOfShape zero state, Gemm classifier
"""
from __future__ import annotations

import numpy as np
import pytest

from onnx_builders import assert_matches_onnxruntime
from qcompiler.driver.pipeline import default_pipeline, optimize
from qcompiler.frontend.onnx_import import load_model

pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
from test_tflite_lowering import Net, compile_verify  # noqa: E402
from qcompiler.backends.tflite.flatbuffer import read_model  # noqa: E402

INTEGER = {"int8", "int16", "int32", "int64"}  # int64: the biases of int16 (16x8) layers


def f32(v) -> np.ndarray:
    return np.asarray(v, np.float32)


def i64(v) -> np.ndarray:
    return np.asarray(v, np.int64)


class Blocks(Net):
    """Net with the corpus's building blocks."""

    def silu(self, x):
        return self.op("Mul", x, self.op("Sigmoid", x))

    def conv_silu(self, x, cin, cout, k=3, **attrs):
        return self.silu(self.conv(x, cin, cout, k=k, pads=[k // 2] * 4, **attrs))

    def bn(self, x, c):
        r = self.rng
        return self.op("BatchNormalization", x, self.init(f32(r.uniform(0.5, 1.5, c))),
                       self.init(f32(r.normal(0, 0.2, c))), self.init(f32(r.normal(0, 0.2, c))),
                       self.init(f32(r.uniform(0.5, 2, c))))

    def written_hard_swish(self, x, before=False):
        gate = self.op("Clip", self.op("Add", x, self.init(f32(3))), self.init(f32(0)), self.init(f32(6)))
        if before:
            return self.op("Mul", x, self.op("Mul", gate, self.init(f32(1 / 6))))
        return self.op("Div", self.op("Mul", x, gate), self.init(f32([6])))

    def se(self, x, c, bias_add=False):
        s = self.op("Relu", self.conv(self.op("GlobalAveragePool", x), c, c // 2, k=1))
        s = self.conv(s, c // 2, c, k=1, bias=not bias_add)
        if bias_add:                                    # Paddle's exporter: Conv then Add(bias)
            s = self.op("Add", s, self.init(f32(self.rng.normal(0, 0.1, (1, c, 1, 1)))))
        return self.op("Mul", x, self.op("HardSigmoid", s, alpha=1 / 6, beta=0.5))

    def upsample(self, x):
        return self.op("Resize", x, "", self.init(f32([1, 1, 2, 2])), mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def check(tmp_path, net: Net, outputs, expect, transposes=0, **options):
    report = compile_verify(tmp_path, net, outputs, expect, transposes=transposes, **options)
    model = read_model((tmp_path / "out" / "m.tflite").read_bytes())
    floats = {t.name for t in model.tensors if t.dtype not in INTEGER}
    assert not floats, f"float tensors in the int8 model: {sorted(floats)[:5]}"
    path = tmp_path / "m.onnx"
    graph = optimize(load_model(path), default_pipeline("tflite"))[0]
    assert_matches_onnxruntime(path, graph, samples=2, tol=1e-4)
    return report


def test_yolov8_backbone_neck(tmp_path):
    """C2f (Split -> bottleneck with residual -> Concat), SPPF, nearest 2x Resize + Concat."""
    n = Blocks(x=(1, 3, 16, 16))
    a = n.conv_silu("x", 3, 8, strides=[2, 2])
    s0, s1 = n.op("Split", a, n.init(i64([4, 4])), outputs=2, axis=1)
    b = n.op("Add", s1, n.conv_silu(n.conv_silu(s1, 4, 4), 4, 4))
    c2f = n.conv_silu(n.op("Concat", s0, s1, b, axis=1), 12, 8, k=1)
    p = [c2f]
    for _ in range(3):
        p.append(n.op("MaxPool", p[-1], kernel_shape=[5, 5], pads=[2, 2, 2, 2]))
    sppf = n.conv_silu(n.op("Concat", *p, axis=1), 32, 8, k=1)
    y = n.conv_silu(n.op("Concat", n.upsample(n.conv_silu(sppf, 8, 8, strides=[2, 2])), c2f, axis=1), 16, 8)
    check(tmp_path, n, y, ["CONV_2D", "LOGISTIC", "MUL", "SPLIT", "CONCATENATION", "MAX_POOL_2D",
                           "RESIZE_NEAREST_NEIGHBOR"])


def test_yolov8_dfl_head_with_shape_subgraph(tmp_path):
    """Box distributions: Reshape -> Transpose -> Softmax over 16 bins -> 1x1 Conv with weights
    0..15 (the expectation) -> dist2bbox with anchors from Shape/Gather/Range/Expand, Div by 2,
    times the stride; scores Sigmoid; concatenated."""
    n = Blocks(x=(1, 8, 4, 4))
    box = n.conv("x", 8, 64, k=1)
    cls = n.op("Sigmoid", n.conv("x", 8, 3, k=1))
    d = n.op("Transpose", n.op("Reshape", box, n.init(i64([1, 4, 16, 16]))), perm=[0, 2, 1, 3])
    dfl = n.op("Conv", n.op("Softmax", d, axis=1), n.init(f32(np.arange(16)).reshape(1, 16, 1, 1)))
    dist = n.op("Reshape", dfl, n.init(i64([1, 4, 16])))
    shape = n.op("Shape", "x")                                  # anchors from the input's size
    w = n.op("Gather", shape, n.init(i64(3)), axis=0)
    xs = n.op("Cast", n.op("Range", n.init(i64(0)), w, n.init(i64(1))), to=1)
    grid = n.op("Add", n.op("Expand", n.op("Reshape", xs, n.init(i64([1, 4]))), n.init(i64([4, 4]))),
                n.init(f32(0.5)))
    anchor = n.op("Reshape", n.op("Concat", n.op("Reshape", grid, n.init(i64([1, 1, 16]))),
                                  n.op("Reshape", grid, n.init(i64([1, 1, 16]))), axis=1), n.init(i64([1, 2, 16])))
    lt, rb = n.op("Split", dist, n.init(i64([2, 2])), outputs=2, axis=1)
    x1y1, x2y2 = n.op("Sub", anchor, lt), n.op("Add", anchor, rb)
    centre = n.op("Div", n.op("Add", x1y1, x2y2), n.init(f32(2)))
    boxes = n.op("Mul", n.op("Concat", centre, n.op("Sub", x2y2, x1y1), axis=1), n.init(f32(8)))
    y = n.op("Concat", boxes, n.op("Reshape", cls, n.init(i64([1, 3, 16]))), axis=1)
    check(tmp_path, n, y, ["SOFTMAX", "CONV_2D", "SUB", "ADD", "MUL", "CONCATENATION", "LOGISTIC"],
          transposes=2)  # the model's own Transpose and one putting the 16 bins innermost for SOFTMAX


def test_yolox_focus_and_heads(tmp_path):
    """Focus: x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2] concatenated."""
    n = Blocks(x=(1, 3, 16, 16))
    parts = [n.op("Slice", "x", n.init(i64([r, c])), n.init(i64([16, 16])), n.init(i64([2, 3])),
                  n.init(i64([2, 2]))) for r, c in ((0, 0), (1, 0), (0, 1), (1, 1))]
    f = n.conv_silu(n.op("Concat", *parts, axis=1), 12, 8)
    up = n.op("Concat", n.upsample(n.conv_silu(f, 8, 8, strides=[2, 2])), f, axis=1)
    h = n.conv_silu(up, 16, 8)
    y = n.op("Concat", n.conv(h, 8, 4, k=1), n.op("Sigmoid", n.conv(h, 8, 2, k=1)), axis=1)
    check(tmp_path, n, y, ["STRIDED_SLICE", "CONCATENATION", "CONV_2D", "RESIZE_NEAREST_NEIGHBOR"])


def test_pp_lcnet_block_and_head(tmp_path):
    n = Blocks(opset=14, x=(1, 3, 16, 16))
    a = n.op("HardSwish", n.bn(n.conv("x", 3, 8, strides=[2, 2], pads=[1, 1, 1, 1], bias=False), 8))
    dw = n.op("HardSwish", n.bn(n.conv(a, 8, 8, group=8, pads=[1, 1, 1, 1], bias=False), 8))
    se = n.se(dw, 8, bias_add=True)
    pw = n.op("HardSwish", n.bn(n.conv(se, 8, 16, k=1, bias=False), 16))
    g = n.op("Mul", n.op("HardSwish", n.conv(n.op("GlobalAveragePool", pw), 16, 32, k=1)), n.init(f32([0.8])))
    flat = n.op("Concat", n.op("Slice", n.op("Shape", g), n.init(i64([0])), n.init(i64([1])), n.init(i64([0]))),
                n.init(i64([-1])), axis=0)
    logits = n.op("Add", n.op("MatMul", n.op("Reshape", g, flat), n.weight(32, 4)), n.init(f32([0.1, 0, -0.1, 0])))
    y = n.op("Softmax", logits, axis=-1)
    report = check(tmp_path, n, y, ["HARD_SWISH", "DEPTHWISE_CONV_2D", "MUL", "FULLY_CONNECTED", "SOFTMAX"])
    assert "DIV" not in report["ops"]


def test_picodet_written_hard_swish_and_heads(tmp_path):
    n = Blocks(x=(1, 3, 16, 16))
    a = n.written_hard_swish(n.bn(n.conv("x", 3, 8, strides=[2, 2], pads=[1, 1, 1, 1], bias=False), 8))
    b = n.written_hard_swish(n.bn(n.conv(a, 8, 8, group=8, pads=[1, 1, 1, 1], bias=False), 8), before=True)
    b = n.se(b, 8)
    c = n.written_hard_swish(n.bn(n.conv(b, 8, 8, strides=[2, 2], pads=[1, 1, 1, 1], bias=False), 8))
    fused = n.op("Concat", n.upsample(c), b, axis=1)
    head = n.written_hard_swish(n.bn(n.conv(fused, 16, 8, k=1, bias=False), 8))
    cls, reg = n.op("Split", n.conv(head, 8, 42, k=1), n.init(i64([10, 32])), outputs=2, axis=1)
    scores = n.op("Transpose", n.op("Reshape", n.op("Sigmoid", cls), n.init(i64([1, 10, 64]))), perm=[0, 2, 1])
    boxes = n.op("Transpose", n.op("Reshape", reg, n.init(i64([1, 32, 64]))), perm=[0, 2, 1])
    report = check(tmp_path, n, [scores, boxes], ["HARD_SWISH", "CONV_2D", "RESIZE_NEAREST_NEIGHBOR", "LOGISTIC"])
    assert report["ops"]["HARD_SWISH"] == 4 and "DIV" not in report["ops"]


def test_standalone_batchnorm_and_hard_sigmoid_on_a_shared_tensor(tmp_path):
    """A BN with no Conv before it becomes Mul + Add; a HardSigmoid whose input has other
    readers becomes Mul + Add with the clamp [0, 1]."""
    n = Blocks(x=(1, 4, 6, 6))
    c = n.conv("x", 4, 4, pads=[1, 1, 1, 1])
    b = n.bn(n.op("Relu", c), 4)
    y = n.op("Mul", n.op("HardSigmoid", b, alpha=0.2, beta=0.5), b)
    check(tmp_path, n, y, ["CONV_2D", "MUL", "ADD"])


def crnn_net(hidden: int = 8, steps: int = 6) -> tuple[Blocks, str]:
    """The CRNN pattern: conv/SiLU, [1, C, T] -> [T, 1, C], bidirectional LSTM, Gemm per step."""
    n = Blocks(x=(1, 1, 8, 2 * steps))
    a = n.conv_silu(n.conv_silu("x", 1, 4, strides=[2, 1]), 4, 4, strides=[2, 2])      # [1, 4, 2, steps]
    t = n.op("Transpose", n.op("Reshape", a, n.init(i64([1, 8, steps]))), perm=[2, 0, 1])
    zeros = n.op("ConstantOfShape", n.init(i64([2, 1, hidden])))
    y, _, _ = n.op("LSTM", t, n.weight(2, 4 * hidden, 8), n.weight(2, 4 * hidden, hidden),
                   n.init(f32(n.rng.normal(0, 0.3, (2, 8 * hidden)))), "", zeros, zeros, outputs=3,
                   direction="bidirectional", hidden_size=hidden)
    y = n.op("Reshape", n.op("Transpose", y, perm=[0, 2, 1, 3]), n.init(i64([steps, 2 * hidden])))
    return n, n.op("Gemm", y, n.weight(5, 2 * hidden), n.init(f32(n.rng.normal(0, 0.1, 5))), transB=1)


def test_crnn_bidirectional_lstm(tmp_path):
    """The LSTM is unrolled (passes/unroll_lstm.py) into FULLY_CONNECTED, ADD, LOGISTIC, TANH and
    MUL per step; Y's 12 step outputs are one Concat (TFLM's kernel takes at most 10 inputs: the
    lowering chains partial CONCATENATIONs). Two TRANSPOSEs: NHWC back to NCHW before the
    backbone's Reshape, and the model's own [1, C, T] -> [T, 1, C]."""
    steps = 6
    n, logits = crnn_net(steps=steps)
    report = check(tmp_path, n, logits, ["FULLY_CONNECTED", "LOGISTIC", "TANH", "MUL", "ADD", "SPLIT",
                                         "CONCATENATION"], transposes=2)
    assert report["ops"]["TANH"] == 2 * 2 * steps and report["ops"]["CONCATENATION"] == 3
