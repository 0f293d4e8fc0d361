"""Residual networks: ResNet-18/34/50/101/152 (He et al. 2016), ResNeXt-50 32x4d (Xie et al. 2017) and
SE-ResNet-50 (Hu et al. 2018), with the ResNet-RS style options on every variant (Bello et al. 2021):

- ``resnet_d=True``: the ResNet-D tweaks (He et al. 2019, "Bag of tricks"): a deep stem of three 3x3
  convolutions instead of the 7x7 one, and downsampling shortcuts that average-pool 2x2 before their 1x1
  convolution instead of striding it (no activations are thrown away).
- ``se_reduction=16``: a squeeze-and-excitation gate on the residual branch of every block.
- ``stochastic_depth_rate=0.1``: drop the residual branch of whole blocks per sample while training, with a
  rate increasing linearly with depth (block l of L drops with ``rate * l / L``, Huang et al. 2016).

One generic builder, :func:`ResNet`, reads the variants from ``CONFIGS``. Convolutions keep biases and
BatchNormalization uses epsilon 1.001e-5 as in ``keras.applications``, so ResNet-50/101/152 have exactly the
parameters of ``keras.applications.ResNet50/101/152``. The stride of a downsampling bottleneck is on its 3x3
convolution (ResNet "v1.5", as torchvision): the same parameters as the paper's, but 4.1 G mult-adds for
ResNet-50 (the figure the slides quote), and better accuracy.
"""
from __future__ import annotations

import keras

from kerastk.layers import SqueezeExcite, StochasticDepth
from kerastk.models._common import (
    POOLINGS,
    check_bool,
    check_choice,
    check_input_shape,
    check_int,
    check_rate,
    classifier_output,
    pool_features,
)
from kerastk.models.catalog import register_variant

BN_EPSILON = 1.001e-5  # keras.applications' value (the Caffe weights' epsilon)
MIN_INPUT = 32  # five stride-2 steps: a 32x32 image ends as a 1x1 feature map

#: Variants: block type, blocks per stage (conv2..conv5), groups of the 3x3 conv and channels per group.
CONFIGS = {
    "resnet18": dict(block="basic", stage_blocks=(2, 2, 2, 2), groups=1, width_per_group=64),
    "resnet34": dict(block="basic", stage_blocks=(3, 4, 6, 3), groups=1, width_per_group=64),
    "resnet50": dict(block="bottleneck", stage_blocks=(3, 4, 6, 3), groups=1, width_per_group=64),
    "resnet101": dict(block="bottleneck", stage_blocks=(3, 4, 23, 3), groups=1, width_per_group=64),
    "resnet152": dict(block="bottleneck", stage_blocks=(3, 8, 36, 3), groups=1, width_per_group=64),
    "resnext50_32x4d": dict(block="bottleneck", stage_blocks=(3, 4, 6, 3), groups=32, width_per_group=4),
    "seresnet50": dict(block="bottleneck", stage_blocks=(3, 4, 6, 3), groups=1, width_per_group=64),
}
STAGE_FILTERS = (64, 128, 256, 512)  # block "planes" per stage; bottlenecks output 4x as many channels
BLOCKS = ("basic", "bottleneck")


# === Blocks ===

def _conv_bn(x, filters, kernel_size, name, strides=1, groups=1, activation=True):
    """Conv (biased, as keras.applications) + BatchNorm (+ ReLU). A strided 3x3 conv pads explicitly by 1 on
    every side (as torchvision, and the same on every backend and exporter); unstrided ones use "same"."""
    padding = "same"
    if strides > 1 and kernel_size > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, groups=groups,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def apply_shortcut(x, filters, stride, resnet_d, name):
    """The identity, or a projection when the block changes the shape of its input.

    Args:
        x: block input.
        filters: output channels of the block.
        stride: the block's stride.
        resnet_d: ResNet-D downsampling: average-pool 2x2 (stride 2), then a 1x1 convolution with stride 1;
            otherwise a 1x1 convolution with the block's stride (which skips 3 of every 4 positions).
        name: block name; layers are ``{name}_0_pool``, ``{name}_0_conv``, ``{name}_0_bn``.

    Returns:
        The shortcut tensor.
    """
    if stride == 1 and x.shape[-1] == filters:
        return x
    if resnet_d and stride > 1:
        # "same" only for odd sizes, so that the shortcut matches the main path's ceil(size / 2)
        odd = any(d is not None and d % 2 for d in x.shape[1:3])
        x = keras.layers.AveragePooling2D(stride, strides=stride, padding="same" if odd else "valid",
                                          name=f"{name}_0_pool")(x)
        stride = 1
    return _conv_bn(x, filters, 1, f"{name}_0", strides=stride, activation=False)


