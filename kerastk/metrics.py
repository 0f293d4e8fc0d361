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
