"""Argument checks shared by kerastk's layers: a bad argument fails in the constructor, naming itself.

The numpy-free checks are kerastk.core.checks (re-exported here); this module adds the one that needs keras.
"""
from __future__ import annotations

import keras

from kerastk.core.checks import check_bool, check_float, check_int, check_rate, check_seed  # noqa: F401


def check_activation(name: str, value):
    """Resolve an activation (name, callable or serialized config); ValueError naming `name` if unknown."""
    try:
        fn = keras.activations.get(value)
    except (ValueError, TypeError, KeyError):
        fn = None
    if fn is None or not callable(fn):
        raise ValueError(f"`{name}`={value!r} is not a Keras activation (e.g. 'relu', 'sigmoid', None).")
    return fn
