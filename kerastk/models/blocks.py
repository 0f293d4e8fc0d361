"""Factorised convolutions the curriculum names, and the head checks the CNN families share.

The blocks that belong to one family live in that family's file:

- inception module with 1x1 bottlenecks: ``kerastk.models.googlenet.apply_inception_module``
- MobileNet depthwise-separable block: ``kerastk.models.mobilenet.apply_depthwise_separable_block``
- Xception entry / middle / exit flows: ``kerastk.models.xception.apply_entry_flow`` (and ``_middle_``, ``_exit_``)
- dense block + transition layer: ``kerastk.models.densenet.apply_dense_block``, ``apply_transition``

This file holds the two factorisations no single builder uses, so a lesson can put them in any network:

- spatially separable convolution: a k x k kernel replaced by k x 1 then 1 x k
  (parameters ``k*C*F + k*F*F`` instead of ``k*k*C*F``; ``2k*C*F`` when ``C == F``);
- flattened convolution (Jin et al. 2014): each 3-D filter replaced by three 1-D filters, one across the
  channels (1 x 1), one vertical (k x 1), one horizontal (1 x k)
  (parameters ``C*F + 2*k*F`` instead of ``k*k*C*F``).

Both are linear factorisations (no activation between the factors; biases only on the last one), so they can
express exactly the rank-1 kernels they stand for.
"""
from __future__ import annotations

import keras

from kerastk.models._common import check_choice, check_int


def _kernel_size(kernel_size) -> int:
    return check_int("kernel_size", kernel_size)


def apply_spatially_separable_conv(x, filters, kernel_size, name, strides=1, padding="same", use_bias=True,
                                   activation=None):
    """Spatially separable convolution: a `kernel_size` x 1 convolution, then a 1 x `kernel_size` one.

    Args:
        x: input tensor (batch, height, width, channels).
        filters: output channels of both factors.
        kernel_size: k, an int (the k x k convolution this replaces).
        name: block label; layers are f"{name}_kx1_conv" and f"{name}_1xk_conv".
        strides: int; the vertical factor strides rows, the horizontal one columns.
        padding: "same" or "valid" (both factors).
        use_bias: bias on the second factor (a bias on the first would be redundant).
        activation: applied after the second factor only (None: linear).

    Returns:
        Output tensor with `filters` channels.
    """
    k = _kernel_size(kernel_size)
    check_int("filters", filters)
    check_int("strides", strides)
    check_choice("padding", padding, ("same", "valid"))
    x = keras.layers.Conv2D(filters, (k, 1), strides=(strides, 1), padding=padding, use_bias=False,
                            name=f"{name}_kx1_conv")(x)
    return keras.layers.Conv2D(filters, (1, k), strides=(1, strides), padding=padding, use_bias=use_bias,
                               activation=activation, name=f"{name}_1xk_conv")(x)


def apply_flattened_conv(x, filters, kernel_size, name, padding="same", use_bias=True, activation=None):
    """Flattened convolution (Jin, Dundar & Culurciello 2014, Flattened convolutional neural networks for
    feedforward acceleration): three 1-D filters in sequence.

    1. lateral: a 1 x 1 convolution across the channels, C -> `filters`;
    2. vertical: a k x 1 filter per channel (depthwise);
    3. horizontal: a 1 x k filter per channel (depthwise).

    Together each output channel f applies the rank-1 3-D filter a_f(c) * b_f(y) * c_f(x).

    Args:
        x: input tensor (batch, height, width, channels).
        filters: output channels F.
        kernel_size: k, an int.
        name: block label; layers are f"{name}_lateral_conv", f"{name}_vertical_conv", f"{name}_horizontal_conv".
        padding: "same" or "valid" (the two spatial factors).
        use_bias: bias on the last factor only.
        activation: applied after the last factor only (None: linear).

    Returns:
        Output tensor with `filters` channels.
    """
    k = _kernel_size(kernel_size)
    check_int("filters", filters)
    check_choice("padding", padding, ("same", "valid"))
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_lateral_conv")(x)
    x = keras.layers.DepthwiseConv2D((k, 1), padding=padding, use_bias=False, name=f"{name}_vertical_conv")(x)
    return keras.layers.DepthwiseConv2D((1, k), padding=padding, use_bias=use_bias, activation=activation,
                                        name=f"{name}_horizontal_conv")(x)
