"""Small CNNs for MNIST: the Keras example CNN and the course's improved LeNet-5."""
from __future__ import annotations

import keras

from kerastk.models._common import (
    check_head,
    check_input_shape,
    check_int,
    check_rate,
    classifier_output,
    pool_features,
)
from kerastk.models.catalog import register_model


@register_model(family="lenet", paper="LeCun et al. 1998, Gradient-based learning applied to document recognition",
                default_input_shape=(28, 28, 1), preprocessing="pixels / 255", reference_params=44_426,
                reference_source="the course slides' LeNet-5 on 28x28 MNIST (valid 5x5 convs, tanh, avg pools)")
def lenet5(input_shape=(28, 28, 1), num_classes=10, include_top=True, pooling=None):
    """LeNet-5 as the course improves it: 5x5 valid conv + tanh (6, then 16 filters), 2x2 average pools,
    dense 120-84 tanh, softmax output. 44,426 parameters on 28x28x1 with 10 classes."""
    shape = check_input_shape(input_shape, rank=3, min_spatial=16)
    check_head(num_classes, include_top, pooling)
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(6, 5, activation="tanh", name="c1_conv")(inputs)
    x = keras.layers.AveragePooling2D(2, name="s2_pool")(x)
    x = keras.layers.Conv2D(16, 5, activation="tanh", name="c3_conv")(x)
    x = keras.layers.AveragePooling2D(2, name="s4_pool")(x)
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "s4"), name="lenet5")
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(120, activation="tanh", name="f5_dense")(x)
    x = keras.layers.Dense(84, activation="tanh", name="f6_dense")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="lenet5")


@register_model(family="lenet", paper="Keras example 'Simple MNIST convnet'", default_input_shape=(28, 28, 1),
                preprocessing="pixels / 255")
def mnist_cnn(input_shape=(28, 28, 1), num_classes=10, filters=(32, 64), dropout=0.5, include_top=True,
              pooling=None):
    """The classic MNIST convnet: [3x3 conv + ReLU + 2x2 max pool] per entry of `filters`, dropout, softmax."""
    shape = check_input_shape(input_shape, rank=3, min_spatial=4 * 2 ** len(filters))
    check_head(num_classes, include_top, pooling)
    for i, f in enumerate(filters):
        check_int(f"filters[{i}]", f)
    check_rate("dropout", dropout)
    inputs = keras.Input(shape, name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, activation="relu", name=f"block{i + 1}_conv")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "features"), name="mnist_cnn")
    x = keras.layers.Flatten(name="flatten")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="mnist_cnn")
