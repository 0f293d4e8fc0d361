"""Task metrics computed with numpy on predictions, so Keras and ONNX outputs are scored by the same code."""
from __future__ import annotations

import numpy as np


def task_metrics(task: str, y_true, y_pred, threshold: float = 0.5) -> dict:
    """Accuracy for classification (argmax, or `threshold` on a single unit); MSE/MAE for regression;
    for multi-label outputs the accuracy of every attribute (`threshold` on each sigmoid) and their mean."""
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
