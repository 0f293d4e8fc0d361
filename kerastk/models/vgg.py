"""VGG-16 and VGG-19: stacks of 3x3 stride-1 'same' convolutions and 2x2 max pools, then dense 4096-4096.

Layer names and structure follow keras.applications.VGG16/VGG19, so parameter counts match them exactly.
"""
from __future__ import annotations

import keras

from kerastk.models._common import check_head, check_input_shape, check_rate, classifier_output, pool_features
from kerastk.models.catalog import register_model

# Convolutions per block (filters 64, 128, 256, 512, 512), the paper's configurations D and E.
CONFIGS = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
FILTERS = (64, 128, 256, 512, 512)
MIN_INPUT = 32  # five 2x2 pools: 32 -> 1

_PAPER = "Simonyan & Zisserman 2014, Very deep convolutional networks for large-scale image recognition"
_PREPROCESSING = "keras.applications.vgg16.preprocess_input ('caffe': BGR, minus the ImageNet mean)"


def apply_vgg_block(x, filters, convs, name):
    """`convs` 3x3 'same' convolutions with ReLU, then a 2x2 max pool.

    Args:
        x: input tensor.
        filters: output channels of each convolution.
        convs: number of convolutions.
        name: block label ("block1"); layers are f"{name}_conv1" ... and f"{name}_pool".

    Returns:
        Output tensor, half the input's height and width.
    """
    for i in range(convs):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv{i + 1}")(x)
    return keras.layers.MaxPooling2D(2, strides=2, name=f"{name}_pool")(x)


def _vgg(variant, input_shape, num_classes, include_top, pooling, dropout):
    shape = check_input_shape(input_shape, rank=3, min_spatial=MIN_INPUT)
    check_head(num_classes, include_top, pooling)
    check_rate("dropout", dropout)

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = inputs
    for i, (filters, convs) in enumerate(zip(FILTERS, CONFIGS[variant])):
        x = apply_vgg_block(x, filters, convs, name=f"block{i + 1}")
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "block5"), name=variant)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = keras.layers.Dense(4096, activation="relu", name=f"fc{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name=variant)


@register_model(family="vgg", paper=_PAPER, default_input_shape=(224, 224, 3), preprocessing=_PREPROCESSING,
                reference_params=138_357_544, reference_macs=15_300_000_000,
                reference_source="parameters: keras.applications.VGG16(weights=None); mult-adds: the course "
                                 "slides (15 300 M at 224x224)",
                test_kwargs=dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10))
def vgg16(input_shape=(224, 224, 3), num_classes=1000, include_top=True, pooling=None, dropout=0.5):
    """VGG-16 (configuration D): 13 3x3 convolutions in 5 blocks (2-2-3-3-3), dense 4096-4096 with dropout
    (the paper's 0.5; 0 for keras.applications' head), softmax. 138,357,544 parameters at 224x224."""
    return _vgg("vgg16", input_shape, num_classes, include_top, pooling, dropout)


@register_model(family="vgg", paper=_PAPER, default_input_shape=(224, 224, 3), preprocessing=_PREPROCESSING,
                reference_params=143_667_240, reference_macs=None,
                reference_source="parameters: keras.applications.VGG19(weights=None)",
                test_kwargs=dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10))
def vgg19(input_shape=(224, 224, 3), num_classes=1000, include_top=True, pooling=None, dropout=0.5):
    """VGG-19 (configuration E): 16 3x3 convolutions in 5 blocks (2-2-4-4-4), dense 4096-4096 with dropout,
    softmax. 143,667,240 parameters at 224x224."""
    return _vgg("vgg19", input_shape, num_classes, include_top, pooling, dropout)
