"""Integer Rsqrt against TFLite Micro's int8 RSQRT (all 256 input codes) and TVM's table.

The harness (one-op TFLite models in the tflite-micro interpreter) is the one of
test_int_kernels_tflm.py. TFLM refuses inputs below the zero point, so every case
feeds the codes from the zero point up; with the quantizer's zero point -128
(Rsqrt inputs start at 0) that is all 256 codes.
"""
from __future__ import annotations

import numpy as np
import pytest

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import GraphError
from qcompiler.interp import run_int
from qcompiler.ir import Graph

pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
from test_int_kernels_tflm import Case, assert_same, ours, pq  # noqa: E402

# (in scale, in zp, out scale, out zp). The first two tell the runtime's multiplier maths
# apart: double sqrt and product match TFLM, the float32 form the source spells does not
# (first case), nor does a float32 sqrt with a double product (second case).
PARAMS = [
    (0.00574630219489336, -128, 0.2703792154788971, -39),
    (0.0010492554865777493, -128, 0.13193579018115997, -79),
    (0.2904353141784668, -128, 0.0034869874361902475, -44),
    (1 / 255, -128, 1 / 255, -128),          # decompose_lrn's typical z -> r: (0, 1] both sides
    (4.0, -128, 0.004, -128),                # large inputs: small outputs
    (0.001, -128, 0.2, 50),                  # outputs saturate at 127 for small inputs
    (0.05, -20, 0.03, -128),                 # zero point inside the range: codes below it refused
]


def _tflm_rsqrt(x: np.ndarray, qi, qo) -> np.ndarray:
    c = Case()
    xi = c.input(x.reshape(1, 1, 1, -1), qi)
    out = c.tensor((1, 1, 1, x.size), q=qo)
    c.op("RSQRT", [xi], [out])
    return c.run([out])[0].reshape(-1)


@pytest.mark.parametrize("si,zi,so,zo", PARAMS)
def test_rsqrt_every_code_matches_tflm(si, zi, so, zo):
    qi, qo = pq(si, zi), pq(so, zo)
    x = np.arange(zi, 128, dtype=np.int8)
    mine = ours("Rsqrt", {}, [(x, qi, False)], qo)[0]
    assert_same(mine, _tflm_rsqrt(x, qi, qo))


@pytest.mark.parametrize("seed", range(4))
def test_rsqrt_random_parameters_match_tflm(seed):
    rng = np.random.default_rng(seed)
    for _ in range(8):
        qi = pq(np.float32(10 ** rng.uniform(-3, 1)), -128)
        qo = pq(np.float32(10 ** rng.uniform(-3, 0)), int(rng.integers(-128, 60)))
        x = np.arange(-128, 128, dtype=np.int8)
        assert_same(ours("Rsqrt", {}, [(x, qi, False)], qo)[0], _tflm_rsqrt(x, qi, qo))


def test_rsqrt_below_zero_point_is_refused_like_tflm():
    qi, qo = pq(0.1, 0), pq(0.01, -128)
    x = np.array([-5, 0, 3], np.int8)
    with pytest.raises(RuntimeError):
        _tflm_rsqrt(x, qi, qo)
    with pytest.raises(GraphError, match=r"Rsqrt.*below its zero point 0"):
        ours("Rsqrt", {}, [(x, qi, False)], qo)


def test_inv_sqrt_multiplier_over_int32():
    """GetInvSqrtQuantizedMultiplierExp: M * 2^(shift-31) ~ 1/sqrt(x) on the whole int32 range
    (the bit-pair normalization and the x >= 2^29 branch are not reached by int8 inputs)."""
    x = np.unique(np.concatenate([np.arange(2, 5000), 2 ** np.arange(1, 31), 2 ** np.arange(1, 31) - 1,
                                  [qm.INT32_MAX]]))
    m, s = qm.inv_sqrt_multiplier_exp(x)
    approx = m.astype(np.float64) * 2.0 ** (s.astype(np.float64) - 31)
    assert np.all(np.abs(approx * np.sqrt(x) - 1) < 2e-6)
    assert qm.inv_sqrt_multiplier_exp([0, 1])[0].tolist() == [qm.INT32_MAX] * 2


def test_rsqrt_tvm_table_is_bit_exact():
    tvm = pytest.importorskip("tvm")
    from tvm import relax

    from qcompiler.backends.tvm.build import build, run_vm
    from qcompiler.backends.tvm.lower import bind_params, lower_graph
    g = Graph("rsqrt")
    x = g.add_input("x", np.int8, (2, 128))
    x.quant = pq(0.02, -128)
    (y,) = g.add_node("Rsqrt", [x]).outputs
    y.quant, y.shape, y.dtype = pq(0.01, -100), (2, 128), np.dtype(np.int8)
    g.outputs.append(y)
    feed = np.arange(-128, 128, dtype=np.int8).reshape(2, 128)
    vm = relax.VirtualMachine(build(bind_params(lower_graph(g)), "llvm"), tvm.cpu())
    got = run_vm(vm, [feed])[0]
    np.testing.assert_array_equal(got, run_int(g, {"x": feed})[y.name])
