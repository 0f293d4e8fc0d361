"""3-D convolutional networks for volumes (D, H, W, channels): the 3-D U-Net and a small 3-D CNN classifier.

``unet3d`` follows Çiçek et al. 2016: every 2-D operation of the U-Net replaced by its 3-D counterpart
(3x3x3 convolutions, 2x2x2 max pools, 2x2x2 stride-2 up-convolutions), batch normalization before each ReLU,
and the channels doubled *before* each pool (32-64, 64-128, 128-256, 256-512 at the paper's 3 pools) so
the analysis path never bottlenecks. With the paper's configuration (4 levels, 32 base filters, 3 input
channels, 3 labels) it has the paper's 19,069,955 convolution parameters. One difference: kerastk pads ("same")
so the per-voxel softmax has the input's size (the paper used valid convolutions and cropped the skips; the
parameter count does not depend on padding).

``cnn3d`` is the C3D idea (Tran et al. 2015: stacks of 3x3x3 convolutions and 2x2x2 max pools learn
spatio-temporal / volumetric features) at classroom size, with global average pooling instead of C3D's
4096-wide dense layers.
"""
from __future__ import annotations

import keras

from kerastk.models._common import (
    check_bool,
    check_choice,
    check_head,
    check_input_shape,
    check_int,
    check_int_tuple,
    check_rate,
    classifier_model,
    pool_features,
)
from kerastk.models.catalog import register_model

UPSAMPLING = ("transpose", "nearest")
# Moving averages of the batch-norm statistics follow the last ~10 steps (torch's default) instead of Keras's
# ~100: a few hundred steps on small volume sets leave Keras's 0.99 averages describing weights long gone,
# and inference (which uses them) then loses most of what training reached (measured: core IoU 0.20 at
# inference against 0.81 with batch statistics after 10 epochs of the volumes recipe).
BN_MOMENTUM = 0.9

_UNET3D_PAPER = ("Çiçek et al. 2016, 3D U-Net: Learning Dense Volumetric Segmentation from Sparse Annotation "
                 "(MICCAI)")
_C3D_PAPER = "Tran et al. 2015, Learning Spatiotemporal Features with 3D Convolutional Networks (C3D)"


