"""U-Net (Ronneberger, Fischer & Brox 2015): a contracting path, an expanding path, and skip connections
that hand each decoder level the encoder's features at the same resolution.

Each level is two 3x3 convolutions with ReLU; the encoder halves the resolution with 2x2 max pools and doubles
the filters, the decoder doubles the resolution with a 2x2 up-convolution that halves the filters, concatenates
the skip connection and convolves twice more. A 1x1 convolution gives per-pixel class scores (softmax here).

The paper's network (Fig. 1) uses unpadded ("valid") convolutions: a 572x572 tile gives a 388x388 map, and
each skip connection is center-cropped to the decoder's smaller size. It is ``unet(**PAPER_CONFIG)``:
31,030,658 parameters with 2 classes (23 convolutions, 4 of them the 2x2 up-convolutions). With "same"
padding (the default here) the output has the input's size, which is what small generated images want.
"""
from __future__ import annotations

import keras

from kerastk.models._common import check_bool, check_choice, check_input_shape, check_int, check_rate
from kerastk.models.catalog import register_model

PADDINGS = ("same", "valid")
UPSAMPLINGS = ("transpose", "bilinear")

#: The paper's configuration (Fig. 1): 572x572 grey tile, four poolings, 64 base filters, unpadded
#: convolutions, two classes, 2x2 up-convolutions, no batch norm. ``unet(**PAPER_CONFIG)`` -> 388x388x2.
PAPER_CONFIG = dict(input_shape=(572, 572, 1), depth=4, filters=64, padding="valid", num_classes=2,
                    upsampling="transpose", batch_norm=False, dropout=0.0)
PAPER_PARAMS = 31_030_658

_PAPER = "Ronneberger, Fischer & Brox 2015, U-Net: Convolutional networks for biomedical image segmentation"


def unet_output_size(size: int, depth: int, padding: str = "same"):
    """Height (or width) of the U-Net's output for an input of `size` pixels, or None when that size does not
    fit: with "same" padding it must be divisible by 2**depth; with "valid" padding every level's two 3x3
    convolutions take 4 pixels, and the size before each 2x2 pool must be even and stay positive."""
    if padding == "same":
        return size if size % 2**depth == 0 else None
    s = size
    for _ in range(depth):  # contracting path: two convs (-4), then a 2x2 pool
        s -= 4
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= 4  # bottleneck
    for _ in range(depth):  # expanding path: 2x2 up-conv (x2), two convs (-4)
        if s <= 0:
            return None
        s = 2 * s - 4
    return s if s > 0 else None


def _valid_sizes_near(size, depth, padding, count=2):
    below = [s for s in range(size - 1, 0, -1) if unet_output_size(s, depth, padding)][:count]
    above = [s for s in range(size + 1, size + 2**(depth + 2) + 64) if unet_output_size(s, depth, padding)][:count]
    return sorted(below) + above


def apply_conv_block(x, filters, padding, batch_norm, name):
    """Two 3x3 convolutions, each followed by ReLU (with batch norm between them when `batch_norm`).

    Args:
        x: input tensor.
        filters: output channels of both convolutions.
        padding: "same" or "valid" (each valid 3x3 convolution takes one pixel off every border).
        batch_norm: conv (no bias) -> BatchNormalization -> ReLU instead of conv (bias) -> ReLU.
        name: block label ("down1"); layers are f"{name}_conv1", f"{name}_bn1", f"{name}_relu1", ...

    Returns:
        Output tensor with `filters` channels.
    """
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding=padding, use_bias=not batch_norm,
                                kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def apply_up(x, filters, upsampling, name):
    """Double the resolution and set the channels to `filters`.

    "transpose": the paper's 2x2 up-convolution (Conv2DTranspose, stride 2). "bilinear": bilinear resizing
    followed by a 1x1 convolution that sets the channels (no checkerboard artefacts, fewer weights).
    """
    if upsampling == "transpose":
        return keras.layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer="he_normal",
                                            name=f"{name}_upconv")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsample")(x)
    return keras.layers.Conv2D(filters, 1, kernel_initializer="he_normal", name=f"{name}_upconv")(x)


