"""Slices of 3-D volumes: every modality, the true mask and the predicted one, a row per volume, saved as PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_volume_slices", "pick_slices", "MASK_COLOURS"]

#: RGB per label (background, then classes); later labels cycle through the tab10 palette.
MASK_COLOURS = ((0.0, 0.0, 0.0), (0.89, 0.10, 0.11), (1.0, 0.85, 0.2), (0.22, 0.49, 0.72), (0.3, 0.69, 0.29))


def pick_slices(volumes, masks=None, axis: int = 0) -> np.ndarray:
    """The slice index along `axis` (0 = depth) to show for each volume: where the mask (n, D, H, W) has the
    most foreground voxels (for scores (n, D, H, W, K): their argmax); without masks, the slice through the
    brightest voxel of the first channel after a 5x5x5 box blur (a bright lesion outshines noise and small
    bright spots once blurred)."""
    volumes = np.asarray(volumes)
    other = tuple(a for a in (1, 2, 3) if a != axis + 1)
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim == 5:  # class scores per voxel
            masks = np.argmax(masks, axis=-1)
        if masks.ndim == 4:
            return np.argmax((masks > 0).sum(axis=other), axis=1)
    from scipy.ndimage import uniform_filter

    blurred = uniform_filter(volumes[..., 0].astype(np.float64), size=(1, 5, 5, 5), mode="nearest")
    flat = blurred.reshape(len(blurred), -1).argmax(axis=1)
    return np.array([np.unravel_index(i, blurred.shape[1:])[axis] for i in flat])


def _colour_mask(mask, num_classes):
    palette = np.array([MASK_COLOURS[k] if k < len(MASK_COLOURS) else MASK_COLOURS[1 + k % 4]
                        for k in range(max(num_classes, 1))])
    return palette[np.clip(mask, 0, len(palette) - 1)]


def _take(a, axis, index):
    return np.take(a, index, axis=axis)


def plot_volume_slices(volumes, path, truth=None, prediction=None, modality_names=None, class_names=None,
                       n: int = 4, slices=None, axis: int = 0, title: str = "") -> Path:
    """Save a grid of slices: one row per volume, one column per modality, then the truth and the prediction.

    Args:
        volumes: (n, D, H, W, C) inputs (any intensity range; each panel is scaled to its volume's range).
        path: PNG file to write.
        truth / prediction: voxel masks (n, D, H, W), class scores (n, D, H, W, K) (argmax is taken), or one
            class per volume (n,) / (n, K), which then goes into the row's titles instead of a mask panel.
        modality_names, class_names: labels for the column titles and the legend.
        n: number of volumes (the first n).
        slices: slice index per volume along `axis`; default :func:`pick_slices` (largest true lesion area).
        axis: 0 (axial, depth), 1 or 2.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    volumes = np.asarray(volumes)
    if volumes.ndim != 5:
        raise ValueError(f"plot_volume_slices: `volumes` must be (n, D, H, W, C); received shape {volumes.shape}.")
    if axis not in (0, 1, 2):
        raise ValueError(f"`axis` must be 0, 1 or 2 (depth, height, width); received axis={axis!r}.")
    n = min(int(n), len(volumes))
    if n < 1:
        raise ValueError("plot_volume_slices: no volumes to plot.")
    spatial = volumes.shape[1:4]

    def as_labels(a, name):
        if a is None:
            return None, None
        a = np.asarray(a)[:n]
        if a.ndim == 5 or (a.ndim == 2 and a.shape[1] > 1):
            a = np.argmax(a, axis=-1)
        if a.ndim == 4:
            if a.shape[1:] != spatial:
                raise ValueError(f"plot_volume_slices: {name} masks {a.shape[1:]} do not match volumes {spatial}.")
            return a.astype(np.int64), "mask"
        if a.ndim in (1, 2):
            return a.reshape(n).astype(np.int64), "class"
        raise ValueError(f"plot_volume_slices: cannot read `{name}` of shape {a.shape}.")

    truth, truth_kind = as_labels(truth, "truth")
    prediction, pred_kind = as_labels(prediction, "prediction")
    channels = volumes.shape[-1]
    modality_names = list(modality_names or [f"channel {c}" for c in range(channels)])
    if slices is None:
        slices = pick_slices(volumes[:n], truth if truth_kind == "mask" else None, axis)
    slices = np.asarray(slices).reshape(-1)[:n]
    num_classes = len(class_names) if class_names else int(max(
        [1] + [int(a.max()) + 1 for a, k in ((truth, truth_kind), (prediction, pred_kind)) if k == "mask"]))

    def name_of(k):
        return class_names[k] if class_names and 0 <= k < len(class_names) else str(k)

    panels = channels + (truth_kind == "mask") + (pred_kind == "mask")
    fig, axes = plt.subplots(n, panels, figsize=(1.9 * panels, 2.0 * n + 0.4), squeeze=False)
    for row in range(n):
        s = int(slices[row])
        col = 0
        for c in range(channels):
            image = _take(volumes[row, ..., c], axis, s)
            lo, hi = float(volumes[row, ..., c].min()), float(volumes[row, ..., c].max())
            axes[row, col].imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
            label = modality_names[c] if c < len(modality_names) else f"channel {c}"
            axes[row, col].set_title(f"{label} (slice {s})" if c == 0 else label, fontsize=8)
            col += 1
        for a, kind, what in ((truth, truth_kind, "truth"), (prediction, pred_kind, "prediction")):
            if kind == "mask":
                axes[row, col].imshow(_colour_mask(_take(a[row], axis, s), num_classes), interpolation="nearest")
                axes[row, col].set_title(what, fontsize=8)
                col += 1
        words = [f"{what}: {name_of(int(a[row]))}" for a, kind, what in
                 ((truth, truth_kind, "true"), (prediction, pred_kind, "predicted")) if kind == "class"]
        if words:
            wrong = truth_kind == pred_kind == "class" and truth[row] != prediction[row]
            axes[row, 0].set_ylabel("\n".join(words), fontsize=8, color="crimson" if wrong else "black")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    if "mask" in (truth_kind, pred_kind):
        handles = [Patch(color=_colour_mask(np.array(k), num_classes), label=name_of(k)) for k in range(num_classes)]
        fig.legend(handles=handles, loc="lower center", ncol=num_classes, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 if "mask" in (truth_kind, pred_kind) else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
