"""Calibration: streaming statistics of every activation, range choice.

Data comes from `samples.py` (loading and checking the files, one feed per sample); the
statistics are fixed-size histograms (`observers.py`), so memory does not grow with the
number of samples.

The float forward passes run in onnxruntime on the exported IR (every
activation made a graph output) when it is installed, else in the numpy
interpreter; both see the same float graph.

Range rules per tensor (`choose_ranges`):
- graph inputs: min-max (an input range is a property of the data format:
  clipping pixels or features only loses information);
- tensors feeding Softmax / graph outputs ("logits"): min-max as well, since
  clipping the largest logit changes the argmax;
- the input x of a SiLU, x * Sigmoid(x) ("silu"), is no logit: its range minimizes the
  SiLU's expected error (observers.consumer_mse_range): far below 0 the SiLU is 0 whatever
  x is, above 0 it passes x on, so clipping costs there what it costs any hidden tensor.
  (Kept at min-max as a Sigmoid input, YOLO detectors' every conv output lost up to 5 dB.)
  Not under --calib-method minmax, nor for schemes listing the role in `minmax_roles`;
- outputs of the first weighted layer (Conv / Gemm / MatMul reading a graph
  input, possibly through layout-only ops): min-max too, for the asymmetric int8
  (TFLite) scheme (the scheme's `minmax_roles` include "first"). Their error reaches every later layer,
  and what a percentile clips there is the strongest response to the input
  (edges, loud frames), not an accumulation outlier. Under ncnn's symmetric
  activations (half the steps for a ReLU output) the clip is worth more and the
  rule is off; the measurements behind both are in README "Defaults";
- everything else: the chosen method (minmax | percentile | kl | mse).
"""
from __future__ import annotations

import itertools
import sys
from collections import deque
from typing import Callable, Iterable

import numpy as np

from qcompiler.errors import CalibrationError, ModelLoadError
from qcompiler.interp import FLOAT_KERNELS, Interpreter
from qcompiler.ir import Graph
from qcompiler.quant.scheme import TFLITE_INT8
from qcompiler.quant.observers import HistogramObserver, select_range
from qcompiler.quant.samples import (DEFAULT_MAX_BYTES, iterate_samples, load_samples, rows,  # noqa: F401
                                     sample_count, source_name)  # (re-exported: callers import them from here)

METHODS = ("minmax", "percentile", "kl", "mse")
FIXED_RANGE_OPS = {"Softmax", "Sigmoid", "Tanh", "ArgMax"}
FIRST_LAYER_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
LAYOUT_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Pad", "Identity"}
def values_per_sample(graph: Graph) -> int:
    """Activation values one sample produces (every node output): what simulating it costs."""
    return sum(int(np.prod(v.shape)) for n in graph.nodes for v in n.outputs if v.shape)


# Float activation bytes one step may hold at once (calibration's samples in flight, the
# per-layer report's samples): a big model gets fewer samples per step, not more memory.
# (A 416x416 detector has 147 MB of activations per sample: calibration held 17 of them.)
ACTIVATION_BYTES = 512 << 20


