"""Multi-layer perceptrons of any depth and width."""
from __future__ import annotations

import keras

from kerastk.models._common import check_activation, check_choice, check_input_shape, check_int, check_rate
from kerastk.models.catalog import register_model


def apply_dense_block(x, units, activation, dropout, batchnorm, name):
    """Dense -> (BatchNorm) -> activation -> (Dropout). With BatchNorm the Dense has no bias."""
    x = keras.layers.Dense(units, use_bias=not batchnorm, name=f"{name}_dense")(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    x = keras.layers.Activation(activation, name=f"{name}_{activation}" if isinstance(activation, str)
                                else f"{name}_act")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


@register_model(family="mlp", paper="Rumelhart, Hinton & Williams 1986", default_input_shape=(784,))
def mlp(input_shape=(784,), num_classes=10, depth=2, width=128, activation="relu", dropout=0.0,
        batchnorm=False, output_activation="softmax", name="mlp"):
    """Multi-layer perceptron: `depth` hidden Dense layers of `width` units (an int or one per layer).

    Args:
        input_shape: features (any rank; flattened first).
        num_classes: output units (use 1 with output_activation="linear" for regression).
        depth: number of hidden layers (0 gives a linear / logistic model).
        width: units per hidden layer, an int or a list of `depth` ints.
        activation: hidden activation (any Keras activation name: relu, tanh, sigmoid, elu, leaky_relu ...).
        dropout: dropout rate after each hidden layer.
        batchnorm: BatchNormalization before each hidden activation.
        output_activation: "softmax", "sigmoid" (multi-label / binary) or "linear" (regression, logits).
    """
    shape = check_input_shape(input_shape)
    check_int("num_classes", num_classes)
    check_int("depth", depth, minimum=0)
    widths = [width] * depth if isinstance(width, int) and not isinstance(width, bool) else list(width)
    if len(widths) != depth:
        raise ValueError(f"`width` must be an int or a list of `depth`={depth} ints; received width={width!r}.")
    for i, w in enumerate(widths):
        check_int(f"width[{i}]", w)
    check_activation("activation", activation)
    check_rate("dropout", dropout)
    check_choice("output_activation", output_activation, ("softmax", "sigmoid", "linear"))

    inputs = keras.Input(shape, name="features")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(shape) > 1 else inputs
    for i, units in enumerate(widths):
        x = apply_dense_block(x, units, activation, dropout, batchnorm, name=f"hidden{i + 1}")
    outputs = keras.layers.Dense(num_classes, activation=output_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)
