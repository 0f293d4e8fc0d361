"""Argument checks: a bad argument fails before any work is done, naming itself, what it received and what was
expected. Numpy-free and keras-free (the activation check, which needs keras, is in kerastk.layers.checks)."""
from __future__ import annotations

import numbers


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


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")
    return value


def check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; received {name}={value!r}.")
    return value


def check_seed(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ValueError(f"`seed` must be an integer or None; received seed={value!r}.")
    return None if value is None else int(value)


def check_int_tuple(name: str, value) -> tuple:
    """A non-empty sequence of positive ints (e.g. filters per stage), as a tuple."""
    try:
        value = tuple(value)
    except TypeError:
        raise ValueError(f"`{name}` must be a non-empty tuple of ints; received {name}={value!r}.") from None
    if not value:
        raise ValueError(f"`{name}` must be a non-empty tuple of ints; received {name}={value!r}.")
    for i, v in enumerate(value):
        check_int(f"{name}[{i}]", v)
    return value


def check_input_shape(input_shape, rank: int | None = None, min_spatial: int | None = None, name="input_shape"):
    """Validate an input shape (without the batch axis) and return it as a tuple.

    Args:
        rank: required number of axes (e.g. 3 for height, width, channels), or None for any.
        min_spatial: smallest allowed height/width for image inputs (the network's downsampling needs it).
    """
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ValueError(f"`{name}` must be a tuple of ints; received {name}={input_shape!r}.") from None
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"`{name}` must be a non-empty tuple of positive ints (no batch axis); "
                         f"received {name}={input_shape!r}.")
    if rank is not None and len(shape) != rank:
        raise ValueError(f"`{name}` must have {rank} axes (no batch axis); received {name}={input_shape!r}.")
    if min_spatial is not None and min(shape[:-1]) < min_spatial:
        raise ValueError(f"This network needs inputs of at least {min_spatial}x{min_spatial} pixels; "
                         f"received {name}={input_shape!r}.")
    return shape
