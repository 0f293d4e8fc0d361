"""ResNet family (ResNet-18..152, ResNeXt-50, SE-ResNet-50, ResNet-RS options) and ConvNeXt-T: parameter counts
and mult-adds at 224x224 with 1000 classes against keras.applications / the papers, the options' graphs,
headless outputs and argument checks. Runs under any backend (graphs only are built at 224; nothing trains)."""
import keras
import numpy as np
import pytest

import kerastk
from kerastk.layers import LayerScale, SqueezeExcite, StochasticDepth
from kerastk.models.convnext import ConvNeXt
from kerastk.models.resnet import ResNet

FULL = dict(input_shape=(224, 224, 3), num_classes=1000)
SMALL = (32, 32, 3)

# keras.applications builds the same architecture: the counts must be identical.
KERAS_REFERENCE = {
    "resnet50": (lambda: keras.applications.ResNet50(weights=None), 25_636_712),
    "resnet101": (lambda: keras.applications.ResNet101(weights=None), 44_707_176),
    "resnet152": (lambda: keras.applications.ResNet152(weights=None), 60_419_944),
    "convnext_tiny": (lambda: keras.applications.ConvNeXtTiny(weights=None, include_preprocessing=False), 28_589_128),
}
# torchvision / the SE-Net paper (no conv biases): within 1%. kerastk's exact counts (keras.applications-style
# conv biases) are pinned too, so that any change to the graph shows.
PUBLIC_REFERENCE = {
    "resnet18": (11_689_512, 11_703_912),
    "resnet34": (21_797_672, 21_823_208),
    "resnext50_32x4d": (25_028_904, 25_131_240),
    "seresnet50": (28_088_024, 28_167_704),
}
# The slides' mult-adds (ResNet-50 4.1 G, ResNeXt-50 4.2 G) and the papers' for the others: within 5%.
SLIDES_MACS = {"resnet50": 4.1e9, "resnext50_32x4d": 4.2e9}
NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "seresnet50",
         "convnext_tiny"]


def weight_layers(model):
    """{layer name: [weight shapes]} for every layer with weights."""
    return {l.name: [tuple(w.shape) for w in l.weights] for l in model.layers if l.weights}


def layers_of(model, cls):
    return [l for l in model.layers if isinstance(l, cls)]


def test_registered_names():
    assert set(NAMES) <= set(kerastk.list_models())
    for name in NAMES:
        info = kerastk.model_info(name)
        assert info["test_kwargs"] == dict(input_shape=SMALL, num_classes=10)
        assert info["default_input_shape"] == (224, 224, 3)
        assert info["reference_source"] and info["paper"]


@pytest.mark.paper
@pytest.mark.parametrize("name", sorted(KERAS_REFERENCE))
def test_params_equal_keras_applications(name):
    build_reference, expected = KERAS_REFERENCE[name]
    model = kerastk.create_model(name, **FULL)
    reference = build_reference()
    assert reference.count_params() == expected
    assert model.count_params() == expected
    assert kerastk.model_info(name)["reference_params"] == expected
    assert model.output_shape == (None, 1000)
    macs = kerastk.count_flops(model)
    ref_macs = kerastk.model_info(name)["reference_macs"]
    assert abs(macs / ref_macs - 1) <= 0.05, (name, macs, ref_macs)
    if name.startswith("resnet"):
        # Same layer names and weight shapes as keras.applications: its weights load by name.
        assert weight_layers(model) == weight_layers(reference)
        # v1.5: the stride sits on the 3x3 conv; keras's v1 strides the 1x1 (fewer mult-adds).
        assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
        assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)
        assert kerastk.count_flops(model) > kerastk.count_flops(reference)
    if name in SLIDES_MACS:
        assert abs(macs / SLIDES_MACS[name] - 1) <= 0.05, (name, macs)
    if name == "convnext_tiny":
        # Same weights, layer for layer (the depthwise kernel is (7, 7, C, 1) rather than (7, 7, 1, C)).
        ours = sorted(int(np.prod(w.shape)) for w in model.weights)
        theirs = sorted(int(np.prod(w.shape)) for w in reference.weights)
        assert ours == theirs


