"""Is an exit-0 run silently wrong? Run the emitted .tflite (LiteRT) and the mutated model
(onnxruntime) on the same inputs, in child processes, and compare."""
from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from .case import Case
from .models import ModelSpec
from .sandbox import child_env, normalize, run_limited

CHECK_SAMPLES = 4           # samples fed to onnxruntime and LiteRT for the silently-wrong check
REL_TOL = 0.3               # |emitted - onnxruntime| / reference output range

REF_CODE = r"""
import sys, numpy as np, onnxruntime as ort
model, feed, out = sys.argv[1:4]
so = ort.SessionOptions()
so.log_severity_level = 4
so.intra_op_num_threads = so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
if len(s.get_inputs()) != 1:
    raise SystemExit("the model has %d inputs" % len(s.get_inputs()))
x = np.load(feed)["x"]
name = s.get_inputs()[0].name
res = [s.run(None, {name: x[k:k + 1]}) for k in range(len(x))]
np.savez(out, **{"o%d" % i: np.concatenate([np.asarray(r[i]) for r in res]) for i in range(len(res[0]))})
"""

EMIT_CODE = r"""
import sys, json, numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
tfl, feed, out, layouts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
PERM = {"NHWC": (0, 2, 3, 1), "NWC": (0, 2, 1)}
# the reference kernels, as TFLite Micro runs them (no XNNPACK delegate)
it = Interpreter(model_path=tfl, num_threads=1, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
it.allocate_tensors()
ins, outs = it.get_input_details(), it.get_output_details()
if len(ins) != 1:
    raise SystemExit("the emitted model has %d inputs" % len(ins))
x = np.load(feed)["x"]
res = []
for k in range(len(x)):
    xi = x[k:k + 1]
    perm = PERM.get(layouts["in"][0])
    if perm and xi.ndim == len(perm):
        xi = xi.transpose(perm)
    d = ins[0]
    scale, zp = d["quantization"]
    if np.issubdtype(d["dtype"], np.integer):
        info = np.iinfo(d["dtype"])
        xi = np.clip(np.round(xi / scale) + zp, info.min, info.max)
    xi = xi.astype(d["dtype"])
    if xi.size != int(np.prod(d["shape"])):
        raise SystemExit("input size %d != declared %s" % (xi.size, list(d["shape"])))
    it.set_tensor(d["index"], xi.reshape(d["shape"]))
    it.invoke()
    row = []
    for j, od in enumerate(outs):
        o = it.get_tensor(od["index"]).astype(np.float64)
        s, z = od["quantization"]
        if np.issubdtype(od["dtype"], np.integer) and s:
            o = (o - z) * s
        perm = PERM.get(layouts["out"][j] if j < len(layouts["out"]) else "same")
        if perm and o.ndim == len(perm):
            o = o.transpose(np.argsort(perm))
        row.append(o)
    res.append(row)
np.savez(out, **{"o%d" % j: np.concatenate([r[j] for r in res]) for j in range(len(outs))})
print(json.dumps({"shapes": [list(map(int, od["shape"])) for od in outs]}))
"""


def _to_onnx_layout(shape: list[int], layout: str | None) -> list[int]:
    if layout == "NHWC" and len(shape) == 4:
        return [shape[0], shape[3], shape[1], shape[2]]
    if layout == "NWC" and len(shape) == 3:
        return [shape[0], shape[2], shape[1]]
    return list(shape)