def center_crop(skip, target_size, name):
    """Crop `skip` (batch, H, W, C) symmetrically to `target_size` (h, w): the paper's "cropping of the
    feature map from the contracting path" (unpadded convolutions lose border pixels on every level)."""
    (h, w), (th, tw) = skip.shape[1:3], target_size
    if (h, w) == (th, tw):
        return skip
    top, left = (h - th) // 2, (w - tw) // 2
    return keras.layers.Cropping2D(((top, h - th - top), (left, w - tw - left)), name=name)(skip)


@register_model(family="unet", paper=_PAPER, default_input_shape=(256, 256, 1),
                preprocessing="pixels / 255 (any number of channels)",
                reference_params=PAPER_PARAMS, reference_macs=None,
                reference_source="counted from the paper's Fig. 1 (2 classes): the same for unet(**PAPER_CONFIG) at "
                                 "572x572 'valid' and the 256x256 'same' defaults (a fully convolutional network's "
                                 "parameters do not depend on the input size). The 31,031,685 often quoted is "
                                 "a popular Keras variant that ends in a 3x3 conv to 2 channels and a 1x1 sigmoid.",
                test_kwargs=dict(input_shape=(32, 32, 3), depth=2, filters=4, num_classes=3))
def unet(input_shape=(256, 256, 1), num_classes=2, depth=4, filters=64, padding="same", batch_norm=False,
         dropout=0.0, upsampling="transpose"):
    """U-Net: `depth` poolings with `filters` * 2**level filters, skip connections, per-pixel softmax.

    Args:
        input_shape: (height, width, channels). "same" padding: height and width divisible by 2**depth.
            "valid" padding: sizes the unpadded convolutions and pools divide evenly (572 for depth 4;
            `unet_output_size` says which fit).
        num_classes: classes per pixel (>= 2); the output is (batch, H', W', num_classes) softmax probabilities.
        depth: number of 2x2 max pools (4 in the paper).
        filters: filters of the first level, doubled at each pool (64 in the paper: 64 ... 1024).
        padding: "same" (output size = input size) or "valid" (the paper: smaller output, skips center-cropped).
        batch_norm: batch normalisation after every 3x3 convolution (not in the paper; trains faster).
        dropout: dropout rate at the end of the contracting path (the bottleneck), as in the paper; 0 = none.
        upsampling: "transpose" (the paper's 2x2 up-convolution) or "bilinear" (resize + 1x1 convolution).
    """
    check_int("num_classes", num_classes, minimum=2)
    check_int("depth", depth)
    check_int("filters", filters)
    check_choice("padding", padding, PADDINGS)
    check_choice("upsampling", upsampling, UPSAMPLINGS)
    check_bool("batch_norm", batch_norm)
    check_rate("dropout", dropout)
    shape = check_input_shape(input_shape, rank=3)
    for size, label in zip(shape[:2], ("height", "width")):
        if unet_output_size(size, depth, padding) is None:
            if padding == "same":
                need = f"divisible by 2**depth = {2**depth}"
            else:
                need = ("that the unpadded 3x3 convolutions (4 pixels per level) and 2x2 pools divide evenly "
                        "(an even size before every pool)")
            raise ValueError(f"U-Net with depth={depth} and padding={padding!r} needs an input {label} {need}; "
                             f"received input_shape={input_shape!r} ({label} {size}). Sizes that fit: "
                             f"{_valid_sizes_near(size, depth, padding)}.")

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x, skips = inputs, []
    for level in range(depth):
        x = apply_conv_block(x, filters * 2**level, padding, batch_norm, name=f"down{level + 1}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"down{level + 1}_pool")(x)
    x = apply_conv_block(x, filters * 2**depth, padding, batch_norm, name="bottleneck")
    if dropout:
        x = keras.layers.Dropout(dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(depth)):
        name = f"up{level + 1}"
        x = apply_up(x, filters * 2**level, upsampling, name)
        skip = center_crop(skips[level], tuple(x.shape[1:3]), name=f"{name}_crop")
        x = keras.layers.Concatenate(name=f"{name}_concat")([skip, x])
        x = apply_conv_block(x, filters * 2**level, padding, batch_norm, name=name)
    outputs = keras.layers.Conv2D(num_classes, 1, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="unet")
