"""SegNet (Badrinarayanan, Kendall & Cipolla 2017): an encoder-decoder that upsamples with pooling indices.

The encoder is VGG-16's 13 convolutions (conv-BN-ReLU, 2-2-3-3-3 per block) with 2x2 max pools; the decoder
mirrors it. Instead of U-Net's skip connections (whole feature maps copied across), each decoder block is given
only *where* the matching encoder pool found its maxima: max unpooling writes every decoded value back to
that position and zeros elsewhere (sparse maps), and the decoder's convolutions densify them. That costs no
weights and little memory. ``upsampling="transpose"`` replaces the unpooling with learned 2x2 up-convolutions
(the "learned upsampling" decoder variants the paper compares against).

kerastk's :class:`~kerastk.layers.MaxUnpooling2D` recovers the max positions from the encoder's pre-pool
tensor with element-wise ops (no index tensors), so the network exports to ONNX on every route. Where two
encoder values of a pooling window are equal to within float rounding, the exported file can place a value one
pixel away from Keras (rare, a few output pixels; see kerastk.layers.unpooling).

Decoder layout, as in the authors' Caffe model: each decoder block has as many convolutions as its encoder
block, the last one reducing the channels to the next block's; in the last (full-resolution) block that
convolution is the 3x3 classifier (softmax over the classes). 29,457,291 parameters with 11 classes (the paper:
29.5 M).
"""
from __future__ import annotations

import keras

from kerastk.layers.unpooling import MaxUnpooling2D
from kerastk.models._common import check_choice, check_input_shape, check_int
from kerastk.models.catalog import register_model

UPSAMPLINGS = ("indices", "transpose")
VGG16_CONVS = (2, 2, 3, 3, 3)  # convolutions per encoder block (VGG-16, configuration D)
MAX_MULTIPLIER = 8  # filters double per block up to 8x the first block's (VGG: 64 ... 512, 512)
# Batch-norm moving averages keep 90% per update (PyTorch's default; Keras's is 99%): the inference statistics
# catch up with the weights within ~20 updates. With 99% a short run is evaluated with nearly the initial
# statistics: 25 unnormalised layers whose activations reach ~1e4, where Keras and ONNX differ by ~1e-3.
BN_MOMENTUM = 0.9

_PAPER = ("Badrinarayanan, Kendall & Cipolla 2017, SegNet: A deep convolutional encoder-decoder architecture "
          "for image segmentation")


def _block_filters(filters, depth):
    return [filters * min(2**i, MAX_MULTIPLIER) for i in range(depth)]


def _block_convs(convs, depth):
    if convs is None:
        return [VGG16_CONVS[min(i, len(VGG16_CONVS) - 1)] for i in range(depth)]
    if isinstance(convs, int) and not isinstance(convs, bool):
        return [check_int("convs", convs)] * depth
    try:
        values = list(convs)
    except TypeError:
        values = None
    if values is None or len(values) != depth or any(isinstance(c, bool) or not isinstance(c, int) or c < 1
                                                     for c in values):
        raise ValueError(f"`convs` must be None (VGG-16's 2-2-3-3-3), an integer >= 1, or {depth} integers >= 1 "
                         f"(one per block, depth={depth}); received convs={convs!r}.")
    return values


def apply_conv_bn_relu(x, filters, name, kernel_size=3):
    """3x3 'same' convolution (no bias) -> BatchNormalization -> ReLU; layers f"{name}_conv", "_bn", "_relu"."""
    x = keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, kernel_initializer="he_normal",
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


@register_model(family="segnet", paper=_PAPER, default_input_shape=(224, 224, 3),
                preprocessing="pixels / 255 (the paper: local contrast normalisation of RGB)",
                reference_params=29_457_291, reference_macs=None,
                reference_source="counted: the authors' Caffe SegNet (VGG-16 encoder, mirrored decoder, 3x3 "
                                 "classifier) with 11 CamVid classes and bias-free convolutions before batch norm; "
                                 "the paper's Table 6 gives 29.5 M",
                test_kwargs=dict(input_shape=(32, 32, 3), depth=2, filters=4, num_classes=3))
def segnet(input_shape=(224, 224, 3), num_classes=11, depth=5, filters=64, convs=None, upsampling="indices"):
    """SegNet: a VGG-style conv-BN-ReLU encoder, a mirrored decoder that unpools with the pooling indices.

    Args:
        input_shape: (height, width, channels); height and width divisible by 2**depth.
        num_classes: classes per pixel (>= 2); output (batch, H, W, num_classes) softmax probabilities.
        depth: number of encoder blocks, each ending in a 2x2 max pool (5 in the paper).
        filters: filters of the first block, doubled per block up to 8x (64 -> 64, 128, 256, 512, 512).
        convs: convolutions per block: None = VGG-16's 2-2-3-3-3 (3 beyond the fifth block), an int for every
            block, or one int per block.
        upsampling: "indices" (max unpooling at the encoder's max positions, the paper) or "transpose"
            (a learned 2x2 up-convolution per block, no indices).
    """
    check_int("num_classes", num_classes, minimum=2)
    check_int("depth", depth)
    check_int("filters", filters)
    check_choice("upsampling", upsampling, UPSAMPLINGS)
    block_convs = _block_convs(convs, depth)
    shape = check_input_shape(input_shape, rank=3)
    if shape[0] % 2**depth or shape[1] % 2**depth:
        raise ValueError(f"SegNet with depth={depth} needs an input height and width divisible by 2**depth = "
                         f"{2**depth} (one 2x2 pool per block); received input_shape={input_shape!r}.")
    block_filters = _block_filters(filters, depth)

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x, pre_pool = inputs, []
    for b, (f, n) in enumerate(zip(block_filters, block_convs)):
        for i in range(n):
            x = apply_conv_bn_relu(x, f, name=f"encoder{b + 1}_{i + 1}")
        pre_pool.append(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"encoder{b + 1}_pool")(x)
    for b in reversed(range(depth)):
        f, n = block_filters[b], block_convs[b]
        if upsampling == "indices":
            x = MaxUnpooling2D(2, name=f"decoder{b + 1}_unpool")([x, pre_pool[b]])
        else:
            x = keras.layers.Conv2DTranspose(f, 2, strides=2, kernel_initializer="he_normal",
                                             name=f"decoder{b + 1}_upconv")(x)
        for i in range(n):
            last = i == n - 1
            if last and b == 0:
                break  # the full-resolution block's last convolution is the classifier
            x = apply_conv_bn_relu(x, block_filters[b - 1] if last else f, name=f"decoder{b + 1}_{n - i}")
    outputs = keras.layers.Conv2D(num_classes, 3, padding="same", activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="segnet")
