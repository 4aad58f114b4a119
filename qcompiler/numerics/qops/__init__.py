"""Per-op integer parameters, computed once for the reference kernels and every backend.

For each op of the integer reference, `<op>_params(node) -> <Op>Params` computes from the
node's QuantParams and attributes exactly the numbers TFLite Micro's Prepare computes:
zero points, requantization multipliers and shifts (per channel where TFLM keeps them per
channel), the activation clamp, lookup tables and geometry such as pooled sizes. The
integer kernels (`qcompiler.interp.int_kernels`), the TVM lowering and the TFLite lowering
read their numbers from here, so a formula is written once; `tests/test_qops.py` checks
them against hand-computed values and the kernels against the tflite-micro interpreter
(`tests/test_int_kernels_tflm.py`).

    p = qops.conv_params(node)      # ConvParams(input_zero_point=-3, ..., multiplier=array([...]))
    qops.QOPS[node.op](node)        # the same, by op name

The records are frozen dataclasses (`QopParams`) holding only ints, tuples of ints, short
strings and read-only numpy integer arrays with C-sized dtypes (int32 multipliers / shifts /
indices, int16 / int8 tables); `items()` lists the fields in declaration order. They are
meant to be printed as they are: the coming interpreter-free C backend (`--target c`)
emits each record as `const` scalars and arrays next to the kernel that reads them.
Conventions: shifts follow QuantizeMultiplier (positive = left shift, M * 2^(shift - 31));
zero points are stored as zero points (TFLM's OpData often holds their negation, the offset);
shapes are NCHW, (h, w) pairs and (top, left, bottom, right) pads. Functions whose numbers
depend on a runtime shape or operand take optional `shape` / `values` (a kernel passes
its own) and otherwise read the IR's static shapes and constants.

Modules: common (quantization access, the activation clamp -- the one reader of the
fused clamp attribute here --, per-channel multipliers, the int16 checks), conv, eltwise,
pool, act, act16 (int16 LOGISTIC / TANH), softmax (with Requantize and the wide-softmax
rules), shape (Pad). Every record serves int8 and int16 (TFLite's 16x8 scheme) alike where
TFLM's kernels share the formula; conv records say how wide the accumulator is.
"""
from qcompiler.numerics.qops.act import (ClipParams, HardSwishParams, LeakyReluParams, LogisticParams,
                                         ReluParams, RsqrtParams, calculate_input_radius, clip_bounds, clip_params,
                                         float_to_quantized, hard_swish_multipliers, hard_swish_params,
                                         leaky_relu_params, logistic_params, logistic_tanh_multiplier,
                                         relu_params, rsqrt_multiplier, rsqrt_params, rsqrt_values,
                                         tanh_params)
from qcompiler.numerics.qops.act16 import Logistic16Params, logistic16_params, sigmoid_table, tanh16_params
from qcompiler.numerics.qops.common import (QopParams, accumulator_bits, activation_clamp, activation_range,
                                            channel_multipliers, is_int16, qparams, require_same_quant,
                                            require_zero_points, scale_zp)
from qcompiler.numerics.qops.conv import (ConvParams, FullyConnectedParams, conv_params,
                                          conv_real_multipliers, conv_transpose_params, fc_params,
                                          fc_real_multiplier)
from qcompiler.numerics.qops.eltwise import (ADD_LEFT_SHIFT, ADD_LEFT_SHIFT_INT16, AddParams, MulParams,
                                             PReluParams, add_left_shift, add_multipliers, add_params,
                                             mul_params, prelu_params)
from qcompiler.numerics.qops.pool import (GlobalPoolParams, MeanParams, PoolParams, ResizeParams,
                                          global_pool_params, mean_axes, mean_multiplier, mean_params, pool_params,
                                          pooled_size, resize_mode, resize_params)
from qcompiler.numerics.qops.shape import (PadParams, SliceParams, SplitParams, pad_params, slice_params,
                                           split_params)
from qcompiler.numerics.qops.softmax import (RequantizeParams, Softmax16Params, SoftmaxParams,
                                             requantize_params, requantize_params_for, softmax8_params,
                                             softmax16_params, softmax_input_multiplier, softmax_params)

# op name -> <op>_params(node); ops missing here only move raw values (shape.py's docstring)
QOPS = {
    "Conv": conv_params, "ConvTranspose": conv_transpose_params, "Gemm": fc_params,
    "Add": add_params, "Sub": add_params, "Mul": mul_params, "PRelu": prelu_params,
    "MaxPool": pool_params, "AveragePool": pool_params, "GlobalAveragePool": global_pool_params,
    "ReduceMean": mean_params, "Resize": resize_params,
    "Sigmoid": logistic_params, "Tanh": tanh_params, "Relu": relu_params, "Clip": clip_params,
    "LeakyRelu": leaky_relu_params, "HardSwish": hard_swish_params, "Rsqrt": rsqrt_params,
    "Softmax": softmax_params, "Requantize": requantize_params, "Pad": pad_params,
    "Slice": slice_params, "Split": split_params, "GlobalMaxPool": global_pool_params,
}

__all__ = [
    "QOPS", "QopParams", "activation_clamp", "activation_range", "channel_multipliers", "qparams",
    "require_same_quant", "scale_zp", "accumulator_bits", "is_int16", "require_zero_points",
    "Logistic16Params", "logistic16_params", "tanh16_params", "sigmoid_table",
    "ConvParams", "FullyConnectedParams", "conv_params", "conv_transpose_params", "fc_params",
    "conv_real_multipliers", "fc_real_multiplier",
    "AddParams", "MulParams", "PReluParams", "ADD_LEFT_SHIFT", "ADD_LEFT_SHIFT_INT16", "add_left_shift", "add_multipliers", "add_params",
    "mul_params", "prelu_params",
    "PoolParams", "GlobalPoolParams", "MeanParams", "ResizeParams", "pool_params", "global_pool_params",
    "mean_params", "mean_axes", "mean_multiplier", "pooled_size", "resize_mode", "resize_params",
    "LogisticParams", "ReluParams", "ClipParams", "LeakyReluParams", "HardSwishParams", "RsqrtParams",
    "logistic_params", "tanh_params", "relu_params", "clip_params", "clip_bounds", "leaky_relu_params",
    "hard_swish_params", "rsqrt_params", "calculate_input_radius", "logistic_tanh_multiplier",
    "hard_swish_multipliers", "rsqrt_multiplier", "rsqrt_values", "float_to_quantized",
    "SoftmaxParams", "Softmax16Params", "RequantizeParams", "softmax_params", "softmax8_params",
    "softmax16_params", "softmax_input_multiplier", "requantize_params", "requantize_params_for",
    "PadParams", "pad_params", "SliceParams", "slice_params", "SplitParams", "split_params",
]