@pytest.mark.paper
@pytest.mark.parametrize("name", sorted(PUBLIC_REFERENCE))
def test_params_within_one_percent_of_public_reference(name):
    reference, exact = PUBLIC_REFERENCE[name]
    model = kerastk.create_model(name, **FULL)
    params = model.count_params()
    assert kerastk.model_info(name)["reference_params"] == reference
    assert abs(params / reference - 1) <= 0.01, (name, params, reference)
    assert params == exact
    macs = kerastk.count_flops(model)
    ref_macs = kerastk.model_info(name)["reference_macs"]
    assert abs(macs / ref_macs - 1) <= 0.05, (name, macs, ref_macs)
    if name in SLIDES_MACS:
        assert abs(macs / SLIDES_MACS[name] - 1) <= 0.05, (name, macs)


def test_resnext_uses_grouped_convolutions():
    model = kerastk.create_model("resnext50_32x4d", input_shape=SMALL)
    grouped = [l for l in layers_of(model, keras.layers.Conv2D) if l.groups > 1]
    assert len(grouped) == 16 and all(l.groups == 32 for l in grouped)
    # width = planes * 4/64 * 32 = 2 x planes: 128, 256, 512, 1024; each group sees 4 (8, 16, 32) channels
    assert [model.get_layer(f"conv{s}_block1_2_conv").filters for s in range(2, 6)] == [128, 256, 512, 1024]
    assert model.get_layer("conv2_block1_2_conv").kernel.shape == (3, 3, 4, 128)


def test_resnet_d_deep_stem_and_average_pool_shortcut():
    plain = kerastk.create_model("resnet50", input_shape=SMALL)
    model = kerastk.create_model("resnet50", input_shape=SMALL, resnet_d=True)
    names = {l.name for l in model.layers}
    assert {"conv1_1_conv", "conv1_2_conv", "conv1_3_conv"} <= names and "conv1_conv" not in names
    assert [model.get_layer(f"conv1_{i}_conv").filters for i in (1, 2, 3)] == [32, 32, 64]
    assert model.get_layer("conv1_1_conv").strides == (2, 2)
    pools = layers_of(model, keras.layers.AveragePooling2D)
    assert sorted(l.name for l in pools) == ["conv3_block1_0_pool", "conv4_block1_0_pool", "conv5_block1_0_pool"]
    assert not layers_of(plain, keras.layers.AveragePooling2D)
    for stage in (3, 4, 5):  # the shortcut convolution no longer strides (it would skip 3 of 4 positions)
        assert model.get_layer(f"conv{stage}_block1_0_conv").strides == (1, 1)
        assert plain.get_layer(f"conv{stage}_block1_0_conv").strides == (2, 2)
    # deep stem: 3x3x3x32 + 3x3x32x32 + 3x3x32x64 convs (+ biases, BN) instead of 7x7x3x64 (+ bias, BN)
    deep = (27 * 32 + 32 + 4 * 32) + (288 * 32 + 32 + 4 * 32) + (288 * 64 + 64 + 4 * 64)
    assert model.count_params() - plain.count_params() == deep - (147 * 64 + 64 + 4 * 64) == 19_424
    assert model.output_shape == plain.output_shape == (None, 1000)
    # odd sizes: the average-pool shortcut rounds up like the strided 3x3 path
    odd = kerastk.create_model("resnet18", input_shape=(45, 37, 3), resnet_d=True, include_top=False)
    assert odd.output_shape == (None, 2, 2, 512)


