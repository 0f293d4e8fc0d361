"""Single-stage (YOLO-style) detection in numpy: target assignment, box decoding, non-maximum suppression.

Imports numpy only (kerastk's ground floor: the layers, the metrics, the data and the deployment side use it),
so a deployment with numpy and onnxruntime turns a detector's ONNX outputs into final boxes:

    from kerastk.deploy import OnnxModel
    from kerastk.deploy.detection import postprocess
    decoded = OnnxModel("export/detection_shapes/detector.onnx").predict(x)   # (n, S*S*A, 4 + C)
    for boxes, scores, classes in postprocess(decoded, score_threshold=0.3):
        ...                                                                  # boxes x1, y1, x2, y2 in pixels

Layout of a raw prediction (the detector's training output, ``kerastk.create_model("tiny_yolo")``) and of the
training target (:func:`encode_targets`): an array (n, S_h, S_w, A, 5 + C) - a grid of S_h x S_w cells, A
anchors per cell, and per anchor

    index 0, 1   tx, ty   centre offset in the cell: cx = (col + sigmoid(tx)) * cell_w   (target: the offset
                          in [0, 1) itself)
    index 2, 3   tw, th   log size relative to the anchor: w = anchor_w * exp(tw)       (target: log(w / anchor_w))
    index 4      to       objectness logit: p(object) = sigmoid(to)                       (target: 1 or 0)
    index 5 ...  class logits: p(class | object) = softmax                               (target: one-hot)

(the parametrisation of YOLOv2, Redmon & Farhadi 2017). Decoded predictions are (n, S_h * S_w * A, 4 + C):
``x1, y1, x2, y2`` in pixels (clipped to the image) then the C class scores ``p(object) * p(class | object)``,
flattened in (row, col, anchor) order. The detector's inference model
(``kerastk.models.detection.detection_inference_model``) computes the same decoding inside its graph, so its
ONNX file outputs decoded boxes; :func:`postprocess` accepts raw or decoded predictions.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "MAX_LOG_SCALE",
    "box_iou",
    "boxes_from_labels",
    "compare_detections",
    "decode",
    "decode_grid",
    "check_anchors",
    "encode_targets",
    "kmeans_anchors",
    "non_max_suppression",
    "postprocess",
]

#: tw, th are clipped to [-MAX_LOG_SCALE, MAX_LOG_SCALE] before exp (a box at most e^4 = 55x its anchor), so
#: an untrained head cannot overflow; the in-graph decoder clips the same way.
MAX_LOG_SCALE = 4.0


def box_iou(a, b) -> np.ndarray:
    """IoU between every box of `a` (n, 4) and every box of `b` (m, 4), boxes as x1, y1, x2, y2 -> (n, m)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


# --- argument checks -------------------------------------------------------------------------------------


