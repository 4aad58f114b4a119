"""Integer fixed-point arithmetic emitted as Relax ops: the Relax mirror of `fixed_point`.

Every helper takes and returns int64 Relax tensors that hold int32 values (the
C++ kernels' int32 intermediates), so products of two int32 values never
overflow and every int32 wrap or saturation of the reference is spelled out
(`wrap32`, the SRDHM overflow case, `sat_rounding_mul_pot`). Operands that are
known at compile time are numpy values: scalars become inline constants, arrays
become named parameters of the Relax function (see `RelaxEmitter.array`).

    em = RelaxEmitter(bb)
    y = em.requantize(acc_int32, multipliers, shifts, out_zp, lo, hi)   # -> int8
"""
from __future__ import annotations

import re

import numpy as np
from tvm import relax

from qcompiler.numerics.fixed_point import INT32_MAX, INT32_MIN

R = relax.op


def _sanitize(name: str) -> str:
    """A Python/TVMScript identifier derived from an IR name."""
    s = re.sub(r"\W", "_", name).strip("_") or "v"
    return f"v_{s}" if s[0].isdigit() else s


def dtype_of(expr) -> str:
    """The element dtype of a Relax tensor expression."""
    return str(expr.ty.dtype)


def shape_of(expr) -> tuple[int, ...]:
    """The static shape of a Relax tensor expression."""
    return tuple(int(d) for d in expr.ty.shape.values)


