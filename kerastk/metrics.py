"""Task metrics computed with numpy on predictions, so Keras and ONNX outputs are scored by the same code."""
from __future__ import annotations

import numpy as np

PAD_ID = 0  # every kerastk vocabulary reserves token id 0 for padding


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def sequence_metrics(y_true, logits, pad_id: int = PAD_ID) -> dict:
    """Token accuracy and perplexity over non-padding targets, and the fraction of whole sequences that match.

    `y_true` (N, T) token ids, `logits` (N, T, V) unnormalised scores (teacher-forced predictions)."""
    y_true = np.asarray(y_true).astype(np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[:2] != y_true.shape:
        raise ValueError(f"sequence targets {y_true.shape} do not match predictions {logits.shape} (N, T, V).")
    keep = y_true != pad_id
    predicted = np.argmax(logits, axis=-1)
    log_p = np.take_along_axis(_log_softmax(logits), y_true[..., None], axis=-1)[..., 0]
    correct = (predicted == y_true) | ~keep
    return {"token_accuracy": float(np.mean(predicted[keep] == y_true[keep])),
            "exact_match": float(np.mean(np.all(correct, axis=1))),
            "perplexity": float(np.exp(-np.mean(log_p[keep])))}


def nearest_neighbour_accuracy(labels, embeddings, gallery_labels=None, gallery=None) -> float:
    """1-NN accuracy (Euclidean). Without a gallery: leave-one-out within `embeddings` (each row's nearest other
    row); with one: each row's nearest gallery row."""
    q = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)
    labels = np.asarray(labels).reshape(-1)
    g = q if gallery is None else np.asarray(gallery, dtype=np.float64).reshape(len(gallery), -1)
    g_labels = labels if gallery_labels is None else np.asarray(gallery_labels).reshape(-1)
    dist = (q**2).sum(1)[:, None] - 2 * q @ g.T + (g**2).sum(1)[None, :]
    if gallery is None:
        np.fill_diagonal(dist, np.inf)
    return float(np.mean(g_labels[np.argmin(dist, axis=1)] == labels))


