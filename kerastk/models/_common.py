"""Argument checks and heads shared by the builders: bad arguments fail before any layer is made."""
from __future__ import annotations

import keras

from kerastk.core.checks import (  # noqa: F401 - the builders' checks, one set for all floors
    check_bool,
    check_choice,
    check_float,
    check_input_shape,
    check_int,
    check_int_tuple,
    check_rate,
)
from kerastk.layers.checks import check_activation  # noqa: F401

POOLINGS = (None, "avg", "max")


def check_head(num_classes, include_top, pooling):
    """Validate the arguments every classifier builder shares."""
    check_int("num_classes", num_classes)
    check_bool("include_top", include_top)
    check_choice("pooling", pooling, POOLINGS)


def classifier_output(x, num_classes: int, name: str = "predictions"):
    """Dense head: one sigmoid unit for 2 classes would change the output shape, so kerastk always gives
    `num_classes` softmax probabilities for classifiers (argmax is the label)."""
    return keras.layers.Dense(num_classes, activation="softmax", name=name)(x)


def pool_features(x, pooling, name: str | None, rank: int = 2, mask=None):
    """Apply the `pooling` option over the `rank` spatial (or time) axes: "avg" / "max" (layers named
    `<name>_avg_pool` / `<name>_max_pool`, or `avg_pool` / `max_pool` with no name), None keeps the features.
    `mask` (a padding mask over time) is honoured by the average."""
    prefix = f"{name}_" if name else ""
    if pooling == "avg":
        pool = getattr(keras.layers, f"GlobalAveragePooling{rank}D")(name=f"{prefix}avg_pool")
        return pool(x) if mask is None else pool(x, mask=mask)
    if pooling == "max":
        return getattr(keras.layers, f"GlobalMaxPooling{rank}D")(name=f"{prefix}max_pool")(x)
    return x


def classifier_model(inputs, x, num_classes: int, include_top: bool, name: str, dropout: float = 0.0,
                     dropout_name: str = "dropout"):
    """The model from `inputs` to the features `x` (include_top=False), or to a softmax head on them, with
    Dropout at `dropout` before the head when it is non-zero."""
    if not include_top:
        return keras.Model(inputs, x, name=name)
    if dropout:
        x = keras.layers.Dropout(dropout, name=dropout_name)(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name=name)
