"""Scenes of several shapes with per-pixel class masks (segmentation) and boxes (detection).

    data = kerastk.data.load("segmentation")      # x (N, 64, 64, 3) in [0, 1]; y (N, 64, 64) int: 0 = background
    data = kerastk.data.load("detection")         # same images; y (N, MAX_OBJECTS, 5) = [class, x1, y1, x2, y2]

Each scene has 1 to ``max_objects`` shapes of random kind, colour, size (``scale`` range, a fraction of the
image side), position and rotation, drawn in order over a tinted background with a random linear gradient and
pixel noise. Later shapes occlude earlier ones; a placement is rejected when its box overlaps an earlier box by
more than ``max_overlap`` (IoU), so every object stays mostly visible. The class mask holds the top-most shape
at every pixel. Boxes are the tight pixel extent of the whole shape (occluded parts included, as detection
datasets label them), in pixel coordinates ``x1, y1, x2, y2`` with x2/y2 exclusive; padding rows have class -1.
Detection class ids are 0-based shape indices; segmentation class ids are 1-based (0 is background).
"""
from __future__ import annotations

import numpy as np

from kerastk.core.boxes import box_iou  # re-exported: scenes label boxes, the ground floor owns the arithmetic
from kerastk.data.generators import random_colour, shape_mask

__all__ = ["scenes", "box_iou", "load_segmentation", "load_detection", "SCENE_CLASSES"]

SCENE_CLASSES = ("circle", "square", "triangle")


def _check_scene_args(image_size, classes, max_objects, scale, max_overlap):
    from kerastk.data.generators import SHAPES

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"`image_size` must be an integer >= 32; received image_size={image_size!r}.")
    classes = tuple(classes)
    if not classes or any(c not in SHAPES for c in classes) or len(set(classes)) != len(classes):
        raise ValueError(f"`classes` must be distinct names from {list(SHAPES)}; received classes={classes!r}.")
    if isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 1:
        raise ValueError(f"`max_objects` must be an integer >= 1; received max_objects={max_objects!r}.")
    lo, hi = scale
    if not 0.03 <= lo <= hi <= 0.45:
        raise ValueError(f"`scale` must be (low, high) with 0.03 <= low <= high <= 0.45 (shape radius as a fraction "
                         f"of the image side); received scale={scale!r}.")
    if not 0.0 <= max_overlap < 1.0:
        raise ValueError(f"`max_overlap` must be in [0, 1); received max_overlap={max_overlap!r}.")
    return classes


def scenes(n_samples: int = 2000, image_size: int = 64, classes=SCENE_CLASSES, max_objects: int = 4,
           scale=(0.08, 0.2), max_overlap: float = 0.25, noise: float = 0.04, seed: int = 0):
    """Generate scenes. Returns (images, masks, boxes, class_names):

    - images: float32 (n, H, W, 3) in 0..255;
    - masks: int64 (n, H, W), 0 = background, k + 1 = classes[k];
    - boxes: float32 (n, max_objects, 5), rows [class, x1, y1, x2, y2] (pixels), class -1 marks padding.
    """
    classes = _check_scene_args(image_size, classes, max_objects, scale, max_overlap)
    rng = np.random.default_rng(seed)
    size = image_size
    images = np.empty((n_samples, size, size, 3), dtype=np.float32)
    masks = np.zeros((n_samples, size, size), dtype=np.int64)
    boxes = np.full((n_samples, max_objects, 5), -1.0, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(n_samples):
        background = rng.uniform(0.0, 0.4, size=3)
        gy, gx = rng.uniform(-0.15, 0.15, size=2)
        img = background + (gy * (yy - 0.5) + gx * (xx - 0.5))[..., None]
        placed = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            for _attempt in range(50):
                radius = rng.uniform(*scale) * size
                cy, cx = rng.uniform(radius * 0.7, size - radius * 0.7, size=2)
                kind = int(rng.integers(0, len(classes)))
                shape = shape_mask(classes[kind], size, cy, cx, radius, rng.uniform(0, 2 * np.pi))
                rows, cols = np.nonzero(shape)
                if len(rows) < 12:
                    continue
                box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float32)
                if placed and box_iou(box, np.array([p[1] for p in placed])).max() > max_overlap:
                    continue
                img[shape] = random_colour(rng, avoid=background)
                masks[i][shape] = kind + 1
                placed.append((kind, box))
                break
        for j, (kind, box) in enumerate(placed):
            boxes[i, j] = [kind, *box]
        img = img + rng.normal(0.0, noise, size=img.shape)
        images[i] = np.clip(img, 0.0, 1.0) * 255.0
    return images, masks, boxes, list(classes)


def _scene_dataset(name, task, seed, n_samples, image_size, noise, targets, class_names, **kwargs):
    from kerastk.data import finish_dataset, split_dataset

    x, masks, boxes, names = scenes(n_samples=n_samples, image_size=image_size, noise=noise, seed=seed, **kwargs)
    y = masks if targets == "masks" else boxes
    data = finish_dataset(name, split_dataset(x, y, seed, stratify=False), task=task,
                   source=f"kerastk.data.scenes ({n_samples} scenes {image_size}x{image_size}, seed {seed})",
                   input_shape=(image_size, image_size, 3), class_names=class_names(names),
                   preprocessing={"type": "scale", "factor": 1.0 / 255.0})
    return data


def load_segmentation(seed, n_samples=2000, image_size=64, noise=0.04, **kwargs):
    """Semantic segmentation: y is the (H, W) class mask, 0 = background (task "segmentation")."""
    return _scene_dataset("segmentation", "segmentation", seed, n_samples, image_size, noise, "masks",
                          lambda names: ["background", *names], **kwargs)


def load_detection(seed, n_samples=2000, image_size=64, noise=0.04, **kwargs):
    """Object detection: y is (max_objects, 5) rows [class, x1, y1, x2, y2] in pixels, class -1 = padding."""
    data = _scene_dataset("detection", "detection", seed, n_samples, image_size, noise, "boxes",
                          lambda names: names, **kwargs)
    data.info["box_format"] = "class, x1, y1, x2, y2 (pixels; x2, y2 exclusive); class -1 = padding"
    return data
