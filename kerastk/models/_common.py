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


def pool_features(x, pooling, name: str):
    """Apply the `pooling` option of a headless network (None keeps the feature map)."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=f"{name}_avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=f"{name}_max_pool")(x)
    return x
