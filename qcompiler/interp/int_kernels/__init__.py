"""Integer reference kernels: the oracle every backend must match bit for bit.

Each kernel reproduces TensorFlow Lite Micro's reference int8 kernel for the op
it stands for -- and, where TFLM has one, its int16 kernel (TFLite's 16x8 scheme: int16
activations with zero point 0, int8 weights, int64 biases; the value types pick it) --
on the quantized IR (ONNX op names and attributes, NCHW data,
QuantParams on the values). The kernels live in sibling modules by family and
register themselves with `@int_kernel` on import; the shared fixed-point maths
is in `qcompiler.numerics.fixed_point` and every per-op parameter (multipliers, zero
points, clamps, tables, geometry) comes from `qcompiler.numerics.qops`, which the
backends read too. These modules are private to `qcompiler.interp` (tests/test_layers.py).
`tests/test_int_kernels_tflm.py` and `tests/test_int16_kernels_tflm.py` check every kernel
against the tflite-micro interpreter on random inputs and quantization parameters.

    conv     Conv (grouped, depthwise), Gemm, ConvTranspose
    eltwise  Add, Sub, Mul, PRelu
    pool     MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMean, Resize
    act      Sigmoid, Tanh, Relu, Clip, LeakyRelu, HardSwish
    softmax  Softmax (int8, int16, and the wide paths for > 511 classes), Requantize
    rsqrt    Rsqrt
    shape    Reshape, Flatten, Squeeze, Unsqueeze, Identity, Transpose, Concat, Pad,
             Slice, Split
"""
from qcompiler.interp.int_kernels.registry import INT_KERNELS, int_kernel
from qcompiler.interp.int_kernels import act, conv, eltwise, pool, rsqrt, shape, softmax  # noqa: F401

__all__ = ["INT_KERNELS", "int_kernel"]
