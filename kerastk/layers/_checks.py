"""Argument checks shared by kerastk's layers: a bad argument fails in the constructor, naming itself.

(Kept apart from kerastk.models._common: the model package imports the layers, not the other way round.)
"""
from __future__ import annotations

import numbers

import keras


def check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; received {name}={value!r}.")
    return int(value)


def check_float(name: str, value, minimum: float | None = None, minimum_inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a number; received {name}={value!r}.")
    if minimum is not None and (value < minimum or (value == minimum and not minimum_inclusive)):
        bound = ">=" if minimum_inclusive else ">"
        raise ValueError(f"`{name}` must be a number {bound} {minimum}; received {name}={value!r}.")
    return float(value)


def check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1); received {name}={value!r}.")
    return float(value)


def check_activation(name: str, value):
    """Resolve an activation (name, callable or serialized config); ValueError naming `name` if unknown."""
    try:
        fn = keras.activations.get(value)
    except (ValueError, TypeError, KeyError):
        fn = None
    if fn is None or not callable(fn):
        raise ValueError(f"`{name}`={value!r} is not a Keras activation (e.g. 'relu', 'sigmoid', None).")
    return fn


def check_seed(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ValueError(f"`seed` must be an integer or None; received seed={value!r}.")
    return None if value is None else int(value)
