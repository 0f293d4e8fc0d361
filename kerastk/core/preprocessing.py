"""The preprocessing a dataset records and a card carries (``{"type": "scale", "factor": 1/255}``, ...), applied
to raw inputs with numpy alone: training, the card and the deployed runtime share this one definition."""
from __future__ import annotations

import numpy as np

KINDS = ("none", "scale", "standardize", "tokens")


def apply_preprocessing(x, preprocessing: dict) -> np.ndarray:
    """Apply a dataset's recorded preprocessing to raw inputs (numpy only; the card stores the same dict)."""
    kind = preprocessing.get("type", "none")
    if kind == "tokens":  # token ids go in as they are (the card's vocabulary maps text to ids)
        return np.asarray(x, dtype=np.int32)
    x = np.asarray(x, dtype=np.float32)
    if kind == "none":
        return x
    if kind == "scale":
        return (x * np.float32(preprocessing["factor"])).astype(np.float32)
    if kind == "standardize":
        mean = np.asarray(preprocessing["mean"], dtype=np.float32)
        std = np.asarray(preprocessing["std"], dtype=np.float32)
        return ((x - mean) / std).astype(np.float32)
    raise ValueError(f"Unknown preprocessing type {kind!r}; expected one of 'none', 'scale', 'standardize', 'tokens'.")