def samples_in_memory(graph: Graph) -> int:
    """How many samples' float activations fit in ACTIVATION_BYTES (at least 1)."""
    return max(1, ACTIVATION_BYTES // (4 * max(values_per_sample(graph), 1)))


def samples_within(graph: Graph, values: int, at_least: int, at_most: int | None = None) -> int:
    """How many samples' activations fit in `values` (what simulating them costs), kept
    within [at_least, at_most]."""
    count = max(at_least, values // max(values_per_sample(graph), 1))
    return count if at_most is None else min(at_most, count)


def spread_indices(total: int, count: int) -> list[int]:
    """`count` sample indices spread evenly over `total` (deterministic subsampling)."""
    if count >= total:
        return list(range(total))
    return sorted({int(i) for i in np.linspace(0, total - 1, count).round()})


class _Progress:
    """A one-line progress counter on stderr, only when stderr is a terminal."""

    def __init__(self, what: str, total: int | None):
        self.what, self.total = what, total
        self.on = sys.stderr.isatty()

    def step(self, i: int) -> None:
        if self.on and (i % 8 == 0 or i == self.total):
            of = f"/{self.total}" if self.total else ""
            sys.stderr.write(f"\rqcc: {self.what} {i}{of}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


def float_activations(graph: Graph) -> list[str]:
    """Names of the float tensors calibration observes, in a stable order."""
    names = [v.name for v in graph.inputs if np.issubdtype(v.dtype, np.floating)]
    for n in graph.nodes:
        names += [v.name for v in n.outputs if np.issubdtype(v.dtype, np.floating)]
    return list(dict.fromkeys(names))


ORT_ERRORS_ONLY = 3  # onnxruntime's warnings (coloured shape-merge notes) are not the user's business


class FloatRunner:
    """Runs the float graph and returns every float activation, in onnxruntime if possible."""

    def __init__(self, graph: Graph, prefer_onnxruntime: bool = True):
        self.graph = graph
        self.names = float_activations(graph)
        self.engine = "interpreter"
        self._session = None
        if prefer_onnxruntime:
            self._session = self._make_session()
        if self._session is None:
            # a snapshot, like the session: later in-place edits of `graph` (activation
            # equalization rescales constants) must not change what this runner computes
            self._interp = Interpreter(graph.copy(), FLOAT_KERNELS)

    def _make_session(self):
        try:
            import onnxruntime as ort
            from onnx import helper

            from qcompiler.frontend.onnx_export import graph_to_onnx
            model = graph_to_onnx(self.graph)
            outs = {o.name for o in model.graph.output}
            by_name = {v.name: v for v in self.graph.values()}
            for name in self.names:
                v = by_name[name]
                if name not in outs and v.producer is not None:
                    model.graph.output.append(helper.make_tensor_value_info(
                        name, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape) if v.shape else None))
            opts = ort.SessionOptions()
            opts.log_severity_level = ORT_ERRORS_ONLY
            # one thread: results must not depend on the machine's core count (deterministic ranges)
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            self._out_names = [o.name for o in sess.get_outputs()]
            self.engine = "onnxruntime"
            return sess
        except Exception:  # not installed or cannot run this graph: the interpreter always can
            return None

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is not None:
            try:
                outs = self._session.run(self._out_names, feed)
            except Exception as e:  # onnxruntime found the model invalid only now (e.g. a bad attribute)
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelLoadError(f"onnxruntime cannot run the model: {first}") from None
            res = dict(zip(self._out_names, outs))
            res.update(feed)
            return {k: res[k] for k in self.names if k in res}
        return {**feed, **self._interp.run(feed, keep=self.names)}


def float_reference(graph):
    """Float outputs of the optimized IR: onnxruntime when it runs the graph, else the float interpreter."""
    try:
        import onnxruntime as ort

        from qcompiler.frontend.onnx_export import graph_to_onnx
        opts = ort.SessionOptions()
        opts.log_severity_level = ORT_ERRORS_ONLY
        sess = ort.InferenceSession(graph_to_onnx(graph).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception:  # not installed, or cannot run this graph: the interpreter always can
        return Interpreter(graph, FLOAT_KERNELS).run
    names = [v.name for v in graph.outputs]
    return lambda feed: dict(zip(names, sess.run(names, {k: np.asarray(v, np.float32) for k, v in feed.items()})))


# samples per observer update after the first one: the histograms come out the same (the first
# sample alone fixes the bin width, later ones only add counts and widen the window, and the
# window's growth depends on the union of the values only), with an eighth of the numpy calls
OBSERVE_BATCH = 8
# ... except for tensors of at least this many values per sample, observed sample by sample
# (the same histograms, for the same reason): stacking them would only copy them once more
OBSERVE_ALONE = 1 << 16


# activations beyond this magnitude (float32's largest is 3.4e38) cannot be quantized in any
# useful way and overflow the histogram arithmetic: calibration stops, naming the tensor
LARGEST_ACTIVATION = 1e30


def _observe_all(obs: dict, batch: list[dict], watches=()) -> None:
    with np.errstate(all="ignore"):
        try:
            _observe_batch(obs, batch, watches)
        except (OverflowError, ValueError, FloatingPointError) as e:
            bad = next((name for name in obs for acts in batch if name in acts
                        and not np.all(np.abs(acts[name]) < LARGEST_ACTIVATION)), None)
            if bad is None:
                raise
            raise CalibrationError(_extreme_message(bad, batch)) from e


def _extreme_message(name: str, batch: list[dict]) -> str:
    values = np.concatenate([np.asarray(a[name], np.float64).ravel() for a in batch if name in a])
    return (f"activation {name} reaches {values[np.argmax(np.abs(np.nan_to_num(values, nan=np.inf)))]:.3g} during "
            "calibration, beyond what int8 quantization can represent; check the model's weights and the "
            "calibration data for extreme values")


def _observe_batch(obs: dict, batch: list[dict], watches=()) -> None:
    for name in obs:
        arrs = [acts[name] for acts in batch if name in acts]
        o, watchers = obs[name], [w for w in watches if name in w.names]
        if arrs and not (o.moments or watchers) and (not o.keeps_histogram or arrs[0].size >= OBSERVE_ALONE):
            for a in arrs:  # extremes only, or big arrays: no need to stack (a copy) first
                o.observe(a)
        elif arrs:
            stacked = arrs[0] if len(arrs) == 1 else np.concatenate(arrs)
            o.observe(stacked)
            for w in watchers:
                w.watch(name, stacked)


def _run_and_tap(runner: FloatRunner, feed: dict, index: int, tap) -> dict:
    # runs in the one forward-pass thread, so taps see the samples in order (and their numpy
    # work overlaps with the observers in the calling thread)
    acts = runner.run(feed)
    if tap is not None:
        tap(index, acts)
    return acts


def collect_statistics(graph: Graph, feeds: Iterable[dict[str, np.ndarray]], total: int | None = None,
                       runner: FloatRunner | None = None,
                       tap: Callable[[int, dict], None] | None = None, watches=(),
                       range_only: Iterable[str] = (),
                       ) -> tuple[dict[str, HistogramObserver], int, str]:
    """Observe every float activation over `feeds`: ({name: observer}, sample count, engine).

    Tensors in `range_only` keep only their extremes (no histogram): for those whose range
    will be min-max anyway (`minmax_tensors`), which saves most of the observers' work.

    For statistics a later step would otherwise need another float pass for:
    `tap(index, activations)` sees every sample's float activations, in order; each of
    `watches` (objects with `names` and `watch(name, array)`) sees its tensors in batches
    of samples stacked on axis 0, in order, next to the observers.
    """
    from concurrent.futures import ThreadPoolExecutor

    runner = runner or FloatRunner(graph)
    inputs = {v.name for v in graph.inputs}
    range_only = set(range_only)
    obs = {name: HistogramObserver(moments=name in inputs, histogram=name not in range_only)
           for name in runner.names}
    progress = _Progress("calibrating", total)
    count = 0
    # forward passes run up to `ahead` samples ahead of the observers (onnxruntime releases
    # the GIL); observations still happen in sample order, so results are unchanged. At most
    # 2 x `ahead` samples' activations are held at once (pending + batch).
    ahead = max(1, min(OBSERVE_BATCH, samples_in_memory(graph) // 2))
    batch: list[dict] = []
    pending: deque = deque()
    submitted = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        for feed in itertools.chain(feeds, [None]):
            if feed is not None:
                pending.append(pool.submit(_run_and_tap, runner, feed, submitted, tap))
                submitted += 1
            while pending and (feed is None or len(pending) > ahead):
                acts = pending.popleft().result()
                batch.append(acts)
                count += 1
                if count == 1 or len(batch) == ahead:
                    _observe_all(obs, batch, watches)
                    batch = []
                progress.step(count)
        _observe_all(obs, batch, watches)
    progress.done()
    if count == 0:
        raise CalibrationError("calibration needs at least one sample")
    for name, o in obs.items():
        if not (np.isfinite(o.min) and np.isfinite(o.max)):
            raise CalibrationError(f"activation {name} reached a non-finite value during calibration "
                                   f"(range {o.min}..{o.max}); check the model's weights and the data")
        if max(abs(o.min), abs(o.max)) >= LARGEST_ACTIVATION:
            raise CalibrationError(f"activation {name} reaches {max(abs(o.min), abs(o.max)):.3g} during "
                                   "calibration, beyond what int8 quantization can represent; check the "
                                   "model's weights and the calibration data for extreme values")
    return obs, count, runner.engine


def silu_inputs(graph: Graph) -> set[str]:
    """Tensors x read only by a Sigmoid and by a Mul of x with that Sigmoid's output (SiLU)."""
    outputs = {v.name for v in graph.outputs}
    found = set()
    for n in graph.nodes:
        if n.op != "Sigmoid" or not n.inputs or n.inputs[0] is None or n.inputs[0].name in outputs:
            continue
        x, s = n.inputs[0], n.outputs[0]
        muls = [c for c in x.consumers if c.op == "Mul" and {id(v) for v in c.inputs} == {id(x), id(s)}]
        if muls and all(c is n or c in muls for c in x.consumers):
            found.add(x.name)
    return found


def tensor_roles(graph: Graph) -> dict[str, str]:
    """"input", "logits" (feeds Softmax/Sigmoid/... or is a graph output), "silu" (the input
    of a SiLU), "first" (output of a weighted layer fed by a graph input) or "hidden"."""
    roles = {v.name: "input" for v in graph.inputs}
    for v in graph.outputs:
        roles.setdefault(v.name, "logits")
    for name in silu_inputs(graph):
        roles.setdefault(name, "silu")
    for n in graph.nodes:
        if n.op in FIXED_RANGE_OPS and n.inputs and n.inputs[0] is not None:
            roles.setdefault(n.inputs[0].name, "logits")
    raw = {v.name for v in graph.inputs}  # graph inputs, maybe re-laid-out
    for n in graph.nodes:  # kept in topological order (Graph.verify)
        data = n.inputs[0] if n.inputs else None
        if data is None or data.name not in raw:
            continue
        if n.op in LAYOUT_OPS:
            raw.update(v.name for v in n.outputs)
        elif n.op in FIRST_LAYER_OPS:
            for v in n.outputs:
                roles.setdefault(v.name, "first")
    return roles


def minmax_tensors(graph: Graph, method: str, also: Iterable[str] = (),
                   minmax_roles: Iterable[str] = TFLITE_INT8.minmax_roles,
                   roles: dict[str, str] | None = None) -> set[str]:
    """Tensors whose range `choose_ranges(..., also, minmax_roles)` takes as the observed
    min-max (their observers need no histogram); `roles`: `tensor_roles(graph)` if known."""
    roles = tensor_roles(graph) if roles is None else roles
    names = {v.name for v in graph.values()}
    if method == "minmax":
        return names
    fixed = set(minmax_roles)
    return {n for n in names if roles.get(n, "hidden") in fixed} | set(also)


def choose_ranges(graph: Graph, observers: dict[str, HistogramObserver], method: str,
                  percentile: float = 99.99, also: Iterable[str] = (),
                  minmax_roles: Iterable[str] = TFLITE_INT8.minmax_roles) -> dict[str, tuple[float, float]]:
    """{tensor name: (lo, hi)} from the observers, per the rules in the module docstring;
    tensors in `also` get min-max as well (a later step sets their range), and so do the
    tensors whose role (`tensor_roles`) is one of the scheme's `minmax_roles`."""
    if method not in METHODS:
        raise CalibrationError(f"calibration method {method!r} is not available "
                               f"(choose {', '.join(METHODS)})")
    roles = tensor_roles(graph)
    minmax = minmax_tensors(graph, method, also, minmax_roles, roles)
    ranges = {}
    for name, o in observers.items():
        rule = "minmax" if name in minmax else "silu" if roles.get(name) == "silu" else method
        ranges[name] = select_range(o, rule, percentile)
    return ranges


def calibrate(graph: Graph, feeds: Iterable[dict[str, np.ndarray]], method: str = "minmax",
              percentile: float = 99.99) -> dict[str, tuple[float, float]]:
    """Run the float graph over `feeds` and return {value name: (lo, hi)}."""
    if method not in METHODS:
        choose_ranges(graph, {}, method)  # raises the clear error before any work
    obs, _, _ = collect_statistics(graph, feeds, range_only=minmax_tensors(graph, method))
    return choose_ranges(graph, obs, method, percentile)
