"""QuantScheme: what differs between the integer schemes runtimes execute.

A backend names the scheme its runtime runs; everything in `qcompiler.quant` reads the
scheme instead of asking which target it compiles for.

    TFLITE_INT8   the TFLite int8 specification: asymmetric int8 activations, symmetric
                  int8 weights (per output channel for convolutions), int32 biases; qcc
                  builds the integer IR and its reference interpreter is the oracle;
                  fused activations RELU, RELU6 and RELU_N1_TO_1, other clamps by range.
    TFLITE_INT16  TFLite's 16x8 scheme: symmetric int16 activations (zero point 0), the
                  same int8 weights, int64 biases for CONV_2D / DEPTHWISE_CONV_2D /
                  FULLY_CONNECTED; every activation range is its min-max (with 65536
                  steps, clipping outliers costs more than their steps save), widened by
                  one bit of headroom (`range_headroom`, see INT16_RANGE_HEADROOM).
    (ncnn's symmetric scheme is defined by its backend: qcc only calibrates ranges there.)
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from qcompiler.ir.activation import INF

# Range rules: tensor roles (see calibration.tensor_roles) whose range is the observed
# min-max whatever --calib-method says.
IO_ROLES = frozenset({"input", "logits"})
ALL_ROLES = frozenset({"input", "logits", "silu", "first", "hidden"})


@dataclass(frozen=True)
class QuantScheme:
    """One integer scheme.

    integer_ir: qcc builds the integer IR (quantize_graph, bias correction, the per-layer
        report); False when the backend quantizes by itself from the calibrated ranges.
    symmetric_activations: activation ranges are symmetric around zero (zero point 0).
    minmax_roles: tensor roles that keep their min-max range; the TFLite scheme adds the
        first weighted layer's outputs ("first"): its asymmetric int8 gives a ReLU output
        all 256 steps, so clipping its outliers buys less than it costs downstream.
    activation_equalization: per-channel gains between a conv and the depthwise conv it
        feeds are allowed (they need per-channel weights on both).
    per_channel_param_bytes: runtime RAM the runtime keeps per output channel of a layer
        with per-channel weights, next to the activations (TFLM: an int32 multiplier and an
        int32 shift in its arena); 0 when they live in flash or cost nothing.
    per_channel_param_share: share of the activation memory such parameters may take
        before fully connected layers fall back to per-tensor weights (FC weights "auto");
        None: no budget (16x8: int16 activations already trade memory for fidelity).
    bias_bits: width of the biases of convolutions and fully connected layers.
    fused_clamps: the clamps (lo, hi) the runtime applies as a fused activation of any op
        (None: every clamp). Any other fused clamp (qcompiler/ir/activation.py) is realized
        by the int8 range of its output: the quantizer gives that tensor exactly [lo, hi]
        (the calibrated value on an unbounded side), so that saturating to int8 is the
        clamp and the op runs with no activation. Needs lo <= 0 <= hi (zero representable).
    range_headroom: factor by which every calibrated activation range of this width is
        widened (about zero) before the graph's range rules apply (`with_headroom`).
    """

    name: str
    integer_ir: bool = True
    activation_bits: int = 8
    symmetric_activations: bool = False
    weight_bits: int = 8
    minmax_roles: frozenset = IO_ROLES | {"first"}
    activation_equalization: bool = True
    per_channel_param_bytes: int = 0
    per_channel_param_share: float | None = 0.05
    bias_bits: int = 32
    fused_clamps: frozenset | None = None
    range_headroom: float = 1.0

    def clamp_by_range(self, clamp: tuple[float, float] | None) -> bool:
        """True when a node's fused `clamp` is realized by its output's int8 range."""
        return clamp is not None and self.fused_clamps is not None and clamp not in self.fused_clamps

    @property
    def weight_qmax(self) -> int:
        """Symmetric weight range [-qmax, qmax] (int8: 127, as TFLite requires)."""
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def activation_dtype(self) -> np.dtype:
        return np.dtype(f"int{self.activation_bits}")


# TFLite's fused activations: RELU, RELU6, RELU_N1_TO_1
TFLITE_INT8 = QuantScheme("tflite-int8", fused_clamps=frozenset({(0.0, INF), (0.0, 6.0), (-1.0, 1.0)}))
# int16 ranges get one of int16's 8 extra bits as headroom: an evaluation input up to twice the
# largest calibrated value passes unclipped, and the steps stay 128x finer than int8's. Min-max
# on the calibration set clips evaluation data (AD, whose evaluation set holds louder perturbed
# machines: 0.05-0.1 % of the values of its input and 8 of its 10 layers, 14 % of the output
# rows), and int16 eval SQNR gains with 2x (1x -> 1.25x / 2x / 4x, dB): AD 38.68 -> 40.95 /
# 40.94 / 40.94 (its int8-weight ceiling), KWS 38.67 -> 40.07 / 39.90 / 39.52, VWW 43.57 ->
# 46.49 / 46.44 / 46.54, IC 31.98 -> 32.15 / 32.20 / 31.87, digits_resnet 43.11 -> 47.93 /
# 47.93 / 47.92 (digits_cnn, digits_dwsep, kws_savedmodel within -0.01..+0.45). AD with float
# weights and int16 activations only: 43.10 dB at 1x, 78.6 dB at 2x.
INT16_RANGE_HEADROOM = 2.0
TFLITE_INT16 = replace(TFLITE_INT8, name="tflite-int16", activation_bits=16, symmetric_activations=True,
                       minmax_roles=ALL_ROLES, bias_bits=64, per_channel_param_share=None,
                       range_headroom=INT16_RANGE_HEADROOM)
