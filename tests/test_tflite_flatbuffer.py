"""Tests for the .tflite writer/reader: runtimes accept and agree on its output,
round trips are exact, output is deterministic, deduplicated and aligned."""

import copy

import numpy as np
import pytest

from qcompiler.backends.tflite import flatbuffer as fb


TflTensor, TflOperator, TflModel = fb.TflTensor, fb.TflOperator, fb.TflModel

# TFLM's copy of the generated schema is an independent raw reader (the
# `tflite` package patches OperatorCode.BuiltinCode to fall back to the
# deprecated field, which would hide a missing builtin_code).
schema = pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")
runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
litert = pytest.importorskip("ai_edge_litert.interpreter")

ALL_OPCODES = [
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL",
    "CONCATENATION", "PAD", "PADV2", "MEAN", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE",
    "TRANSPOSE", "STRIDED_SLICE", "SPLIT", "SPLIT_V", "SOFTMAX", "LOGISTIC", "TANH",
    "HARD_SWISH", "LEAKY_RELU", "PRELU", "RELU", "RELU6", "RESIZE_NEAREST_NEIGHBOR",
    "RESIZE_BILINEAR", "QUANTIZE", "DEQUANTIZE", "MAXIMUM", "MINIMUM", "SQUEEZE",
]
ARENA = 64 * 1024


# --- model construction --------------------------------------------------------

def quantize(real, scale, zero_point, dtype=np.int8):
    """Reference affine quantization: round half away from zero, then clamp."""
    info = np.iinfo(dtype)
    v = np.asarray(real, np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def conv2d_same_nhwc(x, w):
    """Float NHWC conv, stride 1, SAME padding with zeros; w is OHWI."""
    kh, kw = w.shape[1:3]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    h, wd = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (w.shape[0],))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,oc->nhwo", xp[:, i:i + h, j:j + wd, :], w[:, i, j, :])
    return out


class TinyNet:
    """CONV_2D(per-channel, int32 bias, RELU) -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX.

    Model outputs: [softmax, conv] so the conv result can be checked directly.
    """

    in_scale, in_zp = 0.02, -5

    def __init__(self, seed=1234):
        rng = np.random.default_rng(seed)
        self.rng = rng
        w = rng.normal(0, 0.3, (4, 3, 3, 3))
        self.w_scale = np.abs(w).reshape(4, -1).max(axis=1) / 127
        self.w_q = quantize(w, self.w_scale[:, None, None, None], 0)
        self.b_scale = self.in_scale * self.w_scale
        self.b_q = quantize(rng.normal(0, 0.2, 4), self.b_scale, 0, np.int32)
        # Output ranges from one float pass over a calibration-like input.
        conv = self.conv_real(self.sample_input())
        self.conv_scale, self.conv_zp = max(conv.max(), 1e-3) / 255, -128
        conv_deq = self.conv_scale * (quantize(conv, self.conv_scale, -128).astype(float) + 128)
        fc_w = rng.normal(0, 0.05, (10, 256))
        self.fc_w_scale = np.abs(fc_w).max() / 127
        self.fc_w_q = quantize(fc_w, self.fc_w_scale, 0)
        self.fc_b_q = quantize(rng.normal(0, 0.1, 10), self.conv_scale * self.fc_w_scale, 0, np.int32)
        fc = conv_deq.reshape(1, 256) @ (self.fc_w_q * self.fc_w_scale).T
        self.fc_scale = (fc.max() - fc.min()) / 255
        self.fc_zp = int(round(-128 - fc.min() / self.fc_scale))

    def sample_input(self):
        return quantize(self.rng.uniform(-2.4, 2.4, (1, 8, 8, 3)), self.in_scale, self.in_zp)

    def conv_real(self, x_q):
        """Float CONV_2D+RELU on the dequantized int8 operands (the oracle)."""
        x = self.in_scale * (x_q.astype(float) - self.in_zp)
        w = self.w_q * self.w_scale[:, None, None, None]
        return np.maximum(conv2d_same_nhwc(x, w) + self.b_q * self.b_scale, 0.0)

    def model(self) -> TflModel:
        t = [
            TflTensor("input", (1, 8, 8, 3), "int8", scale=[self.in_scale], zero_point=[self.in_zp]),
            TflTensor("conv/w", (4, 3, 3, 3), "int8", self.w_q, list(self.w_scale), [0] * 4, 0),
            TflTensor("conv/b", (4,), "int32", self.b_q, list(self.b_scale), [0] * 4, 0),
            TflTensor("conv", (1, 8, 8, 4), "int8", scale=[self.conv_scale], zero_point=[self.conv_zp]),
            TflTensor("reshape/shape", (2,), "int32", np.array([1, 256])),
            TflTensor("flat", (1, 256), "int8", scale=[self.conv_scale], zero_point=[self.conv_zp]),
            TflTensor("fc/w", (10, 256), "int8", self.fc_w_q, [self.fc_w_scale], [0]),
            TflTensor("fc/b", (10,), "int32", self.fc_b_q, [self.conv_scale * self.fc_w_scale], [0]),
            TflTensor("logits", (1, 10), "int8", scale=[self.fc_scale], zero_point=[self.fc_zp]),
            TflTensor("probs", (1, 10), "int8", scale=[1 / 256], zero_point=[-128]),
        ]
        ops = [
            TflOperator("CONV_2D", [0, 1, 2], [3], {"padding": "SAME", "stride_w": 1, "stride_h": 1,
                                                    "fused_activation_function": "RELU"}),
            TflOperator("RESHAPE", [3, 4], [5], {"new_shape": [1, 256]}),
            TflOperator("FULLY_CONNECTED", [5, 6, 7], [8]),
            TflOperator("SOFTMAX", [8], [9], {"beta": 1.0}),
        ]
        return TflModel(t, ops, inputs=[0], outputs=[9, 3])


