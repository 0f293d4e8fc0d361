"""Rows of model inputs: one array, or a list of arrays for a multi-input model (numpy only)."""
from __future__ import annotations

import numpy as np


def take_rows(x, rows):
    """Rows of an input array, or of each array of a multi-input list: `rows` is a count (the first rows) or an
    array of row indices."""
    sel = slice(None, rows) if isinstance(rows, (int, np.integer)) else np.asarray(rows)
    return [a[sel] for a in x] if isinstance(x, (list, tuple)) else x[sel]


def num_rows(x) -> int:
    """Number of samples in an input array or a multi-input list."""
    return int(len(x[0]) if isinstance(x, (list, tuple)) else len(x))
