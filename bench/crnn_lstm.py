"""The CRNN of the corpus (ddddocr_ocr: Conv/SiLU, one bidirectional LSTM, Gemm) through qcc's
unrolled LSTM (passes/unroll_lstm.py) vs ONNX Runtime's QDQ, which keeps the LSTM float.

    python bench/crnn_lstm.py [--samples 200] [--variants default,per_step_c,...] [--methods MinMax,Percentile]
        -> bench/crnn_lstm.json and bench/crnn_lstm.md

Per variant: compile with `--target tflm` on the corpus calibration set, run the .tflite in the
tflite-micro interpreter on the first N evaluation samples, SQNR of the output vs the float model
(onnxruntime) and the task metric: greedy CTC decode (the package's own) exact-match vs the float
model's decode, and the character error rate against it. `default` is qcc's default (the
unrolled cell in int16, `--recurrent auto`); `recurrent_int8` the all-int8 cell; the other
variants change how the unrolled LSTM's per-step tensors share ranges or which FC layers get
per-channel weights (see VARIANTS): bench-only passes inserted after unroll_lstm, so the
default pipeline is what `default` measures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench import corpus  # noqa: E402
from bench.corpus_diagnose import ORT_CHUNK, ort_qdq, run_ort, sqnr, task, task_compare, tflm_outputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "ddddocr_ocr"


def _tag(graph, ctx, pattern: str | None, strip: bool = False) -> bool:
    """Bench-only: give every unrolled value whose name ends in `pattern` one range group per
    (LSTM, direction, pattern), or strip the groups."""
    import re
    for n in graph.nodes:
        for v in n.outputs:
            if strip:
                v.meta.pop("range_group", None)
            elif pattern and re.search(rf"_d(\d)_t\d+_{pattern}_out$", v.name):
                d = re.search(r"_d(\d)_t", v.name).group(1)
                v.meta["range_group"] = f"{n.name.split('_d')[0]}_d{d}_{pattern}"
    return True


def _register_variants():
    from qcompiler.passes import register_pass

    @register_pass("bench_lstm_per_step_c", "bench only: cell states keep per-step ranges")
    def per_step_c(graph, ctx):
        return _tag(graph, ctx, None, strip=True)

    @register_pass("bench_lstm_shared_gates", "bench only: each gate's pre-activation shares one range over steps")
    def shared_gates(graph, ctx):
        for gate in ("zi", "zo", "zf", "zc", "ig", "fc"):
            _tag(graph, ctx, gate)
        return True


# variant -> (passes inserted after unroll_lstm, passes removed, extra qcc options, quantizer tweak)
VARIANTS = {
    "default": ((), (), {}, None),
    "recurrent_int8": ((), (), {"recurrent": "int8"}, None),
    "per_step_c": (("bench_lstm_per_step_c",), (), {}, None),
    "shared_gates": (("bench_lstm_shared_gates",), (), {}, None),
    "no_merge": ((), ("horizontal_merge",), {}, None),
    "per_channel_fc": ((), (), {"per_channel_fc": True}, None),
    "no_saturation_bound": ((), (), {}, "no_saturation_bound"),
    "per_channel_fc_not_recurrent": ((), (), {}, "per_channel_not_recurrent"),
    "int8_head": ((), (), {"int8_outputs": True}, None),  # the classifier int8 (no int16 head)
    "per_tensor_classifier": ((), (), {}, "pt_cls"),
}


def _tweak(name: str | None):
    """Bench-only quantizer tweaks, undone by the returned function."""
    from qcompiler.quant import quantize
    if name == "no_saturation_bound":  # calibrated ranges for Sigmoid / Tanh inputs, unclipped
        saved = dict(quantize.SATURATED_BEYOND)
        quantize.SATURATED_BEYOND.clear()
        return lambda: quantize.SATURATED_BEYOND.update(saved)
    if name == "per_channel_not_recurrent":  # per-channel FC weights except the per-step recurrent Gemms
        from qcompiler.quant import fc_weights
        orig = quantize.per_channel_fc_layers

        def chosen(graph, mode, scheme):
            return {n.name for n in fc_weights._fc_layers(graph) if "_hR" not in n.name}
        quantize.per_channel_fc_layers = chosen
        return lambda: setattr(quantize, "per_channel_fc_layers", orig)
    if name == "pt_cls":  # the classifier's weights per tensor (the FC budget before the per-bit rule)
        from qcompiler.quant import fc_weights
        orig_f = fc_weights.per_channel_fc_layers

        def chosen(graph, mode, scheme):
            return orig_f(graph, mode, scheme) - {"Gemm_97"}
        fc_weights.per_channel_fc_layers = quantize.per_channel_fc_layers = chosen
        return lambda: (setattr(fc_weights, "per_channel_fc_layers", orig_f),
                        setattr(quantize, "per_channel_fc_layers", orig_f))
    return lambda: None


def compile_variant(name: str, outdir: Path) -> dict:
    from qcompiler.driver.options import CompileOptions
    from qcompiler.driver.pipeline import compile_model, default_pipeline
    add, remove, extra, tweak = VARIANTS[name]
    passes = []
    for p in default_pipeline("tflm"):
        if p not in remove:
            passes.append(p)
        if p == "unroll_lstm":
            passes += list(add)
    m = corpus.MODELS[KEY]
    opts = CompileOptions(target="tflm", calib=str(corpus.data_path(KEY, "calib")), passes=tuple(passes),
                          input_shapes={m.input_name: m.input_shape}, **extra)
    t = time.perf_counter()
    undo = _tweak(tweak)
    try:
        res = compile_model(corpus.model_path(KEY), outdir, opts)
    finally:
        undo()
    rep = res.report
    return {"seconds": round(time.perf_counter() - t, 1), "arena": (rep.get("arena") or {}).get("arena_bytes"),
            "flash": rep.get("flash_bytes"), "ops": rep.get("ops"), "tflite": str(next(outdir.glob("*.tflite")))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--methods", default="MinMax,Percentile")
    p.add_argument("--json", default=str(ROOT / "bench" / "crnn_lstm.json"))
    a = p.parse_args(argv)
    _register_variants()
    x, metas = corpus.load_data(KEY, "eval")
    x, metas = x[:a.samples], metas[:a.samples]
    model = corpus.model_path(KEY)
    ref = run_ort(model, x)
    out_name = next(iter(ref))
    ref_task = task(KEY, ref, metas)
    results = {"samples": len(x), "float_task": {"exact_vs_drawn": float(np.mean(
        [t == m["text"] for t, m in zip(ref_task, metas)]))}, "rows": {}}

    def record(label, outs, info):
        results["rows"][label] = {"sqnr_db": sqnr(ref[out_name], outs[out_name]),
                                  **task_compare(KEY, ref_task, task(KEY, outs, metas)), **info}
        Path(a.json).write_text(json.dumps(results, indent=1))
        print(label, json.dumps(results["rows"][label]), flush=True)

    with tempfile.TemporaryDirectory(prefix="qcc_crnn_") as tmp:
        tmp = Path(tmp)
        calib = corpus.load_data(KEY, "calib")[0]
        for method in [m for m in a.methods.split(",") if m]:
            qdq, secs = ort_qdq(model, calib, method, tmp, ORT_CHUNK.get(KEY), corpus.MODELS[KEY].input_shape)
            record(f"ORT QDQ {method} (LSTM float)", run_ort(qdq, x), {"seconds": round(secs, 1)})
        for v in [v for v in a.variants.split(",") if v]:
            info = compile_variant(v, tmp / v)
            t = time.perf_counter()
            outs = tflm_outputs(Path(info.pop("tflite")), x, [out_name])
            info["tflm_seconds_per_sample"] = round((time.perf_counter() - t) / len(x), 2)
            info.pop("ops")
            record(f"qcc {v} (TFLM)", outs, info)
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    rows = ["| quantizer | output SQNR vs float, dB | CTC text = float's | char error vs float | arena B | flash B |",
            "|---|---|---|---|---|---|"]
    for label, r in results["rows"].items():
        rows.append(f"| {label} | {r['sqnr_db']:.2f} | {r['text_agree']:.3f} | {r['char_error_vs_float']:.4f} | "
                    f"{r.get('arena') or '-'} | {r.get('flash') or '-'} |")
    return (f"{results['samples']} evaluation samples; float decode = drawn text on "
            f"{results['float_task']['exact_vs_drawn']:.3f}\n\n" + "\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
