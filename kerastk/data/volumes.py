"""Multi-modal 3-D volumes (MRI-like) with a lesion to segment or classify.

    data = kerastk.data.load("volumes")                   # x (N, 24, 24, 24, 3); y (N, 24, 24, 24) int mask
    data = kerastk.data.load("volumes", target="class")   # same volumes; y (N,) = the lesion's shape

Each volume shows one smooth random "anatomy" (a sum of wide Gaussian bumps) and one lesion: a solid core
(a sphere, an ellipsoid or a cube, randomly rotated, with the same volume whatever its shape) wrapped in an
irregular shell of "edema". The channels are modalities that see the same voxels differently, as the MRI
sequences of a brain-tumour scan do:

- ``t1c`` (T1 after contrast): the core is bright, the edema is not; small bright "vessels" elsewhere are
  not lesion (distractors the other channels rule out).
- ``flair``: core and edema both bright, the edema brightest; small bright spots elsewhere are not lesion.
- ``t1``: the lesion is slightly dark; a strong smooth bias field and twice the noise (mostly nuisance).
- ``t2``: core and edema bright; the anatomy's contrast inverted.

So the core is "bright in t1c and in flair", the edema "bright in flair only, around a core": telling them
apart needs both channels and some context. Edges are soft (partial-volume blur), every modality has its own
scanner gain and Gaussian noise, and the lesion's contrast varies from volume to volume.

Mask labels: 0 = background, 1 = core, 2 = edema (``edema=False``: no shell, labels 0 and 1).
Volumes are float32 in 0..255 (8-bit-like scans) scaled to [0, 1] by the recorded preprocessing.
"""
from __future__ import annotations

import numpy as np

__all__ = ["volumes", "load_volumes", "MODALITIES", "LESION_SHAPES", "TARGETS"]

LESION_SHAPES = ("sphere", "ellipsoid", "cube")
TARGETS = ("mask", "class")
MIN_SIZE = 12  # the smallest lesion is ~3 voxels across: smaller volumes cannot hold it and its shell

# How each modality renders the scene, as intensity changes on a 0..1 scale:
#   tissue: gain on the smooth anatomy field; core / edema: lesion contrast; vessel / spot: contrast of the
#   small distractors (vessels: bright in t1c; spots: bright in flair); bias: strength of the smooth bias
#   field; noise: multiple of the `noise` argument.
MODALITIES = {
    "t1c": dict(tissue=0.30, core=0.38, edema=0.00, vessel=0.38, spot=0.00, bias=0.10, noise=1.0),
    "flair": dict(tissue=-0.20, core=0.22, edema=0.34, vessel=0.00, spot=0.30, bias=0.10, noise=1.0),
    "t1": dict(tissue=0.30, core=-0.12, edema=-0.05, vessel=0.05, spot=0.00, bias=0.45, noise=2.0),
    "t2": dict(tissue=-0.30, core=0.28, edema=0.28, vessel=-0.10, spot=0.15, bias=0.15, noise=1.0),
}
DEFAULT_MODALITIES = ("t1c", "flair", "t1")
CORE_RADIUS = (0.12, 0.19)  # radius of the sphere of equal volume, as a fraction of the smallest side
EDEMA_THICKNESS = (0.06, 0.11)  # mean shell thickness, fraction of the smallest side
ELONGATION = (1.8, 2.4)  # ellipsoid: long semi-axis / short semi-axes


def _check_size(size):
    dims = (size,) * 3 if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    try:
        dims = tuple(dims)
    except TypeError:
        dims = ()
    if len(dims) != 3 or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < MIN_SIZE
                             for d in dims):
        raise ValueError(f"`size` must be an integer >= {MIN_SIZE} (a cube) or a tuple of 3 such integers (depth, "
                         f"height, width); received size={size!r}.")
    return tuple(int(d) for d in dims)


def _check_modalities(modalities):
    names = list(MODALITIES)
    if isinstance(modalities, (int, np.integer)) and not isinstance(modalities, bool):
        if not 1 <= modalities <= len(names):
            raise ValueError(f"`modalities` must be a count in 1..{len(names)} or names from {names}; "
                             f"received modalities={modalities!r}.")
        order = [*DEFAULT_MODALITIES, *(n for n in names if n not in DEFAULT_MODALITIES)]
        return tuple(order[:modalities])
    chosen = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    if not chosen or any(m not in MODALITIES for m in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError(f"`modalities` must be a count in 1..{len(names)} or distinct names from {names}; "
                         f"received modalities={modalities!r}.")
    return chosen


def _check_args(n_samples, size, modalities, shapes, noise, target=None):
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"`n_samples` must be an integer >= 1; received n_samples={n_samples!r}.")
    dims = _check_size(size)
    chosen = _check_modalities(modalities)
    shapes = (shapes,) if isinstance(shapes, str) else tuple(shapes)
    if not shapes or any(s not in LESION_SHAPES for s in shapes) or len(set(shapes)) != len(shapes):
        raise ValueError(f"`shapes` must be distinct names from {list(LESION_SHAPES)}; received shapes={shapes!r}.")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise <= 0.5:
        raise ValueError(f"`noise` must be a float in [0, 0.5] (standard deviation on the 0..1 intensity scale); "
                         f"received noise={noise!r}.")
    if target is not None and target not in TARGETS:
        raise ValueError(f"`target` must be one of {list(TARGETS)}; received target={target!r}.")
    return dims, chosen, shapes


