"""report.html: content (every layer, the worst one, valid SVG, nothing fetched), the memory
plan behind it, determinism, the graph layout, and a real headless Chromium rendering it."""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import MODELS
from qcompiler.backends import registry
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.ir.serialize import load_graph
from qcompiler.quant.report_graph import MAX_NODES, graph_svg
from qcompiler.quant.report_svg import SQNR_BANDS, sqnr_color

CALIB = str(MODELS / "digits_calib.npy")
SVG = re.compile(r"<svg\b.*?</svg>", re.S)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "digits_resnet"
    res = compile_model(MODELS / "digits_resnet.onnx", out, CompileOptions(calib=CALIB))
    return out, res.report, (out / "report.html").read_text()


def _worst(report: dict) -> str:
    return report["calibration"]["worst_layers"][0]["tensor"]


def test_every_layer_and_the_worst_are_named(resnet):
    out, report, page = resnet
    assert "report.html" in report["files"] and not (out / "layer_sqnr.png").exists()
    assert html.escape(_worst(report)) in page
    assert 'class="worst"' in page and f"{report['calibration']['worst_layers'][0]['sqnr_db']:.2f} dB" in page
    for e in report["layers"]:
        assert html.escape(e["tensor"]) in page, e["tensor"]
    for e in report["layers"]:  # op types, and the measured weight SQNR of every weighted layer
        if e.get("weight_sqnr_db") is not None:
            assert f"weight SQNR {e['weight_sqnr_db']:.2f} dB" in page
    assert report["generated_by"] in page and f"flash {report['flash_bytes']:,} B" in page
    for section in ("sqnr", "histograms", "memory", "graph"):
        assert f'<h2 id="{section}">' in page


def test_svg_parts_are_valid_xml(resnet):
    out, report, page = resnet
    parts = SVG.findall(page)
    assert len(parts) >= 8  # legend, bars, 4 histograms, memory plan, legend, graph
    for part in parts:
        root = ET.fromstring(part)
        assert root.tag == "{http://www.w3.org/2000/svg}svg" and float(root.get("width")) > 0
    q = load_graph(out / report["ir_file"])
    boxes = ET.fromstring(parts[-1]).findall("{http://www.w3.org/2000/svg}g")
    assert len(boxes) == len(q.inputs) + len(q.nodes)  # one box per node


def test_self_contained(resnet):
    _, _, page = resnet
    assert "<script" not in page.lower() and "@import" not in page
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * page.count("<svg ")
    assert set(re.findall(r"url\(([^)]*)\)", page)) == {"#arrow"}
    assert not re.search(r'\b(?:src|href)="(?!#)', page)


def test_memory_plan_in_report_json(resnet):
    _, report, page = resnet
    plan = report["memory_plan"]
    bufs = plan["buffers"]
    assert len(plan["ops"]) == sum(report["ops"].values())
    assert max(b["offset"] + b["size"] for b in bufs) <= plan["planned_bytes"]
    for i, a in enumerate(bufs):
        assert 0 <= a["first"] <= a["last"] <= len(plan["ops"]) and a["size"] > 0
        for b in bufs[i + 1:]:  # buffers alive at the same step never share bytes
            if a["first"] <= b["last"] and b["first"] <= a["last"]:
                assert a["offset"] + a["size"] <= b["offset"] or b["offset"] + b["size"] <= a["offset"]
    names = {t for b in bufs for t in b["tensors"]}
    assert {e["tensor"] for e in report["layers"]} <= names  # every int8 activation has a place
    assert f"{plan['planned_bytes']:,} B planned for tensors" in page


def test_deterministic(tmp_path):
    a = compile_model(MODELS / "digits_cnn.onnx", tmp_path / "a", CompileOptions(calib=CALIB))
    b = compile_model(MODELS / "digits_cnn.onnx", tmp_path / "b", CompileOptions(calib=CALIB))
    assert a.report["calibration"]["worst_layers"] == b.report["calibration"]["worst_layers"]
    assert (tmp_path / "a" / "report.html").read_bytes() == (tmp_path / "b" / "report.html").read_bytes()
    assert (tmp_path / "a" / "report.md").read_bytes() == (tmp_path / "b" / "report.md").read_bytes()


def test_data_free_page(tmp_path):
    compile_model(MODELS / "digits_cnn.onnx", tmp_path / "o", CompileOptions(input_range=(0.0, 1.0)))
    page = (tmp_path / "o" / "report.html").read_text()
    assert "DATA-FREE MODE" in page and 'id="histograms"' not in page
    assert sqnr_color(None) in page
    for part in SVG.findall(page):
        ET.fromstring(part)


def test_a_target_without_memory_plan(tmp_path):
    registry.register("toy", "toy_backend:TOY")
    try:
        res = compile_model(MODELS / "digits_cnn.onnx", tmp_path / "o", CompileOptions(target="toy", calib=CALIB))
    finally:
        del registry.BACKENDS["toy"]
    page = (tmp_path / "o" / "report.html").read_text()
    assert "memory_plan" not in res.report and 'id="memory"' not in page and 'id="graph"' in page


def _chain_view(n: int, branch_every: int = 0) -> list[dict]:
    view = [{"name": "x", "op": "input", "tensors": ["x"], "preds": []}]
    for i in range(1, n):
        preds = [i - 1] + ([i - 3] if branch_every and i % branch_every == 0 and i > 3 else [])
        view.append({"name": f"layer_{i}/" + "long_scope/" * 5 + "Conv", "op": "Add" if len(preds) > 1 else "Conv",
                     "tensors": [f"t{i}"], "preds": preds})
    return view


def test_graph_layout_wraps_and_compresses():
    view = _chain_view(100, branch_every=7)
    sqnr = {f"t{i}": float(i % 50) for i in range(100)}
    drawing, compressed = graph_svg(view, sqnr, "t42")
    root = ET.fromstring(drawing)
    assert not compressed and len(root.findall("{http://www.w3.org/2000/svg}g")) == 100
    assert float(root.get("height")) < 1700 and float(root.get("width")) < 2000  # columns, not one tall strip
    assert 'stroke="#b2182b"' in drawing  # the worst node
    big, compressed = graph_svg(_chain_view(3 * MAX_NODES, branch_every=50), sqnr, None)
    boxes = ET.fromstring(big).findall("{http://www.w3.org/2000/svg}g")
    assert compressed and len(boxes) < 30 and "nodes" in big
    assert sqnr_color(0.0) == SQNR_BANDS[-1][1] and sqnr_color(45.0) == SQNR_BANDS[0][1]


# ---- a real browser --------------------------------------------------------------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _run_chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium); "
                                                "the headless rendering test of report.html needs it")
def test_chromium_renders_the_report(resnet, tmp_path):
    out, report, _ = resnet
    url = (out / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    r = _run_chromium(f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.is_file() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    dom = _run_chromium("--dump-dom", url).stdout
    assert _worst(report) in html.unescape(dom) and "Per-layer SQNR" in dom
    try:
        from PIL import Image
    except ImportError:  # no Pillow: the PNG header and size must do
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2000, 1280)
    colors = {tuple(c) for c in img.reshape(-1, 3)[::7]}
    assert len(colors) > 50, len(colors)  # not a blank page
    assert np.mean(np.any(img < 250, axis=-1)) > 0.05  # ink on at least 5 % of the page
    worst_db = report["calibration"]["worst_layers"][0]["sqnr_db"]
    band = tuple(int(sqnr_color(worst_db)[k:k + 2], 16) for k in (1, 3, 5))
    assert np.any(np.all(img == band, axis=-1)), band  # the bars really are drawn
