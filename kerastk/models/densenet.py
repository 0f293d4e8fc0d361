"""DenseNet-121 and DenseNet-169: dense blocks (each layer sees every earlier feature map of its block) joined
by transition layers (1x1 conv halving the channels, 2x2 average pool).

Structure (BN-ReLU-conv ordering, no conv biases, BatchNormalization epsilon 1.001e-5) follows
keras.applications.DenseNet121/169, so parameter counts match them exactly.
"""
from __future__ import annotations

import keras

from kerastk.models._common import check_head, check_input_shape, check_int, classifier_output, pool_features
from kerastk.models.catalog import register_variant

# Layers per dense block.
CONFIGS = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
}
BN_EPSILON = 1.001e-5
MIN_INPUT = 32  # stem /4, three transitions /8: 32 -> 1

_PAPER = "Huang et al. 2017, Densely connected convolutional networks"
_PREPROCESSING = "keras.applications.densenet.preprocess_input ('torch': pixels / 255, ImageNet mean/std)"


def _bn_relu(x, name):
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def apply_dense_layer(x, growth_rate, name):
    """One bottleneck layer of a dense block (DenseNet-B): BN-ReLU-1x1 conv (4 * growth_rate),
    BN-ReLU-3x3 conv (growth_rate), concatenated to its input."""
    y = _bn_relu(x, f"{name}_0")
    y = keras.layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn_relu(y, f"{name}_1")
    y = keras.layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def apply_dense_block(x, layers, name, growth_rate=32):
    """Dense block: `layers` dense layers, each adding `growth_rate` channels.

    Args:
        x: input tensor with C channels.
        layers: number of dense layers.
        name: block label ("conv2"); layers are f"{name}_block1_0_bn" ... f"{name}_block{n}_concat".
        growth_rate: channels each layer adds (k in the paper).

    Returns:
        Output tensor with C + layers * growth_rate channels, same resolution.
    """
    for i in range(layers):
        x = apply_dense_layer(x, growth_rate, name=f"{name}_block{i + 1}")
    return x


def apply_transition(x, reduction, name):
    """Transition layer (DenseNet-C): BN-ReLU-1x1 conv to int(C * reduction) channels, 2x2/2 average pool.

    Args:
        x: input tensor with C channels.
        reduction: compression factor theta in (0, 1].
        name: layer label ("pool2"); layers are f"{name}_bn", f"{name}_relu", f"{name}_conv", f"{name}_pool".

    Returns:
        Output tensor at half resolution.
    """
    x = _bn_relu(x, name)
    x = keras.layers.Conv2D(int(x.shape[-1] * reduction), 1, use_bias=False, name=f"{name}_conv")(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def _densenet(variant, input_shape, num_classes, include_top, pooling, growth_rate, reduction):
    shape = check_input_shape(input_shape, rank=3, min_spatial=MIN_INPUT)
    check_head(num_classes, include_top, pooling)
    check_int("growth_rate", growth_rate)
    if isinstance(reduction, bool) or not isinstance(reduction, (int, float)) or not 0 < reduction <= 1:
        raise ValueError(f"`reduction` must be a number in (0, 1]; received reduction={reduction!r}.")

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = _bn_relu(x, "conv1")
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    blocks = CONFIGS[variant]
    for i, layers in enumerate(blocks):
        x = apply_dense_block(x, layers, name=f"conv{i + 2}", growth_rate=growth_rate)
        if i < len(blocks) - 1:
            x = apply_transition(x, reduction, name=f"pool{i + 2}")
    x = _bn_relu(x, "final")
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "final"), name=variant)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name=variant)


def _register_variant(name: str, keras_name: str, doc: str, reference_params: int):
    """Register the DenseNet CONFIGS[name] under `name`: every variant takes the same arguments."""

    def builder(input_shape=(224, 224, 3), num_classes=1000, include_top=True, pooling=None, growth_rate=32,
                reduction=0.5):
        return _densenet(name, input_shape, num_classes, include_top, pooling, growth_rate, reduction)

    return register_variant(builder, name, doc, family="densenet", paper=_PAPER, default_input_shape=(224, 224, 3),
                            preprocessing=_PREPROCESSING, reference_params=reference_params, reference_macs=None,
                            reference_source=f"parameters: keras.applications.{keras_name}(weights=None)",
                            test_kwargs=dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10))


densenet121 = _register_variant(
    "densenet121", "DenseNet121", "DenseNet-121 (BC, k=32): 7x7/2 conv, max pool, dense blocks of 6-12-24-16 "
    "layers with transitions,\nBN-ReLU, global average pool, softmax. 8,062,504 parameters at 224x224.", 8_062_504)
densenet169 = _register_variant(
    "densenet169", "DenseNet169", "DenseNet-169 (BC, k=32): dense blocks of 6-12-32-32 layers. 14,307,880 "
    "parameters at 224x224.", 14_307_880)
