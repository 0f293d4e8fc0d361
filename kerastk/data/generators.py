"""Seeded generators for 2-D toy problems (numpy only). Each returns (x, y, class_names)."""
from __future__ import annotations

import numpy as np


def xor(n_samples: int = 800, noise: float = 0.15, seed: int = 0):
    """Four Gaussian clusters at the corners of the unit square centred on 0; label = x0 > 0 XOR x1 > 0.

    No straight line separates the two classes: the lesson's proof that a perceptron needs a hidden layer.
    """
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(n_samples, 2))
    x = (corners * 2.0 - 1.0) + rng.normal(0.0, noise, size=(n_samples, 2))
    y = np.logical_xor(corners[:, 0], corners[:, 1]).astype(np.int64)
    return x.astype(np.float32), y, ["same", "different"]


def blobs(n_samples: int = 900, noise: float = 0.6, seed: int = 0, n_classes: int = 3):
    """Isotropic Gaussian blobs around centres on a circle of radius 2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n_samples)
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x = centres[y] + rng.normal(0.0, noise, size=(n_samples, 2))
    return x.astype(np.float32), y.astype(np.int64), [f"blob_{i}" for i in range(n_classes)]


def spirals(n_samples: int = 900, noise: float = 0.08, seed: int = 0, n_classes: int = 3):
    """Interleaved spiral arms (the classic "needs depth" toy problem)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n_samples)
    r = rng.uniform(0.05, 1.0, size=n_samples)
    theta = 4.0 * r + 2 * np.pi * y / n_classes + rng.normal(0.0, noise * 2, size=n_samples)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1) + rng.normal(0.0, noise / 4, size=(n_samples, 2))
    return x.astype(np.float32), y.astype(np.int64), [f"arm_{i}" for i in range(n_classes)]


# --- images of shapes ----------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "cross", "ring")


def shape_mask(kind: str, size: int, cy: float, cx: float, radius: float, angle: float) -> np.ndarray:
    """Boolean (size, size) mask of one shape centred at (cy, cx) with outer radius `radius`, rotated by `angle`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # coordinates in the shape's rotated frame
    if kind == "circle":
        return u**2 + v**2 <= radius**2
    if kind == "ring":
        r2 = u**2 + v**2
        return (r2 <= radius**2) & (r2 >= (0.55 * radius) ** 2)
    if kind == "square":
        half = radius / np.sqrt(2.0)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if kind == "cross":
        arm = 0.3 * radius
        return ((np.abs(u) <= arm) & (np.abs(v) <= radius)) | ((np.abs(v) <= arm) & (np.abs(u) <= radius))
    if kind == "triangle":  # equilateral, circumradius `radius`: inside all three edge half-planes
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = angle + np.pi / 2 + 2 * np.pi * k / 3
            # the edge opposite vertex k lies at distance radius/2 from the centre along -direction(a)
            inside &= (-(np.cos(a) * dx + np.sin(a) * dy)) <= radius / 2
        return inside
    raise ValueError(f"Unknown shape {kind!r}; expected one of {SHAPES}.")


def random_colour(rng, avoid=None):
    """A saturated random colour, far enough from `avoid` (the background) to be visible."""
    while True:
        colour = rng.uniform(0.0, 1.0, size=3)
        colour[rng.integers(0, 3)] = rng.uniform(0.75, 1.0)
        if avoid is None or np.abs(colour - avoid).sum() > 0.6:
            return colour


def shapes(n_samples: int = 3000, image_size: int = 32, noise: float = 0.05, seed: int = 0, classes=SHAPES,
           return_boxes: bool = False):
    """Colour images (0..255) of one shape each, labelled by shape: random colour, size, position, rotation,
    a random background tint and pixel noise. Returns (x, y, class_names); x is float32 (n, H, W, 3).
    With ``return_boxes=True`` also the shape's tight box per image, float32 (n, 4) as pixel x1, y1, x2, y2
    (x2, y2 exclusive) - the same images as without it."""
    rng = np.random.default_rng(seed)
    classes = tuple(classes)
    for c in classes:
        if c not in SHAPES:
            raise ValueError(f"Unknown shape class {c!r}; expected some of {SHAPES}.")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16; received image_size={image_size}.")
    x = np.empty((n_samples, image_size, image_size, 3), dtype=np.float32)
    y = rng.integers(0, len(classes), size=n_samples)
    boxes = np.zeros((n_samples, 4), dtype=np.float32)
    for i in range(n_samples):
        background = rng.uniform(0.0, 0.45, size=3)
        radius = rng.uniform(0.2, 0.42) * image_size
        cy, cx = rng.uniform(radius * 0.8, image_size - radius * 0.8, size=2)
        mask = shape_mask(classes[y[i]], image_size, cy, cx, radius, rng.uniform(0, 2 * np.pi))
        rows, cols = np.nonzero(mask)
        boxes[i] = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        img = np.broadcast_to(background, (image_size, image_size, 3)).copy()
        img[mask] = random_colour(rng, avoid=background)
        img += rng.normal(0.0, noise, size=img.shape)
        x[i] = np.clip(img, 0.0, 1.0) * 255.0
    if return_boxes:
        return x, y.astype(np.int64), list(classes), boxes
    return x, y.astype(np.int64), list(classes)


COLOURS = {"red": (0.9, 0.15, 0.15), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.3, 0.95)}


def shape_attributes(n_samples: int = 3000, image_size: int = 32, noise: float = 0.05, seed: int = 0,
                     kinds=("circle", "square", "triangle")):
    """Multi-label images (CelebA-style independent yes/no attributes): 1 to 3 shapes per image, each of a
    random kind and one of three colours. Attributes: `has_<kind>` for each kind, `has_<colour>` for each
    colour, and `crowded` (three shapes). Returns (x, y, attribute_names); y is (n, n_attributes) of 0/1."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    names = [f"has_{k}" for k in kinds] + [f"has_{c}" for c in colours] + ["crowded"]
    x = np.empty((n_samples, image_size, image_size, 3), dtype=np.float32)
    y = np.zeros((n_samples, len(names)), dtype=np.int64)
    for i in range(n_samples):
        img = np.broadcast_to(rng.uniform(0.0, 0.3, size=3), (image_size, image_size, 3)).copy()
        count = rng.integers(1, 4)
        for _ in range(count):
            k, c = rng.integers(0, len(kinds)), rng.integers(0, len(colours))
            radius = rng.uniform(0.14, 0.24) * image_size
            cy, cx = rng.uniform(radius, image_size - radius, size=2)
            img[shape_mask(kinds[k], image_size, cy, cx, radius, rng.uniform(0, 2 * np.pi))] = COLOURS[colours[c]]
            y[i, k] = 1
            y[i, len(kinds) + c] = 1
        y[i, -1] = int(count == 3)
        img += rng.normal(0.0, noise, size=img.shape)
        x[i] = np.clip(img, 0.0, 1.0) * 255.0
    return x, y, names