class RelaxEmitter:
    """Emits integer ops into a BlockBuilder; collects array constants as function parameters."""

    def __init__(self, bb: relax.BlockBuilder):
        self.bb = bb
        self.params: dict[str, np.ndarray] = {}   # name -> array, in creation order
        self.param_vars: list[relax.Var] = []
        self._names: set[str] = set()
        self.out_dtype = "int8"   # the type of the node being lowered (int8, or int16 for 16x8)

    # ---- naming, constants, parameters ------------------------------------------
    def unique(self, base: str) -> str:
        name, k = _sanitize(base), 1
        stem = name
        while name in self._names:
            name, k = f"{stem}_{k}", k + 1
        self._names.add(name)
        return name

    def emit(self, expr, name: str = ""):
        return self.bb.emit(expr, name_hint=_sanitize(name) if name else "")

    def array(self, arr: np.ndarray, name: str) -> relax.Var:
        """A compile-time array as a named parameter (bound into the .so at build time).

        Arrays are parameters rather than inline constants because TVM 0.27 cannot
        print or serialize tensor constants (`show_meta` crashes), and a parameter
        keeps the TVMScript text self-contained: the values go to `<name>_params.npz`.
        """
        arr = np.ascontiguousarray(arr)
        var = relax.Var(self.unique(name), relax.TensorType(arr.shape, str(arr.dtype)))
        self.params[var.name] = arr
        self.param_vars.append(var)
        return var

    def const(self, value, dtype: str = "int64", name: str = "c"):
        """An operand: Relax exprs pass through; scalars inline; arrays become parameters."""
        if isinstance(value, relax.Expr):
            return value
        arr = np.asarray(value).astype(dtype)
        # a uniform array broadcasts like its scalar (operands here never raise the rank)
        if arr.size and np.all(arr == arr.flat[0]):
            return relax.const(arr.reshape(-1)[:1].reshape(()), dtype)
        return self.array(arr, name)

    # ---- casts and clamps ---------------------------------------------------------
    def cast(self, x, dtype: str):
        return x if dtype_of(x) == dtype else self.emit(R.astype(x, dtype))

    def i64(self, x):
        return self.cast(x, "int64")

    def wrap32(self, x):
        """Two's-complement wrap of int64 values to int32 (truncating cast and back)."""
        return self.emit(R.astype(self.emit(R.astype(x, "int32")), "int64"))

    def clamp_cast(self, x, lo: int, hi: int, dtype: str | None = None):
        """clip(x, lo, hi) then cast (default: to the node's output type); a bound at x's own
        dtype limit is a no-op and is left out."""
        dtype = dtype or self.out_dtype
        info = np.iinfo(dtype_of(x))
        if lo > info.min:
            x = self.emit(R.maximum(x, self.const(lo, dtype_of(x))))
        if hi < info.max:
            x = self.emit(R.minimum(x, self.const(hi, dtype_of(x))))
        return self.cast(x, dtype)

    def minus_zp(self, x, zero_point):
        """x - zero_point in int64: a quantized operand about its zero point."""
        return self.emit(R.subtract(self.i64(x), self.const(zero_point)))

    def plus_zp_clamp(self, y, zero_point, lo: int, hi: int, dtype: str | None = None):
        """y + zero_point, clamped to [lo, hi] and cast: the last step of a requantization."""
        return self.clamp_cast(self.emit(R.add(y, self.const(zero_point))), lo, hi, dtype)

    def select(self, cond, a, b):
        return self.emit(R.where(cond, self.const(a), self.const(b)))

    # ---- gemmlowp primitives (fixed_point equivalents) ----------------------------
    def sign_mask(self, x):
        """-1 where x < 0, else 0 (arithmetic shift of the int64 sign bit)."""
        return self.emit(R.right_shift(x, self.const(63)))

    def trunc_shr(self, x, bits: int):
        """x / 2^bits truncated toward zero (C++ division): negatives get 2^bits - 1 first."""
        bias = self.emit(R.bitwise_and(self.sign_mask(x), self.const((1 << bits) - 1)))
        return self.emit(R.right_shift(self.emit(R.add(x, bias)), self.const(bits)))

    def srdhm(self, a, b, name: str = "m"):
        """SaturatingRoundingDoublingHighMul of int32 values (fixed_point.saturating_...).

        gemmlowp adds 2^30 (ab >= 0) or 1 - 2^30 (ab < 0) and truncates the division by
        2^31 toward zero; for negative ab that is floor((ab + 1 - 2^30 + 2^31 - 1) / 2^31),
        so both cases are the single floor shift (ab + 2^30) >> 31.
        """
        static_b = not isinstance(b, relax.Expr)
        bexpr = self.const(b, name=name)
        ab = self.emit(R.multiply(a, bexpr))
        res = self.emit(R.right_shift(self.emit(R.add(ab, self.const(1 << 30))), self.const(31)))
        if static_b and not np.any(np.asarray(b) == INT32_MIN):
            return res  # the only overflow case needs b == INT32_MIN
        both_min = self.emit(R.logical_and(self.emit(R.equal(a, self.const(INT32_MIN))),
                                           self.emit(R.equal(bexpr, self.const(INT32_MIN)))))
        return self.emit(R.where(both_min, self.const(INT32_MAX), res))

    def rdbpot(self, x, exponent, name: str = "e"):
        """RoundingDivideByPOT (round half away from zero) as one floor shift.

        gemmlowp's remainder / threshold test equals adding 2^(e-1) (x >= 0) or
        2^(e-1) - 1 (x < 0) before the arithmetic shift; e = 0 adds nothing.
        The exponent is static (scalar or per-channel array) or a runtime tensor.
        """
        if isinstance(exponent, relax.Expr):
            half = self.emit(R.right_shift(self.emit(R.left_shift(self.const(1), exponent)),
                                           self.const(1)))
            nudge = self.emit(R.where(self.emit(R.less(x, self.const(0))),
                                      self.emit(R.maximum(self.emit(R.subtract(half, self.const(1))),
                                                          self.const(0))), half))
            return self.emit(R.right_shift(self.emit(R.add(x, nudge)), exponent))
        e = np.asarray(exponent, np.int64)
        if not np.any(e):
            return x
        half = (np.int64(1) << e) >> 1
        if np.all(e > 0):  # x + (-1 if x < 0) + 2^(e-1)
            x = self.emit(R.add(x, self.sign_mask(x)))
            nudged = self.emit(R.add(x, self.const(half, name=f"{name}_half")))
        else:
            neg = self.const(np.maximum(half - 1, 0), name=f"{name}_half_neg")
            nudge = self.emit(R.where(self.emit(R.less(x, self.const(0))), neg,
                                      self.const(half, name=f"{name}_half")))
            nudged = self.emit(R.add(x, nudge))
        return self.emit(R.right_shift(nudged, self.const(e, name=name)))

    def mbqm(self, x, multiplier, shift, name: str = "rq"):
        """MultiplyByQuantizedMultiplier (double rounding) with static multiplier / shift."""
        shift = np.asarray(shift, np.int64)
        left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
        if np.any(left):
            x = self.wrap32(self.emit(R.left_shift(x, self.const(left, name=f"{name}_lshift"))))
        y = self.srdhm(x, np.asarray(multiplier, np.int64), name=f"{name}_mult")
        return self.rdbpot(y, right, name=f"{name}_rshift")

    def mbqm_int64(self, x, multiplier, shift, name: str = "rq"):
        """The int64-accumulator MultiplyByQuantizedMultiplier of 16x8 CONV_2D / FULLY_CONNECTED
        (fixed_point.multiply_by_quantized_multiplier_int64): 16-bit multiplier, one rounding
        shift, wrapped to int32. |x| < 2^47 and M16 < 2^15 keep the product inside int64."""
        m = np.asarray(multiplier, np.int64)
        m16 = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
        total = 15 - np.asarray(shift, np.int64)
        y = self.emit(R.multiply(x, self.const(m16, name=f"{name}_mult16")))
        y = self.emit(R.add(y, self.const(np.int64(1) << (total - 1), name=f"{name}_round")))
        return self.wrap32(self.emit(R.right_shift(y, self.const(total, name=f"{name}_rshift"))))

    def mbqm_smaller_than_one(self, x, multiplier, left_shift, name: str = "rq"):
        """MultiplyByQuantizedMultiplierSmallerThanOneExp (left_shift <= 0)."""
        y = self.srdhm(x, np.asarray(multiplier, np.int64), name=f"{name}_mult")
        return self.rdbpot(y, -np.asarray(left_shift, np.int64), name=f"{name}_rshift")

    def requantize(self, acc, multiplier, shift, out_zp: int, lo: int, hi: int, name: str = "rq"):
        """int32 accumulator -> int8: MBQM + zero point, clamp to the activation range."""
        return self.plus_zp_clamp(self.mbqm(self.i64(acc), multiplier, shift, name), out_zp, lo, hi)

    def rounded_mean(self, total, count, name: str = "count"):
        """TFLM average: (|sum| + count/2) / count with the sign of sum (count > 0, static)."""
        count = np.asarray(count, np.int64)
        c, half = self.const(count, name=name), self.const(count // 2, name=f"{name}_half")
        mag = self.emit(R.floor_divide(self.emit(R.add(self.emit(R.abs(total)), half)), c))
        neg = self.emit(R.negative(mag))
        return self.emit(R.where(self.emit(R.less(total, self.const(0))), neg, mag))

    # ---- gemmlowp fixed point used by Softmax -------------------------------------
    def sat_rounding_mul_pot(self, x, exponent: int):
        """SaturatingRoundingMultiplyByPOT with a static exponent."""
        if exponent <= 0:
            return self.rdbpot(x, -exponent)
        threshold = (1 << (31 - exponent)) - 1
        res = self.wrap32(self.emit(R.left_shift(x, self.const(exponent))))
        res = self.emit(R.where(self.emit(R.greater(x, self.const(threshold))),
                                self.const(INT32_MAX), res))
        return self.emit(R.where(self.emit(R.less(x, self.const(-threshold))),
                                 self.const(INT32_MIN), res))

    def rounding_half_sum(self, a, b):
        s = self.emit(R.add(a, self.const(b)))
        s = self.emit(R.add(s, self.select(self.emit(R.greater_equal(s, self.const(0))), 1, -1)))
        return self.trunc_shr(s, 1)

    def one_over_one_plus_x(self, a):
        """1 / (1 + a), a in [0, 1) Q0.31: three Newton-Raphson steps (gemmlowp)."""
        half_den = self.rounding_half_sum(a, INT32_MAX)
        x = self.wrap32(self.emit(R.add(self.srdhm(half_den, -1010580540), self.const(1515870810))))
        for _ in range(3):
            one_minus = self.wrap32(self.emit(R.subtract(self.const(1 << 29),
                                                         self.srdhm(half_den, x))))
            x = self.wrap32(self.emit(R.add(x, self.sat_rounding_mul_pot(self.srdhm(x, one_minus), 2))))
        return self.sat_rounding_mul_pot(x, 1)

    def clz32(self, x):
        """Count of leading zero bits of x read as uint32 (32 for 0), by binary search."""
        n = self.const(0)
        for k in (16, 8, 4, 2, 1):
            top_clear = self.emit(R.less(x, self.const(1 << (32 - k))))
            n = self.emit(R.add(n, self.select(top_clear, k, 0)))
            x = self.emit(R.where(top_clear, self.emit(R.left_shift(x, self.const(k))), x))
        return self.emit(R.add(n, self.cast(self.emit(R.equal(x, self.const(0))), "int64")))

    def reciprocal(self, x, integer_digits: int):
        """GetReciprocal: (Q0.31 scale, num_bits_over_unit) with 1/x = scale * 2^-bits."""
        ux = self.emit(R.bitwise_and(x, self.const(0xFFFFFFFF)))
        headroom = self.clz32(ux)
        shifted = self.wrap32(self.emit(R.subtract(self.emit(R.left_shift(ux, headroom)),
                                                   self.const(1 << 31))))
        bits = self.emit(R.subtract(self.const(integer_digits), headroom))
        return self.one_over_one_plus_x(shifted), bits