def _rotation(rng) -> np.ndarray:
    """A uniformly random 3-D rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _smooth_field(rng, coords, n_waves=3, wavelength=(0.6, 1.2)):
    """A smooth random field in about [-1, 1]: a sum of plane cosine waves (coords in units of the side)."""
    field = np.zeros(coords.shape[:-1], dtype=np.float64)
    for _ in range(n_waves):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = 2 * np.pi / rng.uniform(*wavelength)
        field += np.cos(k * coords @ direction + rng.uniform(0, 2 * np.pi))
    return field / np.sqrt(n_waves * 0.5) / 2.0


def _soft(signed_distance, softness=0.35):
    """Partial-volume edge: 1 well inside, 0 well outside, 0.5 on the boundary (distance in voxels)."""
    return 1.0 / (1.0 + np.exp(-np.clip(signed_distance / softness, -30, 30)))


def _lesion_radius(kind, q, radius, elongation):
    """Normalized radius of voxel offsets `q` (rotated frame, voxels): < 1 inside the core, = 1 on its surface.
    Every shape has the volume of a sphere of `radius`. Returns (r, voxels per unit of r near the surface)."""
    if kind == "sphere":
        return np.linalg.norm(q, axis=-1) / radius, radius
    if kind == "ellipsoid":  # one long semi-axis, two short ones, product = radius**3
        axes = radius * np.array([elongation ** (2 / 3), elongation ** (-1 / 3), elongation ** (-1 / 3)])
        return np.linalg.norm(q / axes, axis=-1), float(axes.min())
    half = radius * (np.pi / 6) ** (1 / 3)  # cube of side 2*half with the sphere's volume
    return np.max(np.abs(q), axis=-1) / half, half


def volumes(n_samples: int = 600, size=24, modalities=DEFAULT_MODALITIES, shapes=LESION_SHAPES,
            edema: bool = True, noise: float = 0.06, seed: int = 0):
    """Generate multi-modal volumes with one lesion each.

    Args:
        n_samples: number of volumes.
        size: side of the cube, or (depth, height, width); every side >= 12.
        modalities: channel names from MODALITIES (in that order), or a count (the first of t1c, flair, t1, t2).
        shapes: the core shapes to draw from (uniformly), names from LESION_SHAPES.
        edema: draw the edema shell (mask label 2).
        noise: Gaussian noise standard deviation on the 0..1 intensity scale (t1 gets twice as much).
        seed: the same seed gives the same volumes.

    Returns:
        (volumes float32 (n, D, H, W, C) in 0..255, masks int64 (n, D, H, W) with 0 background / 1 core /
        2 edema, shape labels int64 (n,) indexing `shapes`, list(shapes), list of modality names).
    """
    dims, chosen, shapes = _check_args(n_samples, size, modalities, shapes, noise)
    rng = np.random.default_rng(seed)
    side = min(dims)
    # voxel centres in voxels, and in units of the side for the smooth fields
    grid = np.stack(np.meshgrid(*[np.arange(d) + 0.5 for d in dims], indexing="ij"), axis=-1)
    unit = grid / side
    x = np.empty((n_samples, *dims, len(chosen)), dtype=np.float32)
    masks = np.zeros((n_samples, *dims), dtype=np.int64)
    labels = rng.integers(0, len(shapes), size=n_samples).astype(np.int64)
    for i in range(n_samples):
        # --- anatomy: wide Gaussian bumps of both signs
        tissue = np.zeros(dims)
        for _ in range(5):
            centre = rng.uniform(0.0, 1.0, size=3) * np.array(dims) / side
            width = rng.uniform(0.2, 0.4)
            tissue += rng.uniform(-1, 1) * np.exp(-np.sum((unit - centre) ** 2, axis=-1) / (2 * width**2))
        tissue = np.tanh(tissue)

        # --- lesion core: shape, size, rotation, position; the core stays inside the volume, the shell's
        # irregular bulges reach the border in about one volume in ten (a cropped field of view)
        kind = shapes[labels[i]]
        radius = rng.uniform(*CORE_RADIUS) * side
        elongation = rng.uniform(*ELONGATION)
        thickness = rng.uniform(*EDEMA_THICKNESS) * side if edema else 0.0
        reach = {"sphere": 1.0, "ellipsoid": elongation ** (2 / 3), "cube": np.sqrt(3) * (np.pi / 6) ** (1 / 3)}
        extent = radius * reach[kind] + 1.6 * thickness + 1.0
        centre = np.array([rng.uniform(min(extent, d / 2), max(d - extent, d / 2)) for d in dims])
        q = (grid - centre) @ _rotation(rng)
        r, scale = _lesion_radius(kind, q, radius, elongation)
        core = r < 1.0
        soft_core = _soft((1.0 - r) * scale)
        if edema:  # an irregular shell: thickness varies smoothly by +-60% around the core, >= 1 voxel
            shell = thickness * (1.0 + 0.6 * np.clip(_smooth_field(rng, unit, wavelength=(0.4, 0.8)), -1, 1))
            shell = np.maximum(shell, 1.0)
            outside = (r - 1.0) * scale  # approximate distance from the core's surface, voxels
            edema_mask = ~core & (outside < shell)
            soft_edema = _soft(shell - outside) * (1.0 - soft_core)
        else:
            edema_mask = np.zeros(dims, dtype=bool)
            soft_edema = np.zeros(dims)
        masks[i][edema_mask] = 2
        masks[i][core] = 1

        # --- distractors: small bright "vessels" (t1c) and "spots" (flair) anywhere, not labelled
        vessel, spot = np.zeros(dims), np.zeros(dims)
        for field in (vessel, spot):
            for _ in range(int(rng.integers(0, 3))):
                c = rng.uniform(1.5, np.array(dims) - 1.5)
                field += _soft(rng.uniform(1.0, 1.8) - np.linalg.norm(grid - c, axis=-1))
        vessel, spot = np.minimum(vessel, 1.0), np.minimum(spot, 1.0)

        # --- render each modality: contrasts vary per volume, then bias field, scanner gain, noise
        gradient = rng.normal(size=3)
        gradient /= np.linalg.norm(gradient)
        bias_shape = (unit - 0.5) @ gradient + 0.5 * _smooth_field(rng, unit, n_waves=2, wavelength=(1.5, 3.0))
        lesion_gain, edema_gain = rng.uniform(0.75, 1.25, size=2)
        for c, name in enumerate(chosen):
            m = MODALITIES[name]
            img = (0.4 + m["tissue"] * tissue + lesion_gain * m["core"] * soft_core
                   + edema_gain * m["edema"] * soft_edema + m["vessel"] * vessel + m["spot"] * spot)
            img = img * (1.0 + m["bias"] * bias_shape) * rng.uniform(0.85, 1.15)
            img = img + rng.normal(0.0, noise * m["noise"], size=dims)
            x[i, ..., c] = np.clip(img, 0.0, 1.0) * 255.0
    return x, masks, labels, list(shapes), list(chosen)


def load_volumes(seed, n_samples: int = 600, size=24, modalities=DEFAULT_MODALITIES, target: str = "mask",
                 noise: float = 0.06, shapes=LESION_SHAPES, edema: bool = True):
    """Multi-modal 3-D volumes as a Dataset (see the module docstring).

    target="mask": y is the (D, H, W) voxel mask (0 background, 1 core, 2 edema), task "segmentation".
    target="class": y is the core's shape (index into `shapes`), task "classification" (stratified splits).
    """
    from kerastk.data import finish_dataset, split_dataset

    dims, chosen, shapes = _check_args(n_samples, size, modalities, shapes, noise, target)
    if target == "class" and len(shapes) < 2:
        raise ValueError(f"target='class' needs at least 2 `shapes` to tell apart; received shapes={shapes!r}.")
    x, masks, labels, names, chosen = volumes(n_samples=n_samples, size=dims, modalities=chosen, shapes=shapes,
                                              edema=edema, noise=noise, seed=seed)
    if target == "mask":
        y, task, class_names = masks, "segmentation", ["background", "core", *(["edema"] if edema else [])]
    else:
        y, task, class_names = labels, "classification", names
    splits = split_dataset(x, y, seed, stratify=target == "class")
    data = finish_dataset("volumes", splits, task=task, input_shape=(*dims, len(chosen)), class_names=class_names,
                   source=f"kerastk.data.volumes ({n_samples} volumes {'x'.join(map(str, dims))}, modalities "
                          f"{', '.join(chosen)}, target {target}, seed {seed})",
                   preprocessing={"type": "scale", "factor": 1.0 / 255.0})
    data.info["modalities"] = list(chosen)
    data.info["target_kind"] = target
    data.info["lesion_shapes"] = list(names)
    return data