@pytest.fixture(scope="module")
def net():
    return TinyNet()


@pytest.fixture(scope="module")
def tiny_bytes(net):
    return fb.write_model(net.model())


def run_tflm(data, inputs):
    interp = runtime.Interpreter.from_bytes(data, arena_size=ARENA)
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    return interp


def run_litert(data, inputs):
    interp = litert.Interpreter(model_content=data)
    interp.allocate_tensors()
    for detail, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def raw_model(data):
    return schema.Model.GetRootAs(data, 0)


# --- runtimes --------------------------------------------------------------------

def test_tflm_and_litert_run_and_agree(net, tiny_bytes):
    for _ in range(3):
        x = net.sample_input()
        tflm = run_tflm(tiny_bytes, [x])
        tflm_out = [tflm.get_output(0), tflm.get_output(1)]
        lite_out = run_litert(tiny_bytes, [x])
        for got, shape in zip(tflm_out, [(1, 10), (1, 8, 8, 4)]):
            assert got.shape == shape and got.dtype == np.int8
        for a, b in zip(tflm_out, lite_out):
            assert a.shape == b.shape and a.dtype == b.dtype
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
        # The softmax output is a probability distribution: sums to ~1.
        probs = (tflm_out[0].astype(float) + 128) / 256
        assert abs(probs.sum() - 1.0) < 0.05
        assert len(np.unique(tflm_out[1])) > 10  # the conv output is not degenerate


def test_conv_matches_float_oracle_within_one_lsb(net, tiny_bytes):
    x = net.sample_input()
    got = run_tflm(tiny_bytes, [x]).get_output(1).astype(int)
    want = quantize(net.conv_real(x), net.conv_scale, net.conv_zp).astype(int)
    assert np.abs(got - want).max() <= 1
    assert (got == want).mean() > 0.9


def test_shared_constant_buffers_are_accepted_by_both_runtimes():
    model, _ = dedup_models()
    x = np.arange(-8, 8, dtype=np.int8).reshape(1, 16)
    data = fb.write_model(model)
    tflm = run_tflm(data, [x]).get_output(0)
    lite = run_litert(data, [x])[0]
    # y = x + 2c with scales all 1 and c = 1..16 -> exact integer arithmetic.
    want = np.clip(x.astype(int) + 2 * np.arange(1, 17), -128, 127)
    assert np.array_equal(tflm, want) and np.array_equal(lite, want)


