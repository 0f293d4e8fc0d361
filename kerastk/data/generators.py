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
