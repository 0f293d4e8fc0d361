"""AlexNet as the course's slides draw it: one tower (no two-GPU split), LRN after the first two convolutions."""
from __future__ import annotations

import keras

from kerastk.layers import LocalResponseNormalization
from kerastk.models._common import check_head, check_input_shape, check_rate, classifier_output, pool_features
from kerastk.models.catalog import register_model

# The smallest input whose feature map survives the three 3x3/2 max pools after the 11x11/4 convolution:
# 67 -> conv1 15 -> pool1 7 -> pool2 3 -> pool5 1 (66 gives a 14x14 conv1 map and an empty pool5).
MIN_INPUT = 67


def _check_size(input_shape):
    """Validate the input shape: every stage (valid padding) must leave at least one pixel."""
    shape = check_input_shape(input_shape, rank=3)
    size = min(shape[:2])
    stages = [("conv1 11x11/4", 11, 4), ("pool1 3x3/2", 3, 2), ("pool2 3x3/2", 3, 2), ("pool5 3x3/2", 3, 2)]
    for stage, window, stride in stages:
        size = (size - window) // stride + 1
        if size < 1:
            raise ValueError(f"AlexNet needs inputs of at least {MIN_INPUT}x{MIN_INPUT} pixels (its {stage} "
                             f"leaves no pixels); received input_shape={input_shape!r}.")
    return shape


@register_model(family="alexnet",
                paper="Krizhevsky, Sutskever & Hinton 2012, ImageNet classification with deep convolutional "
                      "neural networks",
                default_input_shape=(227, 227, 3), preprocessing="RGB pixels in [0, 255] minus the ImageNet mean",
                reference_params=62_378_344, reference_macs=None,
                reference_source="parameters: the slides' single-tower AlexNet (96-256-384-384-256 convs, "
                                 "9216-4096-4096-1000 dense) summed layer by layer; the paper's 2-GPU version has "
                                 "grouped conv2/4/5 and ~61 M",
                test_kwargs=dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10))
def alexnet(input_shape=(227, 227, 3), num_classes=1000, include_top=True, pooling=None, dropout=0.5):
    """AlexNet (single tower): 96 11x11/4 conv, 3x3/2 max pool, LRN, 256 5x5 conv, max pool, LRN,
    384-384-256 3x3 convs, max pool, dense 4096-4096 with dropout, softmax. ReLU everywhere.
    62,378,344 parameters at 227x227x3 with 1000 classes."""
    shape = _check_size(input_shape)
    check_head(num_classes, include_top, pooling)
    check_rate("dropout", dropout)

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, name="norm1")(x)
    x = keras.layers.Conv2D(256, 5, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, name="norm2")(x)
    for i, filters in ((3, 384), (4, 384), (5, 256)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "pool5"), name="alexnet")
    x = keras.layers.Flatten(name="flatten")(x)
    for i in (6, 7):
        x = keras.layers.Dense(4096, activation="relu", name=f"fc{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"drop{i}")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="alexnet")

