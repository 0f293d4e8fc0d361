"""Segmentation masks drawn over their images: one colour per class over the image in grey.

    colorize_mask(mask, num_classes=4)                     # (H, W) ints -> (H, W, 3) uint8
    plot_segmentation(x, y_true, model.predict(x), "overlays.png", class_names=data.class_names)

numpy and matplotlib (Agg backend) only: works on Keras predictions and ONNX outputs alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: Class colours (RGB): black background, then matplotlib's tab10 without its grey.
PALETTE = np.array([
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207),
], dtype=np.uint8)


def _palette(num_classes: int) -> np.ndarray:
    """`num_classes` colours: PALETTE, then evenly spread hues for any further classes."""
    if num_classes <= len(PALETTE):
        return PALETTE[:num_classes]
    import colorsys

    extra = num_classes - len(PALETTE)
    hues = [colorsys.hsv_to_rgb((i / extra + 0.05) % 1.0, 0.65, 0.95) for i in range(extra)]
    return np.concatenate([PALETTE, (np.array(hues) * 255).round().astype(np.uint8)])


def _as_labels(masks, name):
    """Integer masks from integer masks (n, H, W) or class scores (n, H, W, C) (argmax)."""
    masks = np.asarray(masks)
    if masks.ndim == 4:
        masks = np.argmax(masks, axis=-1)
    if masks.ndim != 3:
        raise ValueError(f"`{name}` must be masks (n, H, W) or class scores (n, H, W, C); received shape "
                         f"{masks.shape}.")
    return masks.astype(np.int64)


def colorize_mask(mask, num_classes: int | None = None) -> np.ndarray:
    """Class ids -> RGB colours.

    Args:
        mask: integer class ids, any shape (e.g. (H, W) or (n, H, W)), values in [0, num_classes).
        num_classes: number of classes (default: the largest id + 1); class 0 is drawn black.

    Returns:
        uint8 array of shape mask.shape + (3,).
    """
    mask = np.asarray(mask)
    if mask.size and not np.issubdtype(mask.dtype, np.integer):
        if not np.all(np.equal(np.mod(mask, 1), 0)):
            raise ValueError(f"`mask` must hold integer class ids; received dtype {mask.dtype} with fractions.")
    mask = mask.astype(np.int64)
    if num_classes is None:
        num_classes = int(mask.max()) + 1 if mask.size else 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an integer >= 1; received num_classes={num_classes!r}.")
    if mask.size and (mask.min() < 0 or mask.max() >= num_classes):
        raise ValueError(f"`mask` ids must lie in [0, {num_classes}); received values {mask.min()}..{mask.max()}.")
    return _palette(int(num_classes))[mask]


def _as_rgb(image) -> np.ndarray:
    """An image (H, W), (H, W, 1) or (H, W, 3) in [0, 1] (floats) or [0, 255] (uint8) as float RGB in [0, 1]."""
    image = np.asarray(image)
    image = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"images must be (H, W), (H, W, 1) or (H, W, 3); received shape {image.shape}.")
    return np.clip(image, 0.0, 1.0)


def overlay_mask(image, mask, num_classes: int, alpha: float = 0.65) -> np.ndarray:
    """The image in grey with every non-background pixel blended towards its class colour (float RGB in [0, 1]).

    Grey, so that an object's own colour does not mix with its class colour."""
    grey = np.repeat(_as_rgb(image).mean(axis=-1, keepdims=True), 3, axis=-1)
    colors = colorize_mask(mask, num_classes).astype(np.float64) / 255.0
    blend = (1.0 - alpha) * grey + alpha * colors
    return np.where((np.asarray(mask) > 0)[..., None], blend, grey)


def plot_segmentation(images, true_masks, pred_masks, path, class_names=None, n: int = 6, title: str = ""):
    """Save a PNG grid: one row per image - the image, the true mask over it, the predicted mask over it.

    Args:
        images: (N, H, W, C) with C = 1 or 3, floats in [0, 1] or uint8.
        true_masks: (N, H, W) integer masks.
        pred_masks: (N, H, W) integer masks or (N, H, W, num_classes) class scores (argmax is taken).
        path: PNG file to write (folders are created).
        class_names: names for the legend (index = class id; class 0 is the background); default "class i".
        n: number of rows (the first n images).
        title: figure title.

    Returns:
        Path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    images = np.asarray(images)
    truth, pred = _as_labels(true_masks, "true_masks"), _as_labels(pred_masks, "pred_masks")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`n` must be an integer >= 1; received n={n!r}.")
    if not (len(images) == len(truth) == len(pred)) or truth.shape != pred.shape or images.shape[1:3] != truth.shape[1:]:
        raise ValueError(f"images {images.shape}, true_masks {truth.shape} and pred_masks {pred.shape} must hold "
                         "the same number of images of the same height and width.")
    num_classes = max(int(truth.max()), int(pred.max())) + 1
    if class_names is not None:
        class_names = list(class_names)
        if len(class_names) < num_classes:
            raise ValueError(f"`class_names` has {len(class_names)} names; the masks hold class ids up to "
                             f"{num_classes - 1}.")
        num_classes = len(class_names)
    else:
        class_names = ["background", *(f"class {i}" for i in range(1, num_classes))]
    rows = min(n, len(images))
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows + 0.6), squeeze=False)
    for r in range(rows):
        pixel_accuracy = float(np.mean(truth[r] == pred[r]))
        panels = [(_as_rgb(images[r]), "image"), (overlay_mask(images[r], truth[r], num_classes), "truth"),
                  (overlay_mask(images[r], pred[r], num_classes), f"prediction ({pixel_accuracy:.1%} pixels)")]
        for ax, (picture, label) in zip(axes[r], panels):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    palette = _palette(num_classes) / 255.0
    handles = [Patch(color=palette[c], label=class_names[c]) for c in range(1, num_classes)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5) or 1, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.6 / (2.5 * rows + 0.6), 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