# One minimal, valid int8 model per opcode. Running each in LiteRT checks the
# op version table (LiteRT refuses versions its kernels do not register) and
# running it in TFLM checks the options are what the kernels expect.
Q = {"scale": [0.05], "zero_point": [3]}
X = (1, 4, 4, 4)


def act(name, shape=X, dtype="int8", **quant):
    return TflTensor(name, shape, dtype, **(quant or (Q if dtype == "int8" else {})))


def const(name, values, dtype="int32", shape=None, **quant):
    values = np.asarray(values)
    return TflTensor(name, values.shape if shape is None else shape, dtype, values, **quant)


def _per_channel(name, shape, axis):
    rng = np.random.default_rng(7)
    scales = list(rng.uniform(0.005, 0.02, shape[axis]))
    return const(name, rng.integers(-127, 128, shape), "int8", scale=scales,
                 zero_point=[0] * shape[axis], quantized_dimension=axis)


def _unary(opcode, options=None, out=None, extra=()):
    """x -> op(x, *extra constants) -> y."""
    tensors = [act("x"), *extra, out or act("y")]
    n = len(tensors)
    return tensors, TflOperator(opcode, list(range(n - 1)), [n - 1], options or {})


def _binary(opcode):
    return [act("x"), act("x2"), act("y")], TflOperator(opcode, [0, 1], [2])


SINGLE_OP_CASES = {
    "DEPTHWISE_CONV_2D": lambda: _unary(
        "DEPTHWISE_CONV_2D", {"depth_multiplier": 1},
        extra=[_per_channel("w", (1, 3, 3, 4), 3), const("b", np.arange(4), scale=[1e-3] * 4)]),
    "TRANSPOSE_CONV": lambda: (
        [const("out_shape", [1, 8, 8, 2]), _per_channel("w", (2, 3, 3, 4), 0), act("x"),
         const("b", [5, -5], scale=[1e-3] * 2), act("y", (1, 8, 8, 2))],
        TflOperator("TRANSPOSE_CONV", [0, 1, 2, 3], [4], {"stride_w": 2, "stride_h": 2})),
    "ADD": lambda: _binary("ADD"),
    "SUB": lambda: _binary("SUB"),
    "MUL": lambda: _binary("MUL"),
    "MAXIMUM": lambda: _binary("MAXIMUM"),
    "MINIMUM": lambda: _binary("MINIMUM"),
    "CONCATENATION": lambda: (
        [act("x"), act("x2"), act("y", (1, 4, 4, 8))], TflOperator("CONCATENATION", [0, 1], [2], {"axis": 3})),
    "PAD": lambda: _unary("PAD", out=act("y", (1, 6, 6, 4)),
                          extra=[const("p", [[0, 0], [1, 1], [1, 1], [0, 0]])]),
    "PADV2": lambda: _unary("PADV2", out=act("y", (1, 6, 6, 4)),
                            extra=[const("p", [[0, 0], [1, 1], [1, 1], [0, 0]]),
                                   const("v", [3], "int8", **Q)]),
    "MEAN": lambda: _unary("MEAN", {"keep_dims": True}, act("y", (1, 1, 1, 4)), [const("axes", [1, 2])]),
    "MAX_POOL_2D": lambda: _unary("MAX_POOL_2D", {"padding": "VALID", "stride_w": 2, "stride_h": 2,
                                                  "filter_width": 2, "filter_height": 2},
                                  act("y", (1, 2, 2, 4))),
    "AVERAGE_POOL_2D": lambda: _unary("AVERAGE_POOL_2D", {"padding": "SAME", "filter_width": 3,
                                                          "filter_height": 3}),
    "TRANSPOSE": lambda: _unary("TRANSPOSE", extra=[const("perm", [0, 2, 1, 3])]),
    "STRIDED_SLICE": lambda: _unary("STRIDED_SLICE", out=act("y", (1, 2, 4, 4)),
                                    extra=[const("b", [0, 1, 0, 0]), const("e", [1, 3, 4, 4]),
                                           const("s", [1, 1, 1, 1])]),
    "SPLIT": lambda: (
        [const("axis", 3, shape=()), act("x"), act("y0", (1, 4, 4, 2)), act("y1", (1, 4, 4, 2))],
        TflOperator("SPLIT", [0, 1], [2, 3], {"num_splits": 2})),
    "SPLIT_V": lambda: (
        [act("x"), const("sizes", [1, 3]), const("axis", 3, shape=()),
         act("y0", (1, 4, 4, 1)), act("y1", (1, 4, 4, 3))],
        TflOperator("SPLIT_V", [0, 1, 2], [3, 4], {"num_splits": 2})),
    "SOFTMAX": lambda: _unary("SOFTMAX", out=act("y", scale=[1 / 256], zero_point=[-128])),
    "LOGISTIC": lambda: _unary("LOGISTIC", out=act("y", scale=[1 / 256], zero_point=[-128])),
    "TANH": lambda: _unary("TANH", out=act("y", scale=[1 / 128], zero_point=[0])),
    "HARD_SWISH": lambda: _unary("HARD_SWISH"),
    "LEAKY_RELU": lambda: _unary("LEAKY_RELU", {"alpha": 0.1}),
    "PRELU": lambda: _unary("PRELU", extra=[const("alpha", [10, -20, 30, 40], "int8", shape=(1, 1, 4),
                                                  scale=[0.01], zero_point=[0])]),
    "RELU": lambda: _unary("RELU"),
    "RELU6": lambda: _unary("RELU6"),
    "RESIZE_NEAREST_NEIGHBOR": lambda: _unary("RESIZE_NEAREST_NEIGHBOR", out=act("y", (1, 8, 8, 4)),
                                              extra=[const("size", [8, 8])]),
    "RESIZE_BILINEAR": lambda: _unary("RESIZE_BILINEAR", {"half_pixel_centers": True},
                                      act("y", (1, 8, 8, 4)), [const("size", [8, 8])]),
    "QUANTIZE": lambda: (
        [act("x", dtype="float32"), act("y")], TflOperator("QUANTIZE", [0], [1])),
    "DEQUANTIZE": lambda: (
        [act("x"), act("y", dtype="float32")], TflOperator("DEQUANTIZE", [0], [1])),
    "SQUEEZE": lambda: _unary("SQUEEZE", {"squeeze_dims": [0]}, act("y", (4, 4, 4))),
}


