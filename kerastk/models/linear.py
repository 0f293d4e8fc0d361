"""The first lessons' linear models: perceptron, linear regression, logistic regression."""
from __future__ import annotations

import keras

from kerastk.models._common import check_input_shape, check_int
from kerastk.models.catalog import register_model


def _flat_input(input_shape, name):
    shape = check_input_shape(input_shape)
    inputs = keras.Input(shape, name=name)
    x = keras.layers.Flatten(name="flatten")(inputs) if len(shape) > 1 else inputs
    return inputs, x


@register_model(family="linear", paper="Rosenblatt 1958", default_input_shape=(2,),
                loss="hinge (labels 0/1 are mapped to -1/+1 by keras.losses.Hinge)")
def perceptron(input_shape=(2,)):
    """Perceptron: one linear unit w.x + b; the decision is its sign (train with the hinge criterion)."""
    inputs, x = _flat_input(input_shape, "features")
    score = keras.layers.Dense(1, name="score")(x)
    return keras.Model(inputs, score, name="perceptron")


@register_model(family="linear", paper="Least squares (Legendre 1805, Gauss 1809)", default_input_shape=(13,),
                loss="mse or mae")
def linear_regression(input_shape=(13,), outputs=1):
    """Linear regression: y = W x + b, trained with MSE (or MAE for robustness to outliers)."""
    check_int("outputs", outputs)
    inputs, x = _flat_input(input_shape, "features")
    y = keras.layers.Dense(outputs, name="prediction")(x)
    return keras.Model(inputs, y, name="linear_regression")


@register_model(family="linear", paper="Cox 1958 (logistic regression)", default_input_shape=(4,),
                loss="binary_crossentropy (2 classes) or sparse_categorical_crossentropy")
def logistic_regression(input_shape=(4,), num_classes=3):
    """Logistic regression: one sigmoid unit for 2 classes, a softmax over `num_classes` otherwise."""
    check_int("num_classes", num_classes, minimum=2)
    inputs, x = _flat_input(input_shape, "features")
    if num_classes == 2:
        y = keras.layers.Dense(1, activation="sigmoid", name="probability")(x)
    else:
        y = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, y, name="logistic_regression")
