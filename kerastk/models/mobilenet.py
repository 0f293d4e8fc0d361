"""MobileNet v1: a 3x3 convolution, then 13 depthwise-separable blocks, global average pool, softmax.

Structure (no biases, BatchNormalization with Keras's default epsilon 1e-3, ReLU6, explicit bottom/right zero
padding before each stride-2 depthwise convolution) follows keras.applications.MobileNet, so parameter counts
match it exactly; the head is a Dense layer where Keras uses a 1x1 convolution (the same parameters).
"""
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

# (pointwise filters at alpha 1, stride) of the 13 depthwise-separable blocks: table 1 of the paper.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
STEM_FILTERS = 32
MIN_INPUT = 32  # five stride-2 stages: 32 -> 1


def _scaled(filters, alpha):
    # keras.applications truncates: int(filters * alpha)
    return int(filters * alpha)


def apply_depthwise_separable_block(x, filters, strides, alpha, name, depth_multiplier=1):
    """MobileNet's depthwise-separable block: 3x3 depthwise conv + BN + ReLU6, then 1x1 pointwise conv
    (`int(filters * alpha)` channels) + BN + ReLU6. No biases (BatchNormalization follows each conv).

    Args:
        x: input tensor.
        filters: pointwise filters at width multiplier 1.
        strides: 1 or 2 (stride of the depthwise conv; a stride-2 block first zero-pads the bottom/right).
        alpha: width multiplier.
        name: block label ("block1"); layers are f"{name}_dw_conv", f"{name}_dw_bn", f"{name}_dw_relu",
            f"{name}_pw_conv", f"{name}_pw_bn", f"{name}_pw_relu" (and f"{name}_pad").
        depth_multiplier: depthwise output channels per input channel.

    Returns:
        Output tensor with int(filters * alpha) channels.
    """
    if strides not in (1, 2) or isinstance(strides, bool):
        raise ValueError(f"`strides` must be 1 or 2; received strides={strides!r}.")
    if strides == 2:
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same" if strides == 1 else "valid",
                                     depth_multiplier=depth_multiplier, use_bias=False, name=f"{name}_dw_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = keras.layers.Conv2D(_scaled(filters, alpha), 1, use_bias=False, name=f"{name}_pw_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_pw_relu")(x)


@register_model(family="mobilenet",
                paper="Howard et al. 2017, MobileNets: efficient convolutional neural networks for mobile vision "
                      "applications",
                default_input_shape=(224, 224, 3),
                preprocessing="keras.applications.mobilenet.preprocess_input (pixels scaled to [-1, 1])",
                reference_params=4_253_864, reference_macs=569_000_000,
                reference_source="parameters: keras.applications.MobileNet(weights=None) (alpha 1.0, 224x224); "
                                 "mult-adds: the paper's table 8 and the course slides (569 M)",
                test_kwargs=dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10))
def mobilenet(input_shape=(224, 224, 3), num_classes=1000, include_top=True, pooling=None, alpha=1.0,
              depth_multiplier=1, dropout=1e-3):
    """MobileNet v1: 3x3/2 conv (32 * alpha) + BN + ReLU6, 13 depthwise-separable blocks up to 1024 * alpha
    channels, global average pool, dropout, softmax. 4,253,864 parameters and ~569 M mult-adds at alpha 1.0,
    224x224. The two knobs of the paper: `alpha` (width multiplier) and the resolution (`input_shape`)."""
    shape = check_input_shape(input_shape, rank=3, min_spatial=MIN_INPUT)
    check_head(num_classes, include_top, pooling)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"`alpha` must be a positive number (width multiplier); received alpha={alpha!r}.")
    if _scaled(STEM_FILTERS, alpha) < 1:
        raise ValueError(f"`alpha` is too small: int({STEM_FILTERS} * alpha) must be >= 1; received alpha={alpha!r}.")
    check_int("depth_multiplier", depth_multiplier)
    check_rate("dropout", dropout)

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(_scaled(STEM_FILTERS, alpha), 3, strides=2, padding="same", use_bias=False,
                            name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.ReLU(6.0, name="conv1_relu")(x)
    for i, (filters, strides) in enumerate(BLOCKS):
        x = apply_depthwise_separable_block(x, filters, strides, alpha, name=f"block{i + 1}",
                                            depth_multiplier=depth_multiplier)
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "block13"), name="mobilenet")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="mobilenet")