def _merge(shortcut, residual, drop_rate, se_reduction, name):
    """Optional SE gate on the residual branch, then shortcut + residual (stochastic depth when drop_rate > 0)
    and the final ReLU."""
    if se_reduction:
        residual = SqueezeExcite(reduction=se_reduction, name=f"{name}_se")(residual)
    if drop_rate > 0:
        x = StochasticDepth(drop_rate, name=f"{name}_drop_path")([shortcut, residual])
    else:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def apply_basic_block(x, filters, stride=1, resnet_d=False, se_reduction=None, drop_rate=0.0, name="block"):
    """Basic residual block (ResNet-18/34): 3x3 conv - BN - ReLU - 3x3 conv - BN, + shortcut, ReLU.

    Args:
        x: input tensor (channels last).
        filters: output channels.
        stride: stride of the first 3x3 convolution (2 halves the resolution).
        resnet_d: ResNet-D downsampling shortcut (see :func:`apply_shortcut`).
        se_reduction: reduction ratio of a squeeze-and-excitation gate on the residual branch; None for none.
        drop_rate: stochastic depth: probability of dropping the residual branch of a sample while training.
        name: layer name prefix, e.g. ``conv2_block1``.

    Returns:
        Output tensor with `filters` channels.
    """
    shortcut = apply_shortcut(x, filters, stride, resnet_d, name)
    x = _conv_bn(x, filters, 3, f"{name}_1", strides=stride)
    x = _conv_bn(x, filters, 3, f"{name}_2", activation=False)
    return _merge(shortcut, x, drop_rate, se_reduction, name)


def apply_bottleneck_block(x, filters, stride=1, groups=1, width_per_group=64, expansion=4, resnet_d=False,
                           se_reduction=None, drop_rate=0.0, name="block"):
    """Bottleneck residual block (ResNet-50+, ResNeXt): 1x1 reduce - 3x3 (grouped, strided) - 1x1 expand.

    Args:
        x: input tensor (channels last).
        filters: the block's "planes"; it outputs ``expansion * filters`` channels.
        stride: stride of the 3x3 convolution (ResNet v1.5; the original paper strides the first 1x1).
        groups: groups of the 3x3 convolution (ResNeXt's cardinality; 1 for ResNet).
        width_per_group: channels per group; the inner width is ``filters * width_per_group / 64 * groups``
            (ResNet: 64 -> width = filters; ResNeXt 32x4d: 32 groups of 4 -> width = 2 * filters).
        expansion: output channels per plane.
        resnet_d, se_reduction, drop_rate, name: as in :func:`apply_basic_block`.

    Returns:
        Output tensor with ``expansion * filters`` channels.
    """
    width = int(filters * (width_per_group / 64.0)) * groups
    out_filters = expansion * filters
    shortcut = apply_shortcut(x, out_filters, stride, resnet_d, name)
    x = _conv_bn(x, width, 1, f"{name}_1")
    x = _conv_bn(x, width, 3, f"{name}_2", strides=stride, groups=groups)
    x = _conv_bn(x, out_filters, 1, f"{name}_3", activation=False)
    return _merge(shortcut, x, drop_rate, se_reduction, name)


def apply_stem(x, resnet_d=False):
    """7x7/2 conv (64) - BN - ReLU - 3x3/2 max pool; with ResNet-D, three 3x3 convs (32, 32, 64; the first
    with stride 2) replace the 7x7 one. Output: 64 channels at 1/4 of the input resolution."""
    if resnet_d:
        x = _conv_bn(x, 32, 3, "conv1_1", strides=2)
        x = _conv_bn(x, 32, 3, "conv1_2")
        x = _conv_bn(x, 64, 3, "conv1_3")
    else:
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = keras.layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
        x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
        x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


# === Generic builder ===

