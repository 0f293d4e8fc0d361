"""Argument checks and heads shared by the builders: bad arguments fail before any layer is made."""
from __future__ import annotations

import keras

POOLINGS = (None, "avg", "max")


def check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; received {name}={value!r}.")
    return value


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


def check_rate(name: str, value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1); received {name}={value!r}.")
    return float(value)


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


def check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; received {name}={value!r}.")
    return value


def check_head(num_classes, include_top, pooling):
    """Validate the arguments every classifier builder shares."""
    check_int("num_classes", num_classes)
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False; received include_top={include_top!r}.")
    check_choice("pooling", pooling, POOLINGS)


def check_activation(name: str, value):
    try:
        keras.activations.get(value)
    except (ValueError, TypeError):
        raise ValueError(f"`{name}`={value!r} is not a Keras activation (e.g. 'relu', 'tanh', 'sigmoid').") from None
    return value


def classifier_output(x, num_classes: int, name: str = "predictions"):
    """Dense head: one sigmoid unit for 2 classes would change the output shape, so kerastk always gives
    `num_classes` softmax probabilities for classifiers (argmax is the label)."""
    return keras.layers.Dense(num_classes, activation="softmax", name=name)(x)


def pool_features(x, pooling, name: str):
    """Apply the `pooling` option of a headless network (None keeps the feature map)."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=f"{name}_avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=f"{name}_max_pool")(x)
    return x
