"""Detections drawn on their images: predicted boxes with class and score, optionally the ground truth.

    detections = kerastk.deploy.detection.postprocess(decoded, score_threshold=0.3)
    plot_detections(data.x_test, detections, "detections.png", ground_truth=data.y_test,
                    class_names=data.class_names)

numpy and matplotlib (Agg backend) only: works on Keras predictions and ONNX outputs alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: One colour per class (matplotlib's tab10).
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                 "#17becf", "#7f7f7f")


def _images(images) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:  # grey images without a channel axis
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"`images` must be (n, H, W, 3) or (n, H, W, 1); received shape {x.shape}.")
    if x.size and x.max() > 1.5:  # 0..255 pixels
        x = x / 255.0
    x = np.clip(x, 0.0, 1.0)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def plot_detections(images, detections, path, ground_truth=None, class_names=None, n: int = 6,
                    score_threshold: float = 0.0, columns: int = 3):
    """Draw predicted boxes (solid, coloured by class, labelled "class score") over the first `n` images and
    the ground truth (dashed white) when given; save a PNG.

    Args:
        images: (N, H, W, 3) pixels in [0, 1] or 0..255.
        detections: per image (boxes (k, 4) x1, y1, x2, y2 pixels, scores (k,), classes (k,)) - the output of
            kerastk.deploy.detection.postprocess.
        path: PNG path.
        ground_truth: dataset labels (N, M, 5) rows [class, x1, y1, x2, y2] (class -1 = padding) or a list of
            (boxes, classes) pairs.
        class_names: names for the class ids (default: the ids).
        n: number of images drawn.
        score_threshold: detections scoring below it are not drawn.
        columns: panels per row.

    Returns:
        the Path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    from kerastk.core.boxes import boxes_from_labels

    x = _images(images)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be an integer >= 1; received n={n!r}.")
    if not isinstance(detections, (list, tuple)) or len(detections) < min(n, len(x)):
        raise ValueError("`detections` must be a list with one (boxes, scores, classes) triple per image "
                         f"(at least {min(n, len(x))}); received {type(detections).__name__}"
                         f"{' of length ' + str(len(detections)) if isinstance(detections, (list, tuple)) else ''}.")
    truth = boxes_from_labels(ground_truth) if ground_truth is not None else None
    count = min(n, len(x))
    cols = max(1, min(columns, count))
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)

    def name(c):
        c = int(c)
        return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)

    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(x[i], interpolation="nearest")
        if truth is not None:
            for (x1, y1, x2, y2), _ in zip(*truth[i]):
                ax.add_patch(patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=1.2,
                                               ls="--", edgecolor="white"))
        boxes, scores, classes = (np.asarray(a) for a in detections[i])
        for (x1, y1, x2, y2), s, c in zip(boxes.reshape(-1, 4), scores.reshape(-1), classes.reshape(-1)):
            if s < score_threshold:
                continue
            colour = CLASS_COLOURS[int(c) % len(CLASS_COLOURS)]
            ax.add_patch(patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, lw=1.6,
                                           edgecolor=colour))
            ax.text(x1 - 0.5, y1 - 1.0, f"{name(c)} {s:.2f}", color="white", fontsize=7, va="bottom",
                    bbox=dict(facecolor=colour, edgecolor="none", pad=1.0, alpha=0.85))
        n_truth = "" if truth is None else f" / {len(truth[i][0])} true"
        ax.set_title(f"#{i}: {int(np.sum(scores >= score_threshold))} found{n_truth}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
