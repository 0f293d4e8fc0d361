"""GoogLeNet (Inception v1) as in Szegedy et al. 2014 and the Caffe model zoo's bvlc_googlenet.

Convolutions have biases and ReLU, no batch normalisation; the 5x5 branch is a real 5x5 convolution; LRN
follows the stem's first pool and its 3x3 convolution. Caffe pools with ceil rounding: the stride-2 max pools
here pad the bottom/right edge (with zeros: their inputs are ReLU outputs, so zeros never win a max) exactly as
far as Caffe's ceil mode reads past the edge, so every feature map has bvlc_googlenet's size.
"""
from __future__ import annotations

import keras

from kerastk.layers import LocalResponseNormalization
from kerastk.models._common import (
    check_bool,
    check_head,
    check_input_shape,
    check_int,
    check_rate,
    classifier_output,
    pool_features,
)
from kerastk.models.catalog import register_model

# (name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection): table 1 of the paper.
INCEPTION_MODULES = {
    "3": [("inception_3a", 64, 96, 128, 16, 32, 32), ("inception_3b", 128, 128, 192, 32, 96, 64)],
    "4": [("inception_4a", 192, 96, 208, 16, 48, 64), ("inception_4b", 160, 112, 224, 24, 64, 64),
          ("inception_4c", 128, 128, 256, 24, 64, 64), ("inception_4d", 112, 144, 288, 32, 64, 64),
          ("inception_4e", 256, 160, 320, 32, 128, 128)],
    "5": [("inception_5a", 256, 160, 320, 32, 128, 128), ("inception_5b", 384, 192, 384, 48, 128, 128)],
}
AUX_POOL = 5  # the auxiliary heads' 5x5/3 average pool needs a 5x5 map at inception 4a / 4d