def _feeds(case: Case, spec: ModelSpec, shape: list[int]) -> np.ndarray | None:
    per = math.prod(shape[1:]) if shape else 0
    if not shape or shape[0] != 1 or per <= 0 or per > 10 ** 7:
        return None
    src = None
    declared = case.input_range
    if declared and not np.allclose(declared, (spec.lo, spec.hi), rtol=1e-4):
        # a mutated data-free range: the inputs the user claims are uniform over it
        big = float(np.finfo(np.float32).max)
        lo, hi = max(declared[0], -big), min(declared[1], big)
        with np.errstate(over="ignore"):
            return np.random.default_rng(case.index).uniform(lo, hi, [CHECK_SAMPLES] + list(shape[1:])) \
                .astype(np.float32)
    for cand in (case.calib_array, spec.calib):
        if cand is not None and cand.ndim >= 1 and len(cand) and cand[0].size == per:
            src = cand.reshape(len(cand), per).astype(np.float32)
            break
    if src is None:
        lo, hi = case.input_range or (spec.lo, spec.hi)
        src = np.random.default_rng(case.index).uniform(lo, hi, (CHECK_SAMPLES, per)).astype(np.float32)
    idx = sorted(set(np.linspace(0, len(src) - 1, CHECK_SAMPLES).astype(int).tolist()
                     + [int(np.argmax(np.abs(src).max(axis=1)))]))
    x = src[idx]
    if case.input_range:
        x = np.clip(x, *case.input_range)
    return x.reshape([len(idx)] + list(shape[1:])) if np.all(np.isfinite(x)) else None


def _sub(code: str, args: list[str], base: Path, opts, timeout: float = 120) -> dict:
    return run_limited([sys.executable, "-c", code, *args], base / "check", child_env(base), timeout, opts.mem_bytes)


def _first_line(run: dict) -> str:
    if run["timed_out"]:
        return "timed out"
    if run["rc"] < 0:
        return f"killed by {signal.Signals(-run['rc']).name}"
    lines = [l for l in run["stderr"].strip().splitlines() if l.strip()]
    return normalize(lines[-1] if lines else f"exit {run['rc']}")


