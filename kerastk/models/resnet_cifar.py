"""CIFAR-style ResNets (He et al. 2016, section 4.2): a 3x3 stem and three stages of basic blocks with 16, 32
and 64 filters on 32x32 inputs; depth = 6n + 2 (ResNet-20: n = 3, 0.27 M parameters in the paper)."""
from __future__ import annotations

import keras

from kerastk.models._common import (
    POOLINGS,
    check_choice,
    check_input_shape,
    check_int,
    classifier_output,
    pool_features,
)
from kerastk.models.catalog import register_model
from kerastk.models.resnet import BN_EPSILON, apply_basic_block

STAGE_FILTERS = (16, 32, 64)


def CifarResNet(depth=20, *, input_shape=(32, 32, 3), num_classes=10, include_top=True, pooling=None,
                se_reduction=None, stochastic_depth_rate=0.0, name=None):
    """A CIFAR ResNet of `depth` = 6n + 2 layers (20, 32, 44, 56, 110 in the paper).

    Downsampling blocks use projection shortcuts (1x1 conv, the paper's option B) and the convolutions keep
    biases like kerastk's other ResNets, so ResNet-20 has 0.28 M parameters (0.27 M with option A).
    """
    shape = check_input_shape(input_shape, rank=3, min_spatial=8)
    check_int("num_classes", num_classes)
    check_choice("pooling", pooling, POOLINGS)
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"`depth` must be 6n + 2 (8, 14, 20, 32, 44, 56, 110 ...); received depth={depth!r}.")
    n = (depth - 2) // 6
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv1_conv")(inputs)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    total, index = 3 * n, 0
    for stage, filters in enumerate(STAGE_FILTERS):
        for b in range(n):
            index += 1
            x = apply_basic_block(x, filters, stride=2 if stage > 0 and b == 0 else 1, se_reduction=se_reduction,
                                  drop_rate=stochastic_depth_rate * index / total, name=f"conv{stage + 2}_block{b + 1}")
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "conv4"), name=name or f"resnet{depth}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name=name or f"resnet{depth}")


@register_model(family="resnet", paper="He et al. 2016, Deep residual learning for image recognition (CIFAR-10, "
                "section 4.2)", default_input_shape=(32, 32, 3), preprocessing="RGB pixels / 255",
                reference_params=270_000, reference_source="He et al. 2016 Table 6 (0.27 M, identity shortcuts)",
                test_kwargs=dict(input_shape=(16, 16, 3), num_classes=10))
def resnet20(input_shape=(32, 32, 3), num_classes=10, include_top=True, pooling=None, se_reduction=None,
             stochastic_depth_rate=0.0):
    """ResNet-20 for 32x32 images: 3x3 stem, 3 stages x 3 basic blocks (16, 32, 64 filters)."""
    return CifarResNet(20, input_shape=input_shape, num_classes=num_classes, include_top=include_top,
                       pooling=pooling, se_reduction=se_reduction, stochastic_depth_rate=stochastic_depth_rate)