def segmentation_metrics(y_true, y_pred, num_classes: int | None = None) -> dict:
    """Pixel accuracy, per-class IoU and Dice, and their means, for integer masks `y_true` (n, *spatial) and
    class scores `y_pred` (n, *spatial, C) or predicted masks (n, *spatial). Works for 2-D and 3-D masks.

    Classes absent from both the truth and the prediction get NaN and are left out of the means (the usual
    convention: an empty class is neither right nor wrong). Means include the background class 0."""
    y_true = np.asarray(y_true).astype(np.int64)
    y_pred = np.asarray(y_pred)
    labels = np.argmax(y_pred, axis=-1) if y_pred.ndim == y_true.ndim + 1 else y_pred.astype(np.int64)
    if labels.shape != y_true.shape:
        raise ValueError(f"segmentation_metrics: predicted masks {labels.shape} do not match true masks {y_true.shape}.")
    if num_classes is None:
        num_classes = y_pred.shape[-1] if y_pred.ndim == y_true.ndim + 1 else int(max(labels.max(), y_true.max())) + 1
    confusion = np.bincount(y_true.ravel() * num_classes + labels.ravel(),
                            minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = np.diag(confusion).astype(np.float64)
    fp, fn = confusion.sum(axis=0) - tp, confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return {"pixel_accuracy": float(tp.sum() / confusion.sum()), "mean_iou": float(np.nanmean(iou)),
            "mean_dice": float(np.nanmean(dice)), "iou": [round(float(v), 4) for v in iou],
            "dice": [round(float(v), 4) for v in dice]}


def task_metrics(task: str, y_true, y_pred, threshold: float = 0.5) -> dict:
    """Accuracy for classification (argmax, or `threshold` on a single unit); MSE/MAE for regression;
    for multi-label outputs the accuracy of every attribute (`threshold` on each sigmoid) and their mean;
    token accuracy / exact match / perplexity for "sequence" (logits); leave-one-out 1-NN accuracy for
    "embedding"; pixel accuracy, per-class IoU / Dice and their means for "segmentation"."""
    if task == "segmentation":
        m = segmentation_metrics(y_true, y_pred)
        return {"accuracy": m["pixel_accuracy"], **m}
    if task == "sequence":
        m = sequence_metrics(y_true, y_pred)
        return {"accuracy": m["token_accuracy"], **m}
    if task == "embedding":
        return {"accuracy": nearest_neighbour_accuracy(y_true, y_pred), "metric": "leave-one-out 1-NN"}
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true)
    if task == "multilabel":
        per_attribute = np.mean((y_pred > threshold) == (y_true > 0.5), axis=0)
        return {"accuracy": float(np.mean(per_attribute)),
                "attribute_accuracy": [round(float(a), 4) for a in per_attribute],
                "exact_match": float(np.mean(np.all((y_pred > threshold) == (y_true > 0.5), axis=1)))}
    if task == "regression":
        err = y_pred.reshape(len(y_true), -1) - y_true.reshape(len(y_true), -1).astype(np.float64)
        return {"mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err)))}
    if y_pred.ndim > 1 and y_pred.shape[-1] > 1:
        labels = np.argmax(y_pred, axis=-1)
    else:
        labels = (y_pred.reshape(len(y_true)) > threshold).astype(np.int64)
    return {"accuracy": float(np.mean(labels == y_true.reshape(len(y_true))))}


# --- object detection: average precision ---------------------------------------------------------------------

#: COCO's IoU thresholds for mAP@0.5:0.95.
COCO_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _detections_list(detections, n_images):
    """Per-image (boxes (k, 4), scores (k,), classes (k,)) as float64 / int64 arrays, checked."""
    if not isinstance(detections, (list, tuple)) or len(detections) != n_images:
        raise ValueError(f"`detections` must be a list with one (boxes, scores, classes) triple per image "
                         f"({n_images} images in the ground truth); received "
                         f"{len(detections) if isinstance(detections, (list, tuple)) else type(detections).__name__}.")
    out = []
    for i, d in enumerate(detections):
        if not isinstance(d, (list, tuple)) or len(d) != 3:
            raise ValueError(f"detections[{i}] must be a (boxes (k, 4), scores (k,), classes (k,)) triple.")
        b = np.asarray(d[0], dtype=np.float64).reshape(-1, 4)
        s = np.asarray(d[1], dtype=np.float64).reshape(-1)
        c = np.asarray(d[2]).astype(np.int64).reshape(-1)
        if not len(b) == len(s) == len(c):
            raise ValueError(f"detections[{i}] has {len(b)} boxes, {len(s)} scores and {len(c)} classes.")
        out.append((b, s, c))
    return out


def interpolated_average_precision(recall, precision) -> float:
    """All-point interpolated AP (PASCAL VOC 2010+; COCO samples the same curve at 101 recalls): the area
    under the precision-recall curve after making precision non-increasing in recall (each point takes the
    best precision at any higher recall). `recall` and `precision` are cumulative values, one per detection
    in descending score order."""
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def average_precision(detections, ground_truth, class_id=None, iou_threshold: float = 0.5) -> float:
    """AP of one class over a set of images (all-point interpolation).

    Detections of the class from every image are ranked by score; going down the ranking, a detection is a
    true positive when its best-overlapping still-unmatched ground-truth box of the class in the same image has
    IoU >= `iou_threshold` (that box is then matched), otherwise a false positive - so a second detection of an
    already-found object is a false positive. Recall is over all the class's ground-truth boxes.

    Args:
        detections: per image (boxes (k, 4) x1, y1, x2, y2, scores (k,), classes (k,)) -
            kerastk.deploy.detection.postprocess's output.
        ground_truth: dataset labels (n, M, 5) rows [class, x1, y1, x2, y2] (class -1 = padding) or a list of
            (boxes, classes) pairs.
        class_id: the class scored; None ignores classes (every box one class).
        iou_threshold: IoU needed for a match.

    Returns:
        AP in [0, 1]; NaN when the class has no ground-truth box.
    """
    import numbers

    from kerastk.core.boxes import box_iou, boxes_from_labels

    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real) or not 0 < iou_threshold <= 1:
        raise ValueError(f"`iou_threshold` must be in (0, 1]; received iou_threshold={iou_threshold!r}.")
    truth = boxes_from_labels(ground_truth)
    dets = _detections_list(detections, len(truth))
    if class_id is not None:
        truth = [(b[c == class_id], c[c == class_id]) for b, c in truth]
        dets = [(b[c == class_id], s[c == class_id], c[c == class_id]) for b, s, c in dets]
    n_truth = sum(len(b) for b, _ in truth)
    if n_truth == 0:
        return float("nan")
    image = np.concatenate([np.full(len(s), i) for i, (_, s, _) in enumerate(dets)] or [np.zeros(0)]).astype(int)
    if len(image) == 0:
        return 0.0
    scores = np.concatenate([s for _, s, _ in dets])
    local = np.concatenate([np.arange(len(s)) for _, s, _ in dets])  # index within its image
    ious = [box_iou(b, gt) for (b, _, _), (gt, _) in zip(dets, truth)]  # (k_i, g_i) per image
    matched = [np.zeros(len(b), dtype=bool) for b, _ in truth]
    tp = np.zeros(len(scores))
    for rank, k in enumerate(np.argsort(-scores, kind="stable")):
        i = image[k]
        if not len(matched[i]):
            continue
        iou = np.where(matched[i], -1.0, ious[i][local[k]])
        best = int(np.argmax(iou))
        if iou[best] >= iou_threshold:
            tp[rank] = 1.0
            matched[i][best] = True
    cum_tp = np.cumsum(tp)
    recall = cum_tp / n_truth
    precision = cum_tp / np.arange(1, len(tp) + 1)
    return interpolated_average_precision(recall, precision)


