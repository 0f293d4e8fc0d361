"""Xception: depthwise-separable convolutions with residual connections, in an entry, a middle and an exit flow.

Structure (no biases, BatchNormalization with Keras's default epsilon 1e-3) follows keras.applications.Xception,
so the parameter count matches it exactly; the residual branches get deterministic names here.
"""
from __future__ import annotations

import keras

from kerastk.models._common import check_head, check_input_shape, check_int, classifier_output, pool_features
from kerastk.models.catalog import register_model

MIN_INPUT = 71  # as keras.applications.Xception (two valid 3x3 convs, then four stride-2 stages)
ENTRY_FILTERS = (128, 256, 728)
MIDDLE_FILTERS = 728


def _sepconv_bn(x, filters, name, activate_first=True):
    """[ReLU] -> 3x3 separable conv (no bias) -> BN, named like keras.applications (f"{name}_act" ...)."""
    if activate_first:
        x = keras.layers.Activation("relu", name=f"{name}_act")(x)
    x = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def apply_xception_downsampling_block(x, filters, name, activate_first=True):
    """Residual block that halves the resolution: two separable convs + BN (the first preceded by ReLU when
    `activate_first`), a 3x3/2 max pool, plus a 1x1 stride-2 conv + BN shortcut.

    Args:
        x: input tensor.
        filters: (first, second) separable conv filters; the shortcut has the second.
        name: block label ("block2"); layers are f"{name}_sepconv1", ..., f"{name}_pool", f"{name}_residual_conv",
            f"{name}_add".
        activate_first: False for the first entry block, whose input already went through a ReLU.

    Returns:
        Output tensor with filters[1] channels at half resolution.
    """
    f1, f2 = filters
    residual = keras.layers.Conv2D(f2, 1, strides=2, padding="same", use_bias=False,
                                   name=f"{name}_residual_conv")(x)
    residual = keras.layers.BatchNormalization(name=f"{name}_residual_bn")(residual)
    x = _sepconv_bn(x, f1, f"{name}_sepconv1", activate_first=activate_first)
    x = _sepconv_bn(x, f2, f"{name}_sepconv2")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return keras.layers.Add(name=f"{name}_add")([x, residual])


def apply_xception_middle_block(x, name, filters=MIDDLE_FILTERS):
    """Middle-flow block: three (ReLU, 3x3 separable conv, BN) with an identity shortcut."""
    residual = x
    for i in range(3):
        x = _sepconv_bn(x, filters, f"{name}_sepconv{i + 1}")
    return keras.layers.Add(name=f"{name}_add")([x, residual])


def apply_entry_flow(x):
    """Entry flow: 32 3x3/2 and 64 3x3 valid convs (BN, ReLU), then downsampling blocks to 128, 256, 728."""
    x = keras.layers.Conv2D(32, 3, strides=2, use_bias=False, name="block1_conv1")(x)
    x = keras.layers.BatchNormalization(name="block1_conv1_bn")(x)
    x = keras.layers.Activation("relu", name="block1_conv1_act")(x)
    x = keras.layers.Conv2D(64, 3, use_bias=False, name="block1_conv2")(x)
    x = keras.layers.BatchNormalization(name="block1_conv2_bn")(x)
    x = keras.layers.Activation("relu", name="block1_conv2_act")(x)
    for i, filters in enumerate(ENTRY_FILTERS):
        x = apply_xception_downsampling_block(x, (filters, filters), f"block{i + 2}", activate_first=i > 0)
    return x


def apply_middle_flow(x, repeats=8, first_block=5):
    """Middle flow: `repeats` middle blocks at 728 channels (named block5, block6, ...)."""
    for i in range(repeats):
        x = apply_xception_middle_block(x, f"block{first_block + i}")
    return x


def apply_exit_flow(x, first_block=13):
    """Exit flow: a downsampling block (728 -> 1024), then 1536 and 2048 separable convs with BN and ReLU."""
    x = apply_xception_downsampling_block(x, (728, 1024), f"block{first_block}")
    name = f"block{first_block + 1}"
    for i, filters in enumerate((1536, 2048)):
        x = _sepconv_bn(x, filters, f"{name}_sepconv{i + 1}", activate_first=False)
        x = keras.layers.Activation("relu", name=f"{name}_sepconv{i + 1}_act")(x)
    return x


@register_model(family="xception",
                paper="Chollet 2017, Xception: deep learning with depthwise separable convolutions",
                default_input_shape=(299, 299, 3),
                preprocessing="keras.applications.xception.preprocess_input (pixels scaled to [-1, 1])",
                reference_params=22_910_480, reference_macs=None,
                reference_source="parameters: keras.applications.Xception(weights=None) at 299x299",
                test_kwargs=dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10))
def xception(input_shape=(299, 299, 3), num_classes=1000, include_top=True, pooling=None, middle_blocks=8):
    """Xception: entry flow (to 728 channels at 1/16 resolution), `middle_blocks` residual middle blocks,
    exit flow (to 2048 channels), global average pool, softmax. 22,910,480 parameters at 299x299."""
    shape = check_input_shape(input_shape, rank=3, min_spatial=MIN_INPUT)
    check_head(num_classes, include_top, pooling)
    check_int("middle_blocks", middle_blocks, minimum=0)

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = apply_entry_flow(inputs)
    x = apply_middle_flow(x, middle_blocks, first_block=5)
    x = apply_exit_flow(x, first_block=5 + middle_blocks)
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "exit_flow"), name="xception")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name="xception")
