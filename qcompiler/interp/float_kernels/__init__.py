"""Float reference kernels (numpy, ONNX semantics), checked against onnxruntime.

    core    elementwise maths, activations, reductions, Softmax, Einsum-free MatMul/Gemm
    nn      Conv, ConvTranspose, pooling, normalization, LRN and the shared helpers
    resize  Resize / Upsample
    rnn     LSTM
    shape   layout and shape ops (Reshape, Transpose, Concat, Slice, Gather, ...)
"""
from qcompiler.interp.float_kernels.registry import FLOAT_KERNELS, float_kernel
from qcompiler.interp.float_kernels import core, nn, resize, rnn, shape  # noqa: F401  (register on import)

__all__ = ["FLOAT_KERNELS", "float_kernel"]
