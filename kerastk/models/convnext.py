"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s"): a ResNet modernised step by step towards a vision
transformer - a 4x4/4 "patchify" stem, stages of 3-3-9-3 blocks, 7x7 depthwise convolutions, LayerNorm,
inverted bottlenecks (4x wider MLP) with GELU, layer scale and stochastic depth, and separate 2x2/2
downsampling layers between stages.

The graph follows ``keras.applications.ConvNeXtTiny`` (which follows the official code), so
``convnext_tiny`` has exactly its parameters (28,589,128 with include_preprocessing=False), but the 7x7
depthwise convolution is a ``DepthwiseConv2D`` rather than ``Conv2D(groups=channels)`` (same weights, and
an op every ONNX exporter handles), and preprocessing is left to the data pipeline.
"""
from __future__ import annotations

import keras

from kerastk.layers import LayerScale, StochasticDepth
from kerastk.models._common import (
    POOLINGS,
    check_bool,
    check_choice,
    check_input_shape,
    check_int,
    check_rate,
    classifier_output,
)
from kerastk.models.catalog import register_model

LN_EPSILON = 1e-6
MIN_INPUT = 32  # the stem divides by 4, three downsampling layers by 2: 32x32 ends as 1x1

#: Variants: blocks per stage and channels per stage.
CONFIGS = {
    "tiny": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
}


def apply_convnext_block(x, drop_rate=0.0, layer_scale_init_value=1e-6, name="block"):
    """ConvNeXt block: 7x7 depthwise conv - LayerNorm - Dense(4C) - GELU - Dense(C) - layer scale, added to
    the input (stochastic depth drops the branch per sample while training).

    Args:
        x: input tensor (channels last, C channels).
        drop_rate: stochastic depth rate of this block (0 for a plain addition).
        layer_scale_init_value: initial per-channel scale of the branch; None for no layer scale.
        name: layer name prefix, e.g. ``stage1_block1``.

    Returns:
        Output tensor of the input's shape.
    """
    channels = x.shape[-1]
    shortcut = x
    x = keras.layers.DepthwiseConv2D(7, padding="same", name=f"{name}_depthwise_conv")(x)
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"{name}_layernorm")(x)
    # Dense on the channel axis = a 1x1 convolution (the official code uses Linear layers as well)
    x = keras.layers.Dense(4 * channels, name=f"{name}_pointwise_conv_1")(x)
    x = keras.layers.Activation("gelu", name=f"{name}_gelu")(x)
    x = keras.layers.Dense(channels, name=f"{name}_pointwise_conv_2")(x)
    if layer_scale_init_value is not None:
        x = LayerScale(layer_scale_init_value, name=f"{name}_layer_scale")(x)
    if drop_rate > 0:
        return StochasticDepth(drop_rate, name=f"{name}_drop_path")([shortcut, x])
    return keras.layers.Add(name=f"{name}_add")([shortcut, x])


def ConvNeXt(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), *, input_shape=(224, 224, 3), num_classes=1000,
             include_top=True, pooling=None, stochastic_depth_rate=0.0, layer_scale_init_value=1e-6,
             name="convnext"):
    """Any ConvNeXt: 4x4/4 conv stem + LayerNorm, four stages of ConvNeXt blocks with a LayerNorm + 2x2/2 conv
    downsampling layer before stages 2-4, global average pool, LayerNorm, softmax classifier.

    Args:
        depths: blocks per stage (four).
        dims: channels per stage (four).
        input_shape: (height, width, channels), at least 32x32.
        num_classes: classifier outputs (with include_top).
        include_top: end with the classifier; otherwise with the features, pooled by `pooling` and then
            layer-normalised (as keras.applications; pooling=None normalises the feature map).
        pooling: headless output: "avg", "max" or None.
        stochastic_depth_rate: drop rate of the last block; the rates rise linearly from 0 at the first block
            (the official schedule; ConvNeXt-T trains with 0.1).
        layer_scale_init_value: initial layer scale (1e-6); None for no layer scale.
        name: model name.

    Returns:
        A functional keras.Model.
    """
    shape = check_input_shape(input_shape, rank=3, min_spatial=MIN_INPUT)
    check_int("num_classes", num_classes)
    check_bool("include_top", include_top)
    check_choice("pooling", pooling, POOLINGS)
    check_rate("stochastic_depth_rate", stochastic_depth_rate)
    if layer_scale_init_value is not None and (isinstance(layer_scale_init_value, bool) or not isinstance(
            layer_scale_init_value, (int, float)) or layer_scale_init_value <= 0):
        raise ValueError("`layer_scale_init_value` must be a positive float or None; received "
                         f"layer_scale_init_value={layer_scale_init_value!r}.")
    for arg, values in (("depths", depths), ("dims", dims)):
        if not isinstance(values, (tuple, list)) or len(values) != 4:
            raise ValueError(f"`{arg}` must be four integers (one per stage); received {arg}={values!r}.")
        for i, v in enumerate(values):
            check_int(f"{arg}[{i}]", v)

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = keras.layers.Conv2D(dims[0], 4, strides=4, name="stem_conv")(inputs)
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="stem_layernorm")(x)
    total, index = sum(depths), 0
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        if stage > 0:
            x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=f"downsampling{stage}_layernorm")(x)
            x = keras.layers.Conv2D(dim, 2, strides=2, name=f"downsampling{stage}_conv")(x)
        for b in range(depth):
            rate = stochastic_depth_rate * index / (total - 1) if total > 1 else 0.0
            x = apply_convnext_block(x, rate, layer_scale_init_value, name=f"stage{stage + 1}_block{b + 1}")
            index += 1
    if pooling == "max" and not include_top:
        x = keras.layers.GlobalMaxPooling2D(name="head_max_pool")(x)
    elif include_top or pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="head_avg_pool")(x)
    x = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="head_layernorm")(x)
    if include_top:
        x = classifier_output(x, num_classes)
    return keras.Model(inputs, x, name=name)


@register_model(family="convnext", paper="Liu et al. 2022, A ConvNet for the 2020s", default_input_shape=(224, 224, 3),
                preprocessing="RGB pixels / 255, then per-channel ImageNet mean/std (0.485, 0.456, 0.406) / "
                              "(0.229, 0.224, 0.225)",
                reference_params=28_589_128, reference_macs=4_500_000_000,
                reference_source="keras.applications.ConvNeXtTiny(weights=None, include_preprocessing=False)"
                                 ".count_params(); mult-adds: Liu et al. Table 1 (4.5e9 FLOPs)",
                test_kwargs=dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10))
def convnext_tiny(input_shape=(224, 224, 3), num_classes=1000, include_top=True, pooling=None,
                  stochastic_depth_rate=0.0, layer_scale_init_value=1e-6):
    """ConvNeXt-T: blocks 3-3-9-3, channels 96-192-384-768; 28.6 M parameters, 4.5 G mult-adds at 224."""
    return ConvNeXt(**CONFIGS["tiny"], input_shape=input_shape, num_classes=num_classes, include_top=include_top,
                    pooling=pooling, stochastic_depth_rate=stochastic_depth_rate,
                    layer_scale_init_value=layer_scale_init_value, name="convnext_tiny")
