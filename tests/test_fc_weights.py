"""Per-channel vs per-tensor FULLY_CONNECTED weights ("auto"): accuracy gain and TFLM arena budget."""
from __future__ import annotations

import numpy as np
import pytest

from qcompiler.ir import Graph
from qcompiler.quant.fc_weights import (activation_peak_bytes, kept_per_tensor_for_arena, per_channel_fc_layers,
                                         weight_sqnr_db)
from qcompiler.quant.fc_weights import FC_PER_CHANNEL_GAIN_DB
from qcompiler.quant.scheme import TFLITE_INT8, QuantScheme

BYTES_PER_CHANNEL = 8  # as TFLM: an int32 multiplier and an int32 shift
BIT_DB = 20 * np.log10(2)


def with_budget(g, budget: int) -> QuantScheme:
    """A scheme whose per-channel parameters take RAM, with exactly `budget` bytes allowed for g."""
    share = (budget + 0.5) / activation_peak_bytes(g)
    return QuantScheme("test", per_channel_param_bytes=BYTES_PER_CHANNEL, per_channel_param_share=share)
from qcompiler.quant.report import fc_tradeoff


def _two_layer(rows_a: np.ndarray, rows_b: np.ndarray, batch: int = 1) -> Graph:
    g = Graph("fc")
    x = g.add_input("x", np.float32, (batch, rows_a.shape[1]))
    a, = g.add_node("Gemm", [x, g.add_constant("wa", rows_a)], name="a", attrs={"transB": 1}).outputs
    r, = g.add_node("Relu", [a], name="r").outputs
    b, = g.add_node("Gemm", [r, g.add_constant("wb", rows_b)], name="b", attrs={"transB": 1}).outputs
    g.outputs.append(b)
    for v, width in ((a, rows_a.shape[0]), (r, rows_a.shape[0]), (b, rows_b.shape[0])):
        v.shape, v.dtype = (batch, width), np.dtype(np.float32)
    return g


def _layers():
    rng = np.random.default_rng(3)
    uneven = (rng.normal(0, 1, (8, 12)) * np.logspace(-2, 0, 8)[:, None]).astype(np.float32)  # folded-BN-like
    even = rng.uniform(-1, 1, (6, 8)).astype(np.float32)
    even[:, 0] = 1.0  # every row reaches max |w| = 1: per channel changes nothing
    return uneven, even


def test_weight_sqnr_gain_of_uneven_rows():
    uneven, even = _layers()
    assert weight_sqnr_db(uneven, 0) - weight_sqnr_db(uneven, None) > 5  # measured 7.4 dB
    assert weight_sqnr_db(even, 0) == pytest.approx(weight_sqnr_db(even, None))


def test_auto_picks_per_channel_only_where_rows_differ():
    g = _two_layer(*_layers())
    assert per_channel_fc_layers(g, "auto", TFLITE_INT8) == {"a"}
    assert per_channel_fc_layers(g, True, TFLITE_INT8) == {"a", "b"}
    assert per_channel_fc_layers(g, False, TFLITE_INT8) == set()


def _share_below(cost: int, w: np.ndarray) -> int:
    """The largest plain budget whose gain-scaled allowance for layer w stays below cost."""
    scale = max(1.0, (weight_sqnr_db(w, 0) - weight_sqnr_db(w, None)) / BIT_DB)
    return int(np.ceil(cost / scale)) - 1


def test_arena_budget_limits_per_channel_layers():
    g = _two_layer(*_layers())
    cost = BYTES_PER_CHANNEL * 8
    assert per_channel_fc_layers(g, "auto", with_budget(g, cost)) == {"a"}
    assert per_channel_fc_layers(g, "auto", with_budget(g, _share_below(cost, _layers()[0]))) == set()


def _starved(rows: int = 512, cols: int = 16) -> np.ndarray:
    """A classifier whose first row (a CTC blank) holds one weight 60x the others' spread:
    one scale leaves the other rows ~4 of the 255 int8 levels (+24 dB per channel)."""
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
    w[0, 0] = 3.0
    return w


def test_budget_grows_with_the_bits_per_channel_gains():
    """A layer starved by one scale (+27 dB, 4.5 bits, per channel: the CRNN's 8210-class
    classifier) may spend a share of the activation peak per bit gained; a layer gaining
    3-6 dB (MLPerf AD's bottleneck) still only the plain share."""
    starved, (uneven, _) = _starved(), _layers()
    gain = weight_sqnr_db(starved, 0) - weight_sqnr_db(starved, None)
    assert gain > 3.5 * BIT_DB
    first = np.random.default_rng(1).uniform(-1, 1, (starved.shape[1], 12)).astype(np.float32)
    first[:, 0] = 1.0  # even rows: stays per tensor
    g = _two_layer(first, starved)
    cost = BYTES_PER_CHANNEL * starved.shape[0]
    # a third of the cost as the plain share: 4 bits gained cover it, 3 would not
    assert per_channel_fc_layers(g, "auto", with_budget(g, cost // 3)) == {"b"}
    assert per_channel_fc_layers(g, "auto", with_budget(g, cost // 5)) == set()
    small = weight_sqnr_db(uneven[:3], 0) - weight_sqnr_db(uneven[:3], None)
    assert FC_PER_CHANNEL_GAIN_DB <= small < BIT_DB  # 4.9 dB
    g2 = _two_layer(uneven[:3], np.ones((3, 3), np.float32))
    assert per_channel_fc_layers(g2, "auto", with_budget(g2, 3 * BYTES_PER_CHANNEL)) == {"a"}
    assert per_channel_fc_layers(g2, "auto", with_budget(g2, 3 * BYTES_PER_CHANNEL - 1)) == set()


def test_what_the_arena_budget_gave_up_is_reported():
    """The user is told which layers stayed per tensor for the arena and what switching costs."""
    g = _two_layer(*_layers())
    cost = BYTES_PER_CHANNEL * 8
    assert kept_per_tensor_for_arena(g, with_budget(g, cost)) is None  # nothing given up
    assert kept_per_tensor_for_arena(g, TFLITE_INT8) is None  # no RAM budget, nothing to give up
    kept = kept_per_tensor_for_arena(g, with_budget(g, _share_below(cost, _layers()[0])))
    gain = weight_sqnr_db(_layers()[0], 0) - weight_sqnr_db(_layers()[0], None)
    assert kept == {"layers": ["a"], "weight_sqnr_gain_db": [round(gain, 2)] * 2, "arena_bytes": cost}
    line = fc_tradeoff({"fc_kept_per_tensor_for_arena": kept})
    assert "1 FULLY_CONNECTED layer(s)" in line and "--per-channel-fc" in line and f"{cost:,} more arena" in line
    assert fc_tradeoff({}) is None


def test_activation_peak_counts_live_int8_bytes():
    g = _two_layer(*_layers(), batch=4)
    # at node r: a (4x8) and r (4x8); at node a: x (4x12) and a; 16-byte aligned: 48 + 32 = 80
    assert activation_peak_bytes(g) == 80