def _check_common(input_shape, num_classes, include_top, pooling, resnet_d, se_reduction, stochastic_depth_rate):
    shape = check_input_shape(input_shape, rank=3, min_spatial=MIN_INPUT)
    check_int("num_classes", num_classes)
    check_bool("include_top", include_top)
    check_bool("resnet_d", resnet_d)
    check_choice("pooling", pooling, POOLINGS)
    if se_reduction is not None:
        check_int("se_reduction", se_reduction)
    check_rate("stochastic_depth_rate", stochastic_depth_rate)
    return shape


def ResNet(block="bottleneck", stage_blocks=(3, 4, 6, 3), groups=1, width_per_group=64, *,
           input_shape=(224, 224, 3), num_classes=1000, include_top=True, pooling=None, resnet_d=False,
           se_reduction=None, stochastic_depth_rate=0.0, name="resnet"):
    """Any ResNet / ResNeXt / SE-ResNet: stem, four stages of residual blocks (64, 128, 256, 512 planes; every
    stage but the first starts with a stride-2 block), global average pool, softmax classifier.

    Args:
        block: "basic" (two 3x3 convs) or "bottleneck" (1x1 - 3x3 - 1x1, 4x expansion).
        stage_blocks: number of blocks in each of the four stages (conv2_x ... conv5_x).
        groups, width_per_group: ResNeXt cardinality and group width of the bottleneck 3x3 conv.
        input_shape: (height, width, channels), at least 32x32.
        num_classes: classifier outputs (with include_top).
        include_top: end with the classifier; otherwise with the last feature map, pooled by `pooling`.
        pooling: headless output: "avg", "max" (global) or None (the feature map).
        resnet_d: ResNet-D deep stem and average-pool downsampling shortcuts.
        se_reduction: squeeze-and-excitation reduction ratio in every block (16 in SE-Net); None for none.
        stochastic_depth_rate: drop rate of the last block; block l of L drops with rate * l / L.
        name: model name.

    Returns:
        A functional keras.Model.
    """
    shape = _check_common(input_shape, num_classes, include_top, pooling, resnet_d, se_reduction,
                          stochastic_depth_rate)
    check_choice("block", block, BLOCKS)
    try:
        stage_blocks = tuple(stage_blocks)
    except TypeError:
        raise ValueError(f"`stage_blocks` must be four block counts; received stage_blocks={stage_blocks!r}.") \
            from None
    if len(stage_blocks) != len(STAGE_FILTERS):
        raise ValueError(f"`stage_blocks` must be four block counts; received stage_blocks={stage_blocks!r}.")
    for i, n in enumerate(stage_blocks):
        check_int(f"stage_blocks[{i}]", n)
    check_int("groups", groups)
    check_int("width_per_group", width_per_group)
    if block == "basic" and (groups, width_per_group) != (1, 64):
        raise ValueError(f"Basic blocks support only groups=1 and width_per_group=64; received groups={groups!r}, "
                         f"width_per_group={width_per_group!r}.")

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = apply_stem(inputs, resnet_d)
    total, index = sum(stage_blocks), 0
    for stage, (filters, blocks) in enumerate(zip(STAGE_FILTERS, stage_blocks)):
        for b in range(blocks):
            index += 1
            kwargs = dict(stride=2 if stage > 0 and b == 0 else 1, resnet_d=resnet_d, se_reduction=se_reduction,
                          drop_rate=stochastic_depth_rate * index / total, name=f"conv{stage + 2}_block{b + 1}")
            if block == "basic":
                x = apply_basic_block(x, filters, **kwargs)
            else:
                x = apply_bottleneck_block(x, filters, groups=groups, width_per_group=width_per_group, **kwargs)
    if not include_top:
        return keras.Model(inputs, pool_features(x, pooling, "conv5"), name=name)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, classifier_output(x, num_classes), name=name)


def _variant(config, name, **kwargs):
    return ResNet(**CONFIGS[config], name=name, **kwargs)


# === Registered variants ===

_TEST_KWARGS = dict(input_shape=(MIN_INPUT, MIN_INPUT, 3), num_classes=10)
_PREPROCESSING = "RGB pixels / 255, then per-channel ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)"
_HE = "He et al. 2016, Deep residual learning for image recognition"
_KERAS_SOURCE = ("keras.applications.{}(weights=None).count_params() (same architecture, conv biases); "
                 "mult-adds: the course slides (ResNet v1.5, stride on the 3x3 conv)")