@pytest.mark.parametrize("opcode", sorted(SINGLE_OP_CASES))
def test_single_op_models_run_in_tflm_and_litert(opcode):
    tensors, op = SINGLE_OP_CASES[opcode]()
    graph_in = [i for i in op.inputs if tensors[i].data is None]
    model = TflModel(tensors, [op], graph_in, op.outputs)
    data = fb.write_model(model)
    rng = np.random.default_rng(3)
    feeds = []
    for i in graph_in:
        t = tensors[i]
        feeds.append(rng.uniform(-3, 3, t.shape).astype(np.float32) if t.dtype == "float32"
                     else rng.integers(-128, 128, t.shape).astype(np.int8))
    tflm = run_tflm(data, feeds)
    lite = run_litert(data, feeds)
    for k, out in enumerate(op.outputs):
        got = tflm.get_output(k)
        assert got.shape == tensors[out].shape and got.shape == lite[k].shape
        assert np.abs(got.astype(float) - lite[k].astype(float)).max() <= (
            1e-5 if got.dtype == np.float32 else 2), opcode


def test_single_op_cases_cover_every_opcode():
    assert set(SINGLE_OP_CASES) | {"CONV_2D", "RESHAPE", "FULLY_CONNECTED"} == set(ALL_OPCODES)


# --- structure -------------------------------------------------------------------

def test_round_trip_is_exact(net, tiny_bytes):
    model = net.model()
    back = fb.read_model(tiny_bytes)
    assert back == model
    assert back.tensors[1].scale == model.tensors[1].scale  # per-channel scales survive
    assert back.operators[0].options["fused_activation_function"] == "RELU"
    assert fb.write_model(back) == tiny_bytes


def test_writer_is_deterministic(net, tiny_bytes):
    assert fb.write_model(net.model()) == tiny_bytes
    assert fb.write_model(copy.deepcopy(net.model())) == tiny_bytes
    assert fb.write_model(TinyNet().model()) == tiny_bytes