def _se_params(channels, reduction=16):
    hidden = max(1, channels // reduction)
    return channels * hidden + hidden + hidden * channels + channels


@pytest.mark.parametrize("name, outputs", [
    ("resnet50", [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3),
    ("resnet18", [64] * 2 + [128] * 2 + [256] * 2 + [512] * 2),
])
def test_squeeze_excite_in_every_block(name, outputs):
    plain = kerastk.create_model(name, input_shape=SMALL)
    model = kerastk.create_model(name, input_shape=SMALL, se_reduction=16)
    se = layers_of(model, SqueezeExcite)
    assert len(se) == len(outputs) and not layers_of(plain, SqueezeExcite)
    assert model.count_params() - plain.count_params() == sum(_se_params(c) for c in outputs)
    # the gate sits on the residual branch, before the addition
    assert model.get_layer("conv2_block1_se").output.shape[-1] == outputs[0]


def test_seresnet50_is_resnet50_with_se16():
    se = kerastk.create_model("seresnet50", input_shape=SMALL)
    plain = kerastk.create_model("resnet50", input_shape=SMALL)
    assert len(layers_of(se, SqueezeExcite)) == 16
    assert se.count_params() - plain.count_params() == 2_530_992
    assert kerastk.create_model("seresnet50", input_shape=SMALL, se_reduction=None).count_params() == \
        plain.count_params()


def _rate(layer):
    return layer.get_config()["rate"]


def test_stochastic_depth_rates_rise_linearly():
    model = kerastk.create_model("resnet34", input_shape=SMALL, stochastic_depth_rate=0.2)
    drops = layers_of(model, StochasticDepth)
    assert len(drops) == 16  # every block: block l of L drops with 0.2 * l / L
    np.testing.assert_allclose([_rate(l) for l in drops], 0.2 * np.arange(1, 17) / 16, rtol=1e-6)
    assert not [l for l in model.layers if isinstance(l, keras.layers.Add)]
    assert not layers_of(kerastk.create_model("resnet34", input_shape=SMALL), StochasticDepth)

    convnext = kerastk.create_model("convnext_tiny", input_shape=SMALL, stochastic_depth_rate=0.1)
    rates = [_rate(l) for l in layers_of(convnext, StochasticDepth)]
    # official schedule: linspace(0, rate, 18); the first block (rate 0) is a plain addition
    np.testing.assert_allclose(rates, np.linspace(0, 0.1, 18)[1:], rtol=1e-6)
    assert isinstance(convnext.get_layer("stage1_block1_add"), keras.layers.Add)
    assert not layers_of(kerastk.create_model("convnext_tiny", input_shape=SMALL), StochasticDepth)


def test_stochastic_depth_is_identity_at_inference():
    plain = kerastk.create_model("resnet18", input_shape=SMALL, num_classes=10)
    dropped = kerastk.create_model("resnet18", input_shape=SMALL, num_classes=10, stochastic_depth_rate=0.5)
    dropped.set_weights(plain.get_weights())
    x = np.random.default_rng(0).uniform(0, 1, (2, *SMALL)).astype("float32")
    out = keras.ops.convert_to_numpy(dropped(x, training=False))
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(plain(x, training=False)), atol=1e-6)
    # while training, a rate of 0.5 drops branches: the outputs differ from the plain network's
    trained = keras.ops.convert_to_numpy(dropped(x, training=True))
    assert not np.allclose(trained, keras.ops.convert_to_numpy(plain(x, training=True)), atol=1e-6)


def test_convnext_block_structure():
    model = kerastk.create_model("convnext_tiny", input_shape=SMALL)
    dw = model.get_layer("stage1_block1_depthwise_conv")
    assert isinstance(dw, keras.layers.DepthwiseConv2D) and dw.kernel_size == (7, 7)
    norms = layers_of(model, keras.layers.LayerNormalization)
    assert len(norms) == 18 + 1 + 3 + 1 and all(abs(l.epsilon - 1e-6) < 1e-12 for l in norms)
    assert model.get_layer("stage1_block1_pointwise_conv_1").units == 4 * 96
    assert model.get_layer("stage1_block1_gelu").activation is keras.activations.gelu
    scales = layers_of(model, LayerScale)
    assert len(scales) == 18
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scales[0].weights[0]), np.full(96, 1e-6), rtol=1e-6)
    no_scale = kerastk.create_model("convnext_tiny", input_shape=SMALL, layer_scale_init_value=None)
    assert not layers_of(no_scale, LayerScale)
    assert model.count_params() - no_scale.count_params() == 3 * 96 + 3 * 192 + 9 * 384 + 3 * 768