def _register_variant(name: str, doc: str, *, paper: str = _HE, se_reduction=None, **info):
    """Register the ResNet variant CONFIGS[name] under `name`. Every variant takes the same arguments (the
    defaults the registry lists; SE-ResNet's `se_reduction` defaults to 16): only its paper, reference figures
    and docstring differ."""

    def builder(input_shape=(224, 224, 3), num_classes=1000, include_top=True, pooling=None, resnet_d=False,
                se_reduction=se_reduction, stochastic_depth_rate=0.0):
        return _variant(name, name, input_shape=input_shape, num_classes=num_classes, include_top=include_top,
                        pooling=pooling, resnet_d=resnet_d, se_reduction=se_reduction,
                        stochastic_depth_rate=stochastic_depth_rate)

    return register_variant(builder, name, doc, family="resnet", paper=paper, default_input_shape=(224, 224, 3),
                            preprocessing=_PREPROCESSING, test_kwargs=_TEST_KWARGS, **info)


resnet18 = _register_variant(
    "resnet18", "ResNet-18: basic blocks 2-2-2-2 (64-128-256-512 channels); 11.7 M parameters, 1.8 G mult-adds at "
    "224.", reference_params=11_689_512, reference_macs=1_800_000_000,
    reference_source="torchvision resnet18 (no conv biases; kerastk's biases add 0.12%); mult-adds: He et al. "
                     "Table 1 (1.8e9 FLOPs)")
resnet34 = _register_variant(
    "resnet34", "ResNet-34: basic blocks 3-4-6-3; 21.8 M parameters, 3.6 G mult-adds at 224.",
    reference_params=21_797_672, reference_macs=3_600_000_000,
    reference_source="torchvision resnet34 (no conv biases; kerastk's biases add 0.12%); mult-adds: He et al. "
                     "Table 1 (3.6e9 FLOPs)")
resnet50 = _register_variant(
    "resnet50", "ResNet-50: bottleneck blocks 3-4-6-3 (256-512-1024-2048 channels); 25.6 M parameters, 4.1 G "
    "mult-adds.", reference_params=25_636_712, reference_macs=4_100_000_000,
    reference_source=_KERAS_SOURCE.format("ResNet50"))
resnet101 = _register_variant(
    "resnet101", "ResNet-101: bottleneck blocks 3-4-23-3; 44.7 M parameters, 7.8 G mult-adds at 224.",
    reference_params=44_707_176, reference_macs=7_800_000_000,
    reference_source="keras.applications.ResNet101(weights=None).count_params() (same architecture); "
                     "mult-adds: torchvision resnet101 v1.5 (7.8e9; He et al. quote 7.6e9 for v1)")
resnet152 = _register_variant(
    "resnet152", "ResNet-152: bottleneck blocks 3-8-36-3; 60.4 M parameters, 11.5 G mult-adds at 224.",
    reference_params=60_419_944, reference_macs=11_500_000_000,
    reference_source="keras.applications.ResNet152(weights=None).count_params() (same architecture); "
                     "mult-adds: torchvision resnet152 v1.5 (11.5e9; He et al. quote 11.3e9 for v1)")
resnext50_32x4d = _register_variant(
    "resnext50_32x4d", "ResNeXt-50 (32x4d): ResNet-50 whose 3x3 convs are grouped (32 groups of 4 planes per "
    "64); 25.0 M parameters, 4.2 G mult-adds at 224.",
    paper="Xie et al. 2017, Aggregated residual transformations for deep neural networks",
    reference_params=25_028_904, reference_macs=4_200_000_000,
    reference_source="torchvision resnext50_32x4d (no conv biases; kerastk's biases add 0.4%); mult-adds: the "
                     "course slides / Xie et al. Table 1 (4.2e9 FLOPs)")
seresnet50 = _register_variant(
    "seresnet50", "SE-ResNet-50: ResNet-50 with a squeeze-and-excitation gate (reduction 16) on every block's "
    "residual branch; 28.1 M parameters.", se_reduction=16,
    paper="Hu et al. 2018, Squeeze-and-excitation networks",
    reference_params=28_088_024, reference_macs=4_100_000_000,
    reference_source="Hu et al. Table 2, SE-ResNet-50 (reduction 16; no conv biases, kerastk's add 0.3%); "
                     "mult-adds: timm seresnet50 (4.1e9, stride on the 3x3 conv; Hu et al. quote 3.87e9 for the "
                     "v1 placement)")