def _caffe_pool_size(size):
    """Output size of Caffe's 3x3 stride-2 max pool (ceil rounding, no padding)."""
    return -(-(size - 3) // 2) + 1


def feature_sizes(size):
    """Feature map sizes after each downsampling stage for an input of `size` pixels (one axis)."""
    sizes = {"conv1": (size + 6 - 7) // 2 + 1}
    sizes["pool1"] = _caffe_pool_size(sizes["conv1"])
    sizes["pool2"] = _caffe_pool_size(sizes["pool1"])
    sizes["pool3"] = _caffe_pool_size(sizes["pool2"])  # inception 4a-4e, where the auxiliary heads branch off
    sizes["pool4"] = _caffe_pool_size(sizes["pool3"])
    return sizes


def minimum_input_size(aux_heads=False):
    """The smallest input side the network accepts (computed from :func:`feature_sizes`)."""
    size = 1
    while min(feature_sizes(size).values()) < 1 or (aux_heads and feature_sizes(size)["pool3"] < AUX_POOL):
        size += 1
    return size


MIN_INPUT = minimum_input_size()  # 31: pool4 leaves a 1x1 map
MIN_INPUT_AUX = minimum_input_size(aux_heads=True)  # 79: a 5x5 map at inception 4a


def _caffe_max_pool(x, name):
    """3x3 stride-2 max pool with Caffe's ceil rounding (zero padding at the bottom/right edge only)."""
    extra = []
    for size in x.shape[1:3]:
        out = _caffe_pool_size(size)
        extra.append(max(0, (out - 1) * 2 + 3 - size))
    if any(extra):
        x = keras.layers.ZeroPadding2D(((0, extra[0]), (0, extra[1])), name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name=name)(x)


def _lrn(name):
    # Caffe's LRN (local_size 5, alpha 1e-4, beta 0.75, k 1) divides alpha by local_size: alpha 2e-5 on the sum.
    return LocalResponseNormalization(depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75, name=name)


def apply_inception_module(x, f1, f3r, f3, f5r, f5, pool_proj, name):
    """Inception module with 1x1 bottlenecks: four parallel branches concatenated along the channels.

    Branches: 1x1 conv (`f1`); 1x1 conv (`f3r`) then 3x3 conv (`f3`); 1x1 conv (`f5r`) then 5x5 conv (`f5`);
    3x3 stride-1 max pool then 1x1 conv (`pool_proj`). Every conv has a bias and ReLU; spatial size is kept.

    Args:
        x: input tensor.
        f1, f3r, f3, f5r, f5, pool_proj: filters of each convolution (the columns of the paper's table 1).
        name: module label ("inception_3a"); layers are f"{name}_1x1", f"{name}_3x3_reduce", ... f"{name}_output".

    Returns:
        Output tensor with f1 + f3 + f5 + pool_proj channels.
    """
    for arg, value in (("f1", f1), ("f3r", f3r), ("f3", f3), ("f5r", f5r), ("f5", f5), ("pool_proj", pool_proj)):
        check_int(arg, value)

    def conv(t, filters, size, label):
        return keras.layers.Conv2D(filters, size, padding="same", activation="relu", name=f"{name}_{label}")(t)

    b1 = conv(x, f1, 1, "1x1")
    b3 = conv(conv(x, f3r, 1, "3x3_reduce"), f3, 3, "3x3")
    b5 = conv(conv(x, f5r, 1, "5x5_reduce"), f5, 5, "5x5")
    bp = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = conv(bp, pool_proj, 1, "pool_proj")
    return keras.layers.Concatenate(axis=-1, name=f"{name}_output")([b1, b3, b5, bp])


def apply_aux_head(x, num_classes, name):
    """Auxiliary classifier: 5x5/3 average pool, 1x1 conv 128 + ReLU, dense 1024 + ReLU, dropout 0.7,
    softmax (the paper adds its loss with weight 0.3 during training; it is discarded at inference)."""
    x = keras.layers.AveragePooling2D(AUX_POOL, strides=3, name=f"{name}_avg_pool")(x)
    x = keras.layers.Conv2D(128, 1, activation="relu", name=f"{name}_conv")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = keras.layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return classifier_output(x, num_classes, name=f"{name}_predictions")


@register_model(family="googlenet", paper="Szegedy et al. 2014, Going deeper with convolutions",
                default_input_shape=(224, 224, 3), preprocessing="RGB pixels in [0, 255] minus the ImageNet mean",
                reference_params=6_998_552, reference_macs=1_550_000_000,
                reference_source="parameters: Caffe bvlc_googlenet deploy.prototxt (without the auxiliary heads), "
                                 "summed from its layer shapes; mult-adds: the course slides (1550 M)",
                test_kwargs=dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10))
def googlenet(input_shape=(224, 224, 3), num_classes=1000, include_top=True, pooling=None, aux_heads=False,
              dropout=0.4):
    """GoogLeNet / Inception v1: 7x7/2 conv, max pool, LRN, 1x1 + 3x3 convs, LRN, max pool, inception
    3a-3b, max pool, 4a-4e, max pool, 5a-5b, global average pool, dropout 0.4, softmax. ~7.0 M parameters.

    With `aux_heads=True` the model has three outputs: [predictions, aux1_predictions (from 4a),
    aux2_predictions (from 4d)]; the input must then be at least 79x79 (inception 4a's map must hold
    the heads' 5x5 pool)."""
    check_bool("aux_heads", aux_heads)
    shape = check_input_shape(input_shape, rank=3, min_spatial=MIN_INPUT_AUX if aux_heads else MIN_INPUT)
    check_head(num_classes, include_top, pooling)
    check_rate("dropout", dropout)
    if aux_heads and not include_top:
        raise ValueError("`aux_heads=True` adds classifiers, so it needs include_top=True; "
                         f"received include_top={include_top!r}.")

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(64, 7, strides=2, activation="relu", name="conv1_7x7_s2")(x)
    x = _caffe_max_pool(x, "pool1_3x3_s2")
    x = _lrn("pool1_norm1")(x)
    x = keras.layers.Conv2D(64, 1, activation="relu", name="conv2_3x3_reduce")(x)
    x = keras.layers.Conv2D(192, 3, padding="same", activation="relu", name="conv2_3x3")(x)
    x = _lrn("conv2_norm2")(x)
    x = _caffe_max_pool(x, "pool2_3x3_s2")
    aux = []
    for stage in ("3", "4", "5"):
        if stage != "3":
            x = _caffe_max_pool(x, f"pool{int(stage) - 1}_3x3_s2")
        for module in INCEPTION_MODULES[stage]:
            x = apply_inception_module(x, *module[1:], name=module[0])
            if aux_heads and module[0] in ("inception_4a", "inception_4d"):
                aux.append(apply_aux_head(x, num_classes, name=f"aux{len(aux) + 1}"))
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "inception_5b"), name="googlenet")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = classifier_output(x, num_classes)
    return keras.Model(inputs, [outputs, *aux] if aux else outputs, name="googlenet")