def test_header_opcodes_and_versions(tiny_bytes):
    m = raw_model(tiny_bytes)
    assert m.Version() == 3
    assert tiny_bytes[4:8] == b"TFL3"
    codes = [m.OperatorCodes(i) for i in range(m.OperatorCodesLength())]
    # CONV_2D=3, RESHAPE=22, FULLY_CONNECTED=9, SOFTMAX=25 in first-use order.
    assert [c.BuiltinCode() for c in codes] == [3, 22, 9, 25]
    assert [c.DeprecatedBuiltinCode() for c in codes] == [3, 22, 9, 25]
    assert [c.Version() for c in codes] == [3, 1, 4, 2]


def test_activations_use_the_empty_sentinel_buffer(net, tiny_bytes):
    m = raw_model(tiny_bytes)
    assert m.Buffers(0).DataLength() == 0
    sg = m.Subgraphs(0)
    for i, t in enumerate(net.model().tensors):
        buf = sg.Tensors(i).Buffer()
        assert (buf == 0) == (t.data is None), t.name
        if t.data is not None:
            assert m.Buffers(buf).DataAsNumpy().tobytes() == t.data.tobytes()


def dedup_models():
    """ADD(ADD(x, c1), c2) with c1 == c2, and the same with c2 changed."""
    c = np.arange(1, 17, dtype=np.int8).reshape(1, 16)

    def build(c2):
        q = {"scale": [1.0], "zero_point": [0]}
        t = [TflTensor("x", (1, 16), "int8", **q), TflTensor("c1", (1, 16), "int8", c, **q),
             TflTensor("y", (1, 16), "int8", **q), TflTensor("c2", (1, 16), "int8", c2, **q),
             TflTensor("z", (1, 16), "int8", **q)]
        ops = [TflOperator("ADD", [0, 1], [2]), TflOperator("ADD", [2, 3], [4])]
        return TflModel(t, ops, [0], [4])

    other = c.copy()
    other[0, 0] = 99
    return build(c.copy()), build(other)


def test_identical_constants_share_one_buffer():
    same, different = dedup_models()
    same_bytes, different_bytes = fb.write_model(same), fb.write_model(different)
    sg = raw_model(same_bytes).Subgraphs(0)
    assert sg.Tensors(1).Buffer() == sg.Tensors(3).Buffer() != 0
    assert raw_model(same_bytes).BuffersLength() == 2
    assert raw_model(different_bytes).BuffersLength() == 3
    assert len(same_bytes) + 16 <= len(different_bytes)
    assert raw_model(same_bytes).OperatorCodesLength() == 1  # ADD once


def test_buffer_data_is_16_byte_aligned(tiny_bytes):
    # Constants of 108, 16, 8, 2560 and 40 bytes, plus odd-sized metadata.
    model = fb.read_model(tiny_bytes)
    model.metadata = {"odd": b"abc", "OfflineMemoryAllocation": bytes(range(7))}
    data = fb.write_model(model)
    m = raw_model(data)
    checked = 0
    for i in range(m.BuffersLength()):
        buf = m.Buffers(i)
        if buf.DataLength():
            offset = buf._tab.Vector(buf._tab.Offset(4))  # absolute file offset
            assert offset % 16 == 0, (i, offset)
            checked += 1
    assert checked == 7
    assert [o for o, n in fb.buffer_data_offsets(data) if n] == \
        [m.Buffers(i)._tab.Vector(m.Buffers(i)._tab.Offset(4))
         for i in range(m.BuffersLength()) if m.Buffers(i).DataLength()]
    assert fb.read_model(data).metadata == model.metadata


# --- options table ---------------------------------------------------------------