def apply_conv3d_block(x, filters, batch_norm, name):
    """Two 3x3x3 'same' convolutions, each followed by batch normalization (optional) and a ReLU.

    Args:
        x: input tensor (batch, D, H, W, C).
        filters: (first, second) output channels.
        batch_norm: insert BatchNormalization between each convolution and its ReLU (the paper's choice).
        name: block label ("enc1"); layers are f"{name}_conv1", f"{name}_bn1", f"{name}_relu1", ...

    Returns:
        Output tensor with `filters[1]` channels and the input's spatial size.
    """
    for i, f in enumerate(filters, start=1):
        x = keras.layers.Conv3D(f, 3, padding="same", name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _check_volume_shape(input_shape, factor, what):
    shape = check_input_shape(input_shape, rank=4)
    if any(d % factor for d in shape[:3]):
        raise ValueError(f"{what} needs depth, height and width divisible by {factor}; "
                         f"received input_shape={tuple(input_shape)!r}.")
    return shape


@register_model(family="volumetric", paper=_UNET3D_PAPER, default_input_shape=(64, 64, 64, 3),
                preprocessing="intensities scaled to [0, 1] (or per-modality standardization)",
                reference_params=19_069_955, reference_macs=None,
                reference_source="Çiçek et al. 2016, section 2 ('19069955 parameters in total'): 4 levels, 32 base "
                                 "filters, 3 channels in, 3 labels; convolutions with biases, up-convolutions "
                                 "without, batch-norm parameters not counted - kerastk's unet3d(batch_norm=False) "
                                 "has exactly this count",
                test_kwargs=dict(input_shape=(8, 8, 8, 2), num_classes=3, depth=2, filters=4))
def unet3d(input_shape=(64, 64, 64, 3), num_classes=3, depth=4, filters=32, batch_norm=True,
           upsampling="transpose"):
    """3-D U-Net: `depth` resolution levels joined by skip connections, per-voxel softmax over `num_classes`.

    Level i (0-based) of the analysis path has convolutions of filters*2**i and filters*2**(i+1) channels; a
    2x2x2 max pool leads to the next level. The synthesis path up-samples (2x2x2 stride-2 transposed
    convolution keeping the channels, or nearest-neighbour repetition with upsampling="nearest"),
    concatenates the skip of the same level and applies two convolutions of filters*2**(i+1) channels. A
    1x1x1 convolution gives the class scores. Spatial sides must be divisible by 2**(depth-1).
    19,069,955 parameters with the paper's configuration (input (D, H, W, 3), depth 4, filters 32,
    num_classes 3, batch_norm=False); batch normalization adds 4 per channel (9,216 there).
    """
    check_int("depth", depth, 2)
    check_int("filters", filters)
    check_int("num_classes", num_classes, 2)
    check_choice("upsampling", upsampling, UPSAMPLING)
    check_bool("batch_norm", batch_norm)
    shape = _check_volume_shape(input_shape, 2 ** (depth - 1), f"unet3d with depth={depth}")

    # === Functional Model ===
    inputs = keras.Input(shape, name="volume")
    x = inputs
    skips = []
    for level in range(depth):  # analysis path; the last level is the bottom of the U
        if level:
            x = keras.layers.MaxPooling3D(2, name=f"enc{level}_pool")(x)
        x = apply_conv3d_block(x, (filters * 2**level, filters * 2 ** (level + 1)), batch_norm, f"enc{level + 1}")
        skips.append(x)
    for level in reversed(range(depth - 1)):  # synthesis path, back up to full resolution
        name = f"dec{level + 1}"
        if upsampling == "transpose":  # no bias: the paper's count, and the next convolution has one
            x = keras.layers.Conv3DTranspose(x.shape[-1], 2, strides=2, use_bias=False, name=f"{name}_upconv")(x)
        else:
            x = keras.layers.UpSampling3D(2, name=f"{name}_upsample")(x)
        x = keras.layers.Concatenate(name=f"{name}_concat")([x, skips[level]])
        x = apply_conv3d_block(x, (filters * 2 ** (level + 1),) * 2, batch_norm, name)
    outputs = keras.layers.Conv3D(num_classes, 1, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="unet3d")


@register_model(family="volumetric", paper=_C3D_PAPER, default_input_shape=(32, 32, 32, 3),
                preprocessing="intensities scaled to [0, 1]", reference_params=None, reference_macs=None,
                reference_source="no published configuration: C3D's 3x3x3 conv / 2x2x2 pool stack at classroom size",
                test_kwargs=dict(input_shape=(8, 8, 8, 2), num_classes=3, filters=(4, 8)))
def cnn3d(input_shape=(32, 32, 32, 3), num_classes=3, filters=(16, 32, 64), convs_per_block=2, batch_norm=True,
          dropout=0.3, include_top=True, pooling="avg"):
    """Small 3-D CNN classifier: per entry of `filters` a block of `convs_per_block` 3x3x3 convolutions (batch
    norm, ReLU) and a 2x2x2 max pool; global average pooling, dropout, softmax. Sides must be divisible by
    2**len(filters). include_top=False returns the pooled features (`pooling` "avg" / "max") or the last
    feature volume (pooling=None)."""
    filters = check_int_tuple("filters", filters)
    check_int("convs_per_block", convs_per_block)
    check_head(num_classes, include_top, pooling)
    check_rate("dropout", dropout)
    check_bool("batch_norm", batch_norm)
    if include_top and pooling is None:
        raise ValueError("cnn3d's classifier head pools globally: use pooling='avg' or 'max' with include_top=True.")
    shape = _check_volume_shape(input_shape, 2 ** len(filters), f"cnn3d with {len(filters)} pooling blocks")

    # === Functional Model ===
    inputs = keras.Input(shape, name="volume")
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = apply_conv3d_block(x, (f,) * convs_per_block, batch_norm, f"block{i}")
        x = keras.layers.MaxPooling3D(2, name=f"block{i}_pool")(x)
    x = pool_features(x, pooling, None, rank=3)
    return classifier_model(inputs, x, num_classes, include_top, "cnn3d", dropout)
