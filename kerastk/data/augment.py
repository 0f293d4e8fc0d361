"""Data augmentation with Keras's own preprocessing layers.

The runner puts these layers in front of the model for training only (``run(..., augmentation=...)``); the
saved and exported model is the inference graph without them.
"""
from __future__ import annotations

POLICIES = ("none", "standard", "randaugment")


def augmentation(policy: str = "standard", *, flip: bool = True, rotation_degrees: float = 5.0,
                 crop_zoom: float = 0.1, translate: float = 0.1, colour_jitter: float = 0.1, seed: int = 0):
    """A keras.Sequential of augmentation layers for images with values in [0, 1], or None for "none".

    standard: horizontal flip, small rotations (±5° by default, as the course suggests), random crop + resize
    (zoom in by up to `crop_zoom`), translation, and colour jitter (brightness, contrast, saturation, hue).
    randaugment: Keras's RandAugment (2 random ops per image) plus the flip.
    """
    import keras

    if policy not in POLICIES:
        raise ValueError(f"Unknown augmentation policy {policy!r}; expected one of {list(POLICIES)}.")
    if policy == "none":
        return None
    L = keras.layers
    layers = [L.RandomFlip("horizontal", seed=seed)] if flip else []
    if policy == "randaugment":
        layers.append(L.RandAugment(value_range=(0, 1), seed=seed))
    else:
        layers += [
            L.RandomRotation(rotation_degrees / 360.0, fill_mode="reflect", seed=seed),
            L.RandomZoom((-crop_zoom, 0.0), fill_mode="reflect", seed=seed),  # negative zoom = crop + resize
            L.RandomTranslation(translate, translate, fill_mode="reflect", seed=seed),
        ]
        if colour_jitter:  # colour_jitter=0 leaves it out (grayscale images: saturation and hue need 3 channels)
            layers.append(L.RandomColorJitter(value_range=(0, 1), brightness_factor=colour_jitter,
                                              contrast_factor=colour_jitter,
                                              saturation_factor=(0.5 - colour_jitter, 0.5 + colour_jitter),
                                              hue_factor=colour_jitter / 2, seed=seed))
    return keras.Sequential(layers, name=f"augment_{policy}")
