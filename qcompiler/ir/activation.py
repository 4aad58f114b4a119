"""Fused activations: what the `fused_activation` attribute of a node means.

Fusion passes set it on the producer of a Relu / Clip; its value names a clamp of the
node's output in float units. The float interpreter applies the clamp; integer kernels
narrow their output range to it; each backend maps the names to its own encoding by a table.
"""
from __future__ import annotations

import numpy as np

# name -> (low, high) clamp of the output, float units
FUSED_ACTIVATION_RANGES = {"RELU": (0.0, np.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