def _pair(name, value) -> tuple:
    """An (h, w) pair of positive ints from an int or a pair."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or an (height, width) pair of them; "
                         f"received {name}={value!r}.")
    return int(pair[0]), int(pair[1])


def check_anchors(anchors) -> np.ndarray:
    """Anchors as a float64 (A, 2) array of (width, height) in pixels; ValueError when malformed."""
    try:
        a = np.asarray(anchors, dtype=np.float64)
    except (TypeError, ValueError):
        a = np.zeros((0,))
    if a.ndim != 2 or a.shape[1] != 2 or len(a) < 1 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError("`anchors` must be a non-empty list of (width, height) pairs in pixels, all > 0; "
                         f"received anchors={anchors!r}.")
    return a


def _check_unit(name, value, low_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0 or (
            low_open and value == 0.0):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"`{name}` must be a number in {interval}; received {name}={value!r}.")
    return float(value)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# --- ground truth ------------------------------------------------------------------------------------------


def boxes_from_labels(labels) -> list:
    """Split dataset labels (n, M, 5) rows ``[class, x1, y1, x2, y2]`` (class -1 = padding, as
    ``kerastk.data.load("detection")`` gives them) into a per-image list of (boxes (k, 4), classes (k,) int).

    A list of (boxes, classes) pairs is returned as it is (converted to arrays)."""
    if isinstance(labels, (list, tuple)) and (not labels or isinstance(labels[0], (list, tuple))
                                              and len(labels[0]) == 2):
        return [(np.asarray(b, dtype=np.float64).reshape(-1, 4), np.asarray(c, dtype=np.int64).reshape(-1))
                for b, c in labels]
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 3 or y.shape[-1] != 5:
        raise ValueError("Ground truth must be an array (n, max_objects, 5) of rows [class, x1, y1, x2, y2] "
                         f"(class -1 = padding) or a list of (boxes, classes) pairs; received shape {y.shape}.")
    out = []
    for rows in y:
        keep = rows[:, 0] >= 0
        out.append((rows[keep, 1:5], rows[keep, 0].astype(np.int64)))
    return out


def kmeans_anchors(labels, k: int = 3, iterations: int = 100, seed: int = 0) -> np.ndarray:
    """Anchor sizes by k-means on the training boxes' (width, height) with the 1 - IoU distance (YOLOv2).

    Args:
        labels: dataset labels (n, M, 5) or a list of (boxes, classes) pairs.
        k: number of anchors.
    Returns:
        (k, 2) float array of (width, height) in pixels, sorted by area.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"`k` must be an integer >= 1; received k={k!r}.")
    boxes = np.concatenate([b for b, _ in boxes_from_labels(labels)] or [np.zeros((0, 4))])
    wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)
    wh = wh[(wh > 0).all(axis=1)]
    sizes = np.unique(wh, axis=0)
    if len(sizes) < k:
        raise ValueError(f"kmeans_anchors needs boxes of at least k={k} different sizes; received {len(sizes)}.")
    rng = np.random.default_rng(seed)
    centres = sizes[rng.choice(len(sizes), size=k, replace=False)]  # k distinct starting sizes
    for _ in range(iterations):
        nearest = np.argmax(_shape_iou(wh, centres), axis=1)
        new = np.array([wh[nearest == j].mean(axis=0) if np.any(nearest == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return centres[np.argsort(centres.prod(axis=1))]


def _shape_iou(wh, anchors):
    """IoU of boxes and anchors of sizes (n, 2) and (A, 2) placed on the same centre -> (n, A)."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = wh[:, None].prod(axis=-1) + anchors[None, :].prod(axis=-1) - inter
    return inter / np.maximum(union, 1e-12)


# --- target assignment -------------------------------------------------------------------------------------


def encode_targets(boxes, grid, anchors, num_classes: int, image_size) -> np.ndarray:
    """Training targets for a YOLO-style head: each ground-truth box goes to the cell holding its centre and
    to the anchor whose shape fits it best (highest IoU of the two sizes on a common centre).

    When two boxes want the same cell and anchor, the later one takes the cell's next best free anchor; a box
    with no free anchor left in its cell is dropped (rare: A anchors per cell).

    Args:
        boxes: dataset labels (n, M, 5) rows [class, x1, y1, x2, y2] in pixels (class -1 = padding), or a list
            of (boxes (k, 4), classes (k,)) pairs.
        grid: (S_h, S_w) cells (or one int for a square grid) - the detector's output grid.
        anchors: (A, 2) anchor (width, height) in pixels.
        num_classes: C.
        image_size: (height, width) in pixels (or one int).

    Returns:
        float32 (n, S_h, S_w, A, 5 + C): per assigned anchor [offset_x, offset_y, log(w / anchor_w),
        log(h / anchor_h), 1, one-hot class]; zeros elsewhere (objectness 0).
    """
    sh, sw = _pair("grid", grid)
    height, width = _pair("image_size", image_size)
    anchors = check_anchors(anchors)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an integer >= 1; received num_classes={num_classes!r}.")
    truth = boxes_from_labels(boxes)
    targets = np.zeros((len(truth), sh, sw, len(anchors), 5 + num_classes), dtype=np.float32)
    cell_w, cell_h = width / sw, height / sh
    for n, (b, c) in enumerate(truth):
        if len(b) == 0:
            continue
        if np.any(c >= num_classes):
            raise ValueError(f"encode_targets: image {n} has class {int(c.max())}, but num_classes={num_classes}.")
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        if np.any(w <= 0) or np.any(h <= 0):
            raise ValueError(f"encode_targets: image {n} has a box with x2 <= x1 or y2 <= y1: {b.tolist()}.")
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        if np.any((cx < 0) | (cx > width) | (cy < 0) | (cy > height)):
            raise ValueError(f"encode_targets: image {n} has a box centre outside the {width}x{height} image "
                             f"(boxes are x1, y1, x2, y2 in pixels): {b.tolist()}.")
        col = np.clip(np.floor(cx / cell_w), 0, sw - 1).astype(int)
        row = np.clip(np.floor(cy / cell_h), 0, sh - 1).astype(int)
        order = np.argsort(-_shape_iou(np.stack([w, h], axis=1), anchors), axis=1)
        for k in range(len(b)):
            free = [a for a in order[k] if targets[n, row[k], col[k], a, 4] == 0]
            if not free:
                continue
            a = free[0]
            targets[n, row[k], col[k], a, :5] = [cx[k] / cell_w - col[k], cy[k] / cell_h - row[k],
                                                 np.log(w[k] / anchors[a, 0]), np.log(h[k] / anchors[a, 1]), 1.0]
            targets[n, row[k], col[k], a, 5 + c[k]] = 1.0
    return targets


# --- decoding ----------------------------------------------------------------------------------------------


def _check_raw(predictions, anchors):
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim == 4:  # one image
        p = p[None]
    if p.ndim != 5 or p.shape[-1] < 6:
        raise ValueError("Raw detector predictions must be (n, S_h, S_w, A, 5 + C) with C >= 1; "
                         f"received shape {p.shape}.")
    if p.shape[3] != len(anchors):
        raise ValueError(f"The predictions have {p.shape[3]} anchors per cell but {len(anchors)} anchors were "
                         "given: decode with the anchors the model was built with.")
    return p


def decode_grid(predictions, anchors, image_size) -> np.ndarray:
    """Raw predictions (n, S_h, S_w, A, 5 + C) -> decoded (n, S_h * S_w * A, 4 + C): boxes x1, y1, x2, y2 in
    pixels (clipped to the image), then per-class scores p(object) * p(class | object). The same arithmetic
    as the inference model's in-graph decoder."""
    anchors = check_anchors(anchors)
    height, width = _pair("image_size", image_size)
    p = _check_raw(predictions, anchors)
    n, sh, sw, na, _ = p.shape
    rows, cols = np.meshgrid(np.arange(sh), np.arange(sw), indexing="ij")
    cx = (cols[None, :, :, None] + _sigmoid(p[..., 0])) * (width / sw)
    cy = (rows[None, :, :, None] + _sigmoid(p[..., 1])) * (height / sh)
    w = anchors[:, 0] * np.exp(np.clip(p[..., 2], -MAX_LOG_SCALE, MAX_LOG_SCALE))
    h = anchors[:, 1] * np.exp(np.clip(p[..., 3], -MAX_LOG_SCALE, MAX_LOG_SCALE))
    boxes = np.stack([np.clip(cx - w / 2, 0, width), np.clip(cy - h / 2, 0, height),
                      np.clip(cx + w / 2, 0, width), np.clip(cy + h / 2, 0, height)], axis=-1)
    scores = _sigmoid(p[..., 4:5]) * _softmax(p[..., 5:])
    return np.concatenate([boxes, scores], axis=-1).reshape(n, sh * sw * na, -1)


def _as_decoded(predictions, anchors, image_size) -> np.ndarray:
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim in (4, 5):
        if anchors is None or image_size is None:
            raise ValueError("Raw (n, S_h, S_w, A, 5 + C) predictions need `anchors` and `image_size` to decode; "
                             "decoded (n, N, 4 + C) predictions (the inference model's output) need neither.")
        return decode_grid(p, anchors, image_size)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[-1] < 5:
        raise ValueError("Predictions must be raw (n, S_h, S_w, A, 5 + C) or decoded (n, N, 4 + C) with C >= 1; "
                         f"received shape {p.shape}.")
    return p


def decode(predictions, anchors=None, image_size=None):
    """Boxes, best-class scores and classes of every anchor of every image.

    Args:
        predictions: raw (n, S_h, S_w, A, 5 + C) - then `anchors` (A, 2) and `image_size` are needed - or
            decoded (n, N, 4 + C) (the inference model's / its ONNX file's output).

    Returns:
        boxes (n, N, 4) x1, y1, x2, y2 pixels; scores (n, N) = max over classes of p(object) * p(class | object);
        classes (n, N) int64, the argmax class.
    """
    d = _as_decoded(predictions, anchors, image_size)
    class_scores = d[..., 4:]
    return d[..., :4], class_scores.max(axis=-1), class_scores.argmax(axis=-1).astype(np.int64)


# --- non-maximum suppression -------------------------------------------------------------------------------


def non_max_suppression(boxes, scores, iou_threshold: float = 0.5, score_threshold: float = 0.0,
                        max_detections: int = 100, class_aware: bool = True, classes=None) -> np.ndarray:
    """Greedy non-maximum suppression: keep the highest-scoring box, drop the boxes overlapping it by more than
    `iou_threshold` (IoU), repeat.

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        scores: (N,).
        iou_threshold: a box is suppressed when its IoU with a kept box is > this.
        score_threshold: boxes scoring below it are dropped first.
        max_detections: at most this many indices are returned.
        class_aware: suppress only among boxes of the same class (needs `classes`); False suppresses across
            classes.
        classes: (N,) class ids (required when class_aware).

    Returns:
        int64 indices of the kept boxes, by descending score (ties: lower index first).
    """
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4 or s.shape != (len(b),):
        raise ValueError(f"non_max_suppression needs boxes (N, 4) and scores (N,); received boxes {b.shape}, "
                         f"scores {s.shape}.")
    _check_unit("iou_threshold", iou_threshold)
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, numbers.Real):
        raise ValueError(f"`score_threshold` must be a number; received score_threshold={score_threshold!r}.")
    if isinstance(max_detections, bool) or not isinstance(max_detections, numbers.Integral) or max_detections < 1:
        raise ValueError(f"`max_detections` must be an integer >= 1; received max_detections={max_detections!r}.")
    if class_aware:
        if classes is None:
            raise ValueError("class_aware=True needs `classes` (N,); pass class_aware=False to suppress across "
                             "classes.")
        c = np.asarray(classes).reshape(-1)
        if c.shape != (len(b),):
            raise ValueError(f"`classes` must have one id per box ({len(b)}); received shape {c.shape}.")
    else:
        c = np.zeros(len(b), dtype=np.int64)
    candidates = np.flatnonzero(s >= score_threshold)
    order = candidates[np.argsort(-s[candidates], kind="stable")]
    keep = []
    suppressed = np.zeros(len(b), dtype=bool)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == max_detections:
            break
        rest = order[pos + 1:]
        rest = rest[(~suppressed[rest]) & (c[rest] == c[i])]
        if len(rest):
            suppressed[rest[box_iou(b[i], b[rest])[0] > iou_threshold]] = True
    return np.asarray(keep, dtype=np.int64)


def postprocess(predictions, anchors=None, image_size=None, score_threshold: float = 0.05,
                iou_threshold: float = 0.5, max_detections: int = 100, class_aware: bool = True) -> list:
    """Final detections per image: decode, keep each anchor's best class, non-maximum suppression.

    Args:
        predictions: raw (n, S_h, S_w, A, 5 + C) with `anchors` and `image_size`, or decoded (n, N, 4 + C).
        score_threshold: drop boxes whose score p(object) * p(class | object) is below it (0.05 for mAP, which
            needs the low-scoring tail; 0.3-0.5 to draw or deploy).
        iou_threshold, max_detections, class_aware: see :func:`non_max_suppression`.

    Returns:
        a list with one (boxes (k, 4) float32 x1, y1, x2, y2 pixels, scores (k,) float32, classes (k,) int64)
        per image, by descending score.
    """
    boxes, scores, classes = decode(predictions, anchors, image_size)
    out = []
    for b, s, c in zip(boxes, scores, classes):
        keep = non_max_suppression(b, s, iou_threshold, score_threshold, max_detections, class_aware, c)
        out.append((b[keep].astype(np.float32), s[keep].astype(np.float32), c[keep]))
    return out


def compare_detections(a, b, atol: float = 1e-4) -> dict:
    """Compare two per-image detection lists (e.g. the Keras path and the ONNX path after postprocess).

    Within an image, detections are compared after sorting by (class, x1, y1), so two near-equal scores listed
    in the other order still match.

    Returns:
        {"images", "boxes" (in `a`), "same_counts", "same_classes", "max_box_diff" (pixels),
        "max_score_diff", "match" (counts and classes equal, boxes within `atol`)}.
    """
    if len(a) != len(b):
        raise ValueError(f"compare_detections: {len(a)} images against {len(b)}.")
    same_counts = same_classes = True
    box_diff = score_diff = 0.0
    for (ba, sa, ca), (bb, sb, cb) in zip(a, b):
        ba, bb = np.asarray(ba, np.float64).reshape(-1, 4), np.asarray(bb, np.float64).reshape(-1, 4)
        sa, sb = np.asarray(sa, np.float64).reshape(-1), np.asarray(sb, np.float64).reshape(-1)
        ca, cb = np.asarray(ca).reshape(-1), np.asarray(cb).reshape(-1)
        if len(ba) != len(bb):
            same_counts = False
            continue
        if not len(ba):
            continue
        oa, ob = np.lexsort((ba[:, 1], ba[:, 0], ca)), np.lexsort((bb[:, 1], bb[:, 0], cb))
        same_classes &= bool(np.array_equal(ca[oa], cb[ob]))
        box_diff = max(box_diff, float(np.max(np.abs(ba[oa] - bb[ob]))))
        score_diff = max(score_diff, float(np.max(np.abs(sa[oa] - sb[ob]))))
    return {"images": len(a), "boxes": int(sum(len(d[0]) for d in a)), "same_counts": same_counts,
            "same_classes": same_classes, "max_box_diff": box_diff, "max_score_diff": score_diff,
            "match": bool(same_counts and same_classes and box_diff <= atol)}