def check_output(case: Case, base: Path, out_abs: str, opts) -> dict:
    """Run the emitted .tflite (LiteRT) and the mutated model (onnxruntime) on the same inputs."""
    spec = opts.specs_by_name[case.model]
    outdir = Path(out_abs)
    rp = outdir / "report.json"
    if not rp.is_file():
        return {"status": "fail", "reason": "exit 0 but no report.json in -o"}
    try:
        report = json.loads(rp.read_text())
    except ValueError:
        return {"status": "fail", "reason": "exit 0 but report.json is not JSON"}
    target = report.get("target")
    big = float(np.finfo(np.float32).max)
    if case.input_range and max(abs(v) for v in case.input_range) > big:
        return {"status": "fail", "reason": "--input-range beyond float32 accepted (its end is infinite in float32)"}
    if target not in ("tflm", "tflite"):
        return {"status": f"unchecked: target {target}"}
    if "--outputs" in case.argv:
        return {"status": "unchecked: --outputs"}
    tfl = outdir / f"{report['name']}.tflite"
    if not tfl.is_file():
        return {"status": "fail", "reason": "report names a .tflite that is not in -o"}
    ins, outs = report.get("inputs", []), report.get("outputs", [])
    layouts = report.get("io_layout", {})
    if len(ins) != 1:
        return {"status": f"unchecked: {len(ins)} inputs"}
    shape = _to_onnx_layout(ins[0]["shape"], layouts.get(ins[0]["name"]))
    x = _feeds(case, spec, shape)
    if x is None:
        return {"status": f"unchecked: no finite feed for input shape {shape}"}
    chk = base / "check"
    chk.mkdir(exist_ok=True)
    np.savez(chk / "feed.npz", x=x)
    result: dict = {}
    # C source: must compile (tflm emits it)
    cfiles = sorted(outdir.glob("*_model_data.c"))
    if target == "tflm" and cfiles and opts.cc:
        cc = subprocess.run([opts.cc, "-std=c99", "-fsyntax-only", "-Wall", "-Werror", "-I", str(outdir),
                             str(cfiles[0])], capture_output=True, text=True, timeout=60)
        if cc.returncode != 0:
            first = next((l for l in cc.stderr.splitlines() if "error" in l), cc.stderr[:200])
            first = first.split("error:", 1)[-1].strip()
            return {"status": "fail", "reason": f"generated C does not compile: {normalize(first, base)}"}
    # the reference: onnxruntime on the mutated model (or the original one, if the mutation keeps
    # the float function, e.g. a lying declared shape that onnxruntime refuses)
    model_path = base / "w" / case.argv[0]
    ref = _sub(REF_CODE, [str(model_path), str(chk / "feed.npz"), str(chk / "ref.npz")], base, opts)
    result["reference"] = "mutated model"
    if ref["rc"] != 0 and case.same_function:
        (chk / "orig.onnx").write_bytes(spec.onnx_bytes)
        ref = _sub(REF_CODE, [str(chk / "orig.onnx"), str(chk / "feed.npz"), str(chk / "ref.npz")], base, opts)
        result["reference"] = "original model (mutation keeps the function)"
    lay = {"in": [layouts.get(ins[0]["name"], "same")], "out": [layouts.get(o["name"], "same") for o in outs]}
    emit = _sub(EMIT_CODE, [str(tfl), str(chk / "feed.npz"), str(chk / "emit.npz"), json.dumps(lay)], base, opts)
    if emit["rc"] != 0 or emit["timed_out"]:
        return {**result, "status": "fail", "reason": f"LiteRT cannot run the emitted model: {_first_line(emit)}"}
    emitted = np.load(chk / "emit.npz")
    e_outs = [emitted[f"o{j}"] for j in range(len(emitted.files))]
    declared = json.loads(emit["stdout"].strip().splitlines()[-1])["shapes"]
    header = {}
    hfiles = sorted(outdir.glob("*_model_data.h"))
    if hfiles:
        for m in re.finditer(r"#define \w+_OUTPUT(\d+)_ELEMENT_COUNT (\d+)", hfiles[0].read_text(errors="replace")):
            header[int(m.group(1))] = int(m.group(2))
    # sizes the emitted model declares (report, header, flatbuffer) must agree with each other
    for j, o in enumerate(outs):
        sizes = {"report.json": math.prod(o["shape"]), "tflite": math.prod(declared[j]) if j < len(declared) else None}
        if j in header:
            sizes["header"] = header[j]
        if len(set(sizes.values())) > 1:
            return {**result, "status": "fail", "reason": f"declared output sizes disagree: {sizes}"}
    if ref["rc"] != 0 or ref["timed_out"]:
        return {**result, "status": f"unchecked: onnxruntime cannot run the model ({_first_line(ref)[:100]})"}
    refd = np.load(chk / "ref.npz")
    r_outs = [refd[f"o{j}"] for j in range(len(refd.files))]
    if len(r_outs) != len(e_outs):
        return {**result, "status": "fail", "reason": f"{len(e_outs)} outputs emitted, onnxruntime computes {len(r_outs)}"}
    worst = 0.0
    for j, (r, e) in enumerate(zip(r_outs, e_outs)):
        if r.size != e.size:
            return {**result, "status": "fail",
                    "reason": f"output {j}: emitted model declares {e.size // len(x)} elements per sample, "
                              f"onnxruntime computes {r.size // len(x)}"}
        r = r.astype(np.float64)
        if not np.all(np.isfinite(r)):
            return {**result, "status": "unchecked: non-finite reference output"}
        e = e.reshape(r.shape)
        if not np.all(np.isfinite(e)):
            return {**result, "status": "fail", "reason": f"output {j}: non-finite emitted values"}
        span = float(r.max() - r.min())
        scale = float(outs[j].get("scale") or 0.0)
        tol = REL_TOL * max(span, 0.1 * float(np.abs(r).max())) + 1.5 * scale
        err = float(np.abs(e - r).max())
        rel = err / max(span, 1e-30)
        worst = max(worst, rel)
        if err > tol:
            return {**result, "status": "fail", "max_abs_err": err, "ref_span": span,
                    "reason": f"output {j}: emitted vs onnxruntime relative error > {REL_TOL} of the output range"}
    return {**result, "status": "pass", "worst_rel_err": round(worst, 4)}