def mean_average_precision(detections, ground_truth, iou_threshold=0.5, num_classes=None) -> float:
    """mAP: the mean AP over the classes that have ground-truth boxes.

    Args:
        detections, ground_truth: see :func:`average_precision`.
        iou_threshold: one threshold (0.5: PASCAL VOC's mAP@0.5) or a sequence of them, whose mAPs are averaged
            (COCO_IOU_THRESHOLDS: COCO's mAP@0.5:0.95).
        num_classes: classes 0 .. num_classes - 1 are scored (None: every class seen in the ground truth).
    """
    import numbers

    from kerastk.core.boxes import boxes_from_labels

    scalar = isinstance(iou_threshold, numbers.Real)
    thresholds = [iou_threshold] if scalar else list(iou_threshold) if hasattr(iou_threshold, "__iter__") else []
    if not thresholds:
        raise ValueError("`iou_threshold` must be a number or a non-empty sequence of numbers.")
    truth = boxes_from_labels(ground_truth)
    seen = np.unique(np.concatenate([c for _, c in truth] or [np.zeros(0, dtype=np.int64)]))
    classes = range(num_classes) if num_classes is not None else seen
    per_threshold = []
    for t in thresholds:
        aps = [average_precision(detections, truth, int(c), t) for c in classes]
        aps = [a for a in aps if not np.isnan(a)]
        per_threshold.append(float(np.mean(aps)) if aps else float("nan"))
    return float(np.mean(per_threshold))


def detection_metrics(detections, ground_truth, class_names=None) -> dict:
    """mAP@0.5 (PASCAL VOC), mAP@0.5:0.95 (COCO thresholds, all-point AP at each) and AP@0.5 per class.

    Returns:
        {"map50", "map50_95", "ap50": [per class], "detections": total count} - with class names as keys of
        "ap50" when `class_names` is given.
    """
    from kerastk.core.boxes import boxes_from_labels

    truth = boxes_from_labels(ground_truth)
    n_classes = len(class_names) if class_names else int(max([c.max() for _, c in truth if len(c)] or [-1])) + 1
    ap50 = [average_precision(detections, truth, c, 0.5) for c in range(n_classes)]
    return {"map50": mean_average_precision(detections, truth, 0.5, num_classes=n_classes),
            "map50_95": mean_average_precision(detections, truth, COCO_IOU_THRESHOLDS, num_classes=n_classes),
            "ap50": {n: round(a, 4) for n, a in zip(class_names, ap50)} if class_names
            else [round(a, 4) for a in ap50],
            "detections": int(sum(len(d[1]) for d in detections))}