NON_DEFAULT_OPTIONS = {
    "CONV_2D": {"padding": "VALID", "stride_w": 2, "stride_h": 3, "fused_activation_function": "RELU6",
                "dilation_w_factor": 2, "dilation_h_factor": 1},
    "DEPTHWISE_CONV_2D": {"padding": "VALID", "depth_multiplier": 2, "stride_w": 2,
                          "fused_activation_function": "RELU_N1_TO_1"},
    "FULLY_CONNECTED": {"keep_num_dims": True, "weights_format": "DEFAULT",
                        "fused_activation_function": "RELU"},
    "TRANSPOSE_CONV": {"padding": "VALID", "stride_w": 2, "stride_h": 2},
    "ADD": {"fused_activation_function": "RELU"},
    "SUB": {"fused_activation_function": "RELU6", "pot_scale_int16": False},
    "MUL": {"fused_activation_function": "TANH"},
    "CONCATENATION": {"axis": -1},
    "MEAN": {"keep_dims": True},
    "MAX_POOL_2D": {"padding": "VALID", "stride_w": 2, "stride_h": 2, "filter_width": 3,
                    "filter_height": 2},
    "AVERAGE_POOL_2D": {"filter_width": 7, "filter_height": 7},
    "RESHAPE": {"new_shape": [1, -1]},
    "STRIDED_SLICE": {"begin_mask": 1, "end_mask": 2, "shrink_axis_mask": 8},
    "SPLIT": {"num_splits": 2},
    "SPLIT_V": {"num_splits": 3},
    "SOFTMAX": {"beta": 0.5},
    "LEAKY_RELU": {"alpha": 0.1},
    "RESIZE_NEAREST_NEIGHBOR": {"half_pixel_centers": True},
    "RESIZE_BILINEAR": {"align_corners": True},
    "SQUEEZE": {"squeeze_dims": [1, 2]},
}


@pytest.mark.parametrize("opcode", ALL_OPCODES)
def test_every_opcode_round_trips_with_its_options(opcode):
    q = {"scale": [0.1], "zero_point": [0]}
    tensors = [TflTensor("a", (1, 4, 4, 4), "int8", **q), TflTensor("b", (1, 4, 4, 4), "int8", **q),
               TflTensor("c", (1, 4, 4, 4), "int8", **q)]
    op = TflOperator(opcode, [0, 1], [2], NON_DEFAULT_OPTIONS.get(opcode, {}))
    for name, value in NON_DEFAULT_OPTIONS.get(opcode, {}).items():
        assert op.options[name] == pytest.approx(value)
    model = TflModel(tensors, [op], [0, 1], [2])
    back = fb.read_model(fb.write_model(model))
    assert back == model
    assert back.operators[0].options == op.options


def test_version_bumps_follow_the_converter():
    model, _ = dedup_models()
    model.operators = [TflOperator("FULLY_CONNECTED", [0, 1, -1], [2], {"keep_num_dims": True})]
    m = raw_model(fb.write_model(model))
    assert m.OperatorCodes(0).Version() == 5
    model.operators = [TflOperator("FULLY_CONNECTED", [0, 1], [2])]
    assert raw_model(fb.write_model(model)).OperatorCodes(0).Version() == 6


# --- errors ----------------------------------------------------------------------

def test_unknown_opcode_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="FROBNICATE"):
        TflOperator("FROBNICATE", [0], [1])
    model, _ = dedup_models()
    model.operators[0].opcode = "FROBNICATE"  # bypassing the constructor check
    with pytest.raises(ValueError, match="FROBNICATE"):
        fb.write_model(model)


def test_unknown_option_and_bad_enum_raise_value_error():
    with pytest.raises(ValueError, match="strides"):
        TflOperator("CONV_2D", [0, 1, 2], [3], {"strides": 2})
    with pytest.raises(ValueError, match="FULL"):
        TflOperator("CONV_2D", [0, 1, 2], [3], {"padding": "FULL"})
    with pytest.raises(ValueError, match="filter_width"):
        TflOperator("MAX_POOL_2D", [0], [1], {"filter_height": 2})


def test_bad_tensor_data_raises_value_error():
    with pytest.raises(ValueError, match="does not fit"):
        TflTensor("w", (2,), "int8", np.array([1, 300]))
    with pytest.raises(ValueError, match="elements"):
        TflTensor("w", (3,), "int8", np.array([1, 2]))
    with pytest.raises(ValueError, match="dtype"):
        TflTensor("w", (3,), "float64")