@pytest.mark.parametrize("name, channels", [("resnet18", 512), ("resnet50", 2048), ("resnext50_32x4d", 2048),
                                            ("convnext_tiny", 768)])
def test_headless_outputs(name, channels):
    for pooling, shape in (("avg", (None, channels)), ("max", (None, channels)), (None, (None, 2, 3, channels))):
        model = kerastk.create_model(name, input_shape=(64, 96, 3), include_top=False, pooling=pooling)
        assert model.output_shape == shape, (name, pooling)
        assert not [l for l in model.layers if isinstance(l, keras.layers.Dense) and l.name == "predictions"]
    top = kerastk.create_model(name, input_shape=(64, 96, 3), num_classes=7)
    assert top.output_shape == (None, 7)
    x = np.random.default_rng(1).uniform(0, 1, (2, 64, 96, 3)).astype("float32")
    y = np.asarray(top.predict(x, verbose=0))
    assert np.all(np.isfinite(y)) and np.allclose(y.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_smallest_input(name):
    model = kerastk.create_model(name, input_shape=SMALL, num_classes=10, include_top=False)
    assert model.output_shape == (None, 1, 1, 768 if name == "convnext_tiny" else
                                  512 if name in ("resnet18", "resnet34") else 2048)
    with pytest.raises(ValueError, match=r"32x32.*input_shape=\(31, 64, 3\)"):
        kerastk.create_model(name, input_shape=(31, 64, 3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(16, 16, 3)), r"at least 32x32.*input_shape=\(16, 16, 3\)"),
    (dict(input_shape=(224, 224)), r"input_shape"),
    (dict(num_classes=0), r"num_classes=0"),
    (dict(pooling="mean"), r"pooling='mean'"),
    (dict(include_top=1), r"include_top=1"),
    (dict(resnet_d="yes"), r"resnet_d='yes'"),
    (dict(se_reduction=0), r"se_reduction=0"),
    (dict(se_reduction=1.5), r"se_reduction=1.5"),
    (dict(stochastic_depth_rate=1.0), r"stochastic_depth_rate=1.0"),
    (dict(stochastic_depth_rate=-0.1), r"stochastic_depth_rate=-0.1"),
])
def test_resnet_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kerastk.create_model("resnet50", **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(24, 24, 3)), r"at least 32x32.*input_shape=\(24, 24, 3\)"),
    (dict(pooling="sum"), r"pooling='sum'"),
    (dict(stochastic_depth_rate=2), r"stochastic_depth_rate=2"),
    (dict(layer_scale_init_value=0.0), r"layer_scale_init_value=0.0"),
    (dict(num_classes=-3), r"num_classes=-3"),
])
def test_convnext_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kerastk.create_model("convnext_tiny", **kwargs)


def test_generic_builders_bad_arguments():
    with pytest.raises(ValueError, match=r"block='dense'"):
        ResNet("dense", input_shape=SMALL)
    with pytest.raises(ValueError, match=r"stage_blocks=\(2, 2, 2\)"):
        ResNet("basic", (2, 2, 2), input_shape=SMALL)
    with pytest.raises(ValueError, match=r"stage_blocks\[1\]=0"):
        ResNet("basic", (2, 0, 2, 2), input_shape=SMALL)
    with pytest.raises(ValueError, match=r"groups=32"):
        ResNet("basic", (2, 2, 2, 2), groups=32, input_shape=SMALL)
    with pytest.raises(ValueError, match=r"depths=\(3, 3, 9\)"):
        ConvNeXt((3, 3, 9), input_shape=SMALL)
    with pytest.raises(TypeError, match=r"cardinality"):
        kerastk.create_model("resnext50_32x4d", cardinality=32)
    # the generic builder makes variants the registry does not name (a ResNet-26 with ResNeXt blocks)
    model = ResNet("bottleneck", (2, 2, 2, 2), groups=8, width_per_group=16, input_shape=SMALL, num_classes=10)
    assert model.output_shape == (None, 10)
    assert model.get_layer("conv2_block1_2_conv").groups == 8
