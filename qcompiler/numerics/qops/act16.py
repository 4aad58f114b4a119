"""LOGISTIC and TANH on int16 (TFLite's 16x8 scheme): input rescaling and the sigmoid table.

TFLM (logistic_common.cc, tanh.cc) takes zero points 0 and an output scale of 2^-15. The
input is brought to steps of 1 / (3 * 4096) -- so that +-2^17 spans +-10.67 -- by an integer
multiplier below 2^15 and a right shift:

    pot scale (log2(s) within 1e-3 of an integer k, and 12 + k == 0 for LOGISTIC,
               12 + k in {0, 1} for TANH):  multiplier 3 << (12 + k), shift 0
    otherwise: m = double(s) * 4096 * 3, doubled (shift += 1) while m <= 32767 / 2 and
               shift <= 30, then truncated to an int

    v = (x * multiplier + round) >> shift          (round = 2^(shift - 1), 0 for shift 0)

and then both kernels interpolate a 256-entry table of 65536 * sigmoid(i / 24), i = 0..255
(LOGISTIC: 9 fractional bits of |v| per entry, TANH = 2 sigmoid(2x) - 1: 8 bits). The table is
the one `sigmoid_table()` builds: like LUTPopulate, every sample but the last (65535) is
biased by half the error of linear interpolation at its interval's midpoint.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.ir import Node
from qcompiler.numerics.qops.common import QopParams, require_zero_points, scale_zp

OUTPUT_SCALE = 2.0 ** -15   # int16 LOGISTIC / TANH output, zero point 0
INPUT_INTEGER_BITS = 3


@dataclass(frozen=True, eq=False)
class Logistic16Params(QopParams):
    """Sigmoid (LOGISTIC) and Tanh on int16 (zero points 0, output 2^-15)."""

    input_multiplier: int       # < 2^15; the power-of-two case already expanded
    input_left_shift: int       # a right shift, despite TFLM's name
    table: np.ndarray           # int32 [256]: 65536 * sigmoid(i / 24), interpolation-biased


def _sigmoid(x: float) -> float:
    return 65536.0 / (1.0 + math.exp(-x))


@functools.cache
def sigmoid_table() -> np.ndarray:
    """int32 [256]: round(S(i) - (S(i) + S(i+1) - 2 S(i + 1/2)) / 4), S(x) = 65536 sigmoid(x/24),
    and 65535 last."""
    out = np.empty(256, np.int32)
    for i in range(255):
        v, mid, nxt = _sigmoid(i / 24), _sigmoid((i + 0.5) / 24), _sigmoid((i + 1) / 24)
        out[i] = min(65535, round(v - ((v + nxt) / 2 - mid) / 2))
    out[255] = 65535   # TFLM's table ends at the saturated value (65536 sigmoid(255/24) = 65534.4)
    out.flags.writeable = False
    return out


def checked_log2(x) -> tuple[int, bool]:
    """CheckedLog2 on a float32: (rounded log2, whether it is within 1e-3 of an integer)."""
    f = np.float32
    log2 = f(math.log(float(f(x)))) * (f(1.0) / f(math.log(2.0)))
    rounded = f(math.copysign(math.floor(abs(float(log2)) + 0.5), float(log2)))
    return int(rounded), bool(abs(float(log2 - rounded)) < 1e-3)


def input_rescale(input_scale, pot_shifts: tuple[int, ...]) -> tuple[int, int]:
    """(multiplier, right shift) taking int16 input steps to 1 / (3 * 4096)."""
    k, pot = checked_log2(input_scale)
    shift = (15 - INPUT_INTEGER_BITS) + k
    if pot and shift in pot_shifts:
        return 3 << shift, 0
    multiplier, shift = float(np.float32(input_scale)) * 4096.0 * 3.0, 0
    while multiplier <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        multiplier *= 2.0
    if multiplier > 32767:
        raise GraphError(f"int16 LOGISTIC / TANH input scale {float(input_scale):.6g} is too large for TFLM "
                         "(its multiplier must stay below 2^15)")
    return int(multiplier), shift


def _params(node: Node, pot_shifts: tuple[int, ...]) -> Logistic16Params:
    require_zero_points(node)
    si, _ = scale_zp(node, 0)
    so, _ = scale_zp(node, 0, output=True)
    if checked_log2(so) != (-15, True):
        raise GraphError(f"node {node.name} ({node.op}): int16 output must have scale 2^-15 and zero "
                         f"point 0 (what TFLM accepts); got s={so}")
    return Logistic16Params(*input_rescale(si, pot_shifts), sigmoid_table())


def logistic16_params(node: Node) -> Logistic16Params:
    return _params(node, (0,))


def tanh16_params(node: Node) -> Logistic16Params:
    return _params(node, (0, 1))


def logistic16_values(x, p: Logistic16Params) -> np.ndarray:
    """reference_integer_ops::Logistic on int16 values (int64 arithmetic, int16 result)."""
    v = _rescaled(x, p)
    a = np.abs(v)
    result = _interpolate(a, p.table, 9, 0x7FFF << 10)
    result = np.where(v >= 0, result + (1 << 9), (1 << 25) - result + (1 << 9) - 1)
    return (result >> 10).astype(np.int16)


def tanh16_values(x, p: Logistic16Params) -> np.ndarray:
    """reference_integer_ops::Tanh on int16 values."""
    v = _rescaled(x, p)
    a = np.abs(v)
    result = _interpolate(a, p.table, 8, 0xFFFF << 8)
    result = np.where(v >= 0, result - (1 << 23) + (1 << 7), -result + (1 << 23) + (1 << 7) - 1)
    return (result >> 8).astype(np.int16)


def _rescaled(x, p: Logistic16Params) -> np.ndarray:
    shift = p.input_left_shift
    rounding = (1 << (shift - 1)) if shift > 0 else 0
    return (np.asarray(x, np.int64) * p.input_multiplier + rounding) >> shift


def _interpolate(a, table: np.ndarray, frac_bits: int, saturated: int) -> np.ndarray:
    """(T[h] << frac_bits) + frac * (T[h + 1] - T[h]) for h = a >> frac_bits < 255, else `saturated`."""
    t = table.astype(np.int64)
    h = a >> frac_bits
    inside = h < 255
    hi = np.where(inside, h, 0)
    frac = a & ((1 << frac_bits) - 1)
    return np.where(inside, (t[hi] << frac_bits) + frac * (t[hi + 1] - t[hi]), saturated)
