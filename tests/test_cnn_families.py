"""Classic CNNs (AlexNet, VGG-16/19, GoogLeNet, MobileNet, Xception, DenseNet-121/169) and the factorised
convolution blocks: parameter counts and mult-adds at the papers' resolution with 1000 classes, structure against
keras.applications, headless outputs, auxiliary heads and argument checks. Runs under any backend (graphs are
built, nothing trains; tests/test_models.py trains, round-trips and exports every registered model). The tests
marked slow build the networks at the papers' resolution (a few seconds each; most under JAX, which compiles
each weight initialiser)."""
import collections

import keras
import numpy as np
import pytest

import kerastk
from kerastk.models import googlenet as googlenet_module
from kerastk.models.blocks import apply_flattened_conv, apply_spatially_separable_conv
from kerastk.models.densenet import apply_dense_block, apply_transition
from kerastk.models.googlenet import apply_inception_module
from kerastk.models.mobilenet import apply_depthwise_separable_block

# Parameters at the paper's resolution with 1000 classes. keras.applications(weights=None) has the same
# architecture for these, so the counts must be identical (they are its count_params()).
KERAS_PARAMS = {
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "mobilenet": 4_253_864,
    "xception": 22_910_480,
    "densenet121": 8_062_504,
    "densenet169": 14_307_880,
}
# No keras.applications twin: AlexNet's count is the slides' single-tower layer sum; GoogLeNet's is Caffe's
# bvlc_googlenet deploy.prototxt summed from its layer shapes (conv1 7x7x3x64+64, ..., loss3/classifier
# 1024x1000+1000). kerastk's counts are pinned exactly and must be within 1% of the reference.
PUBLIC_PARAMS = {"alexnet": (62_378_344, 62_378_344), "googlenet": (6_998_552, 6_998_552)}
# The slides' mult-adds: within 5%.
SLIDES_MACS = {"mobilenet": 569e6, "googlenet": 1550e6, "vgg16": 15_300e6}

PAPER_SIZE = {"alexnet": 227, "xception": 299}
NAMES = ["alexnet", "vgg16", "vgg19", "googlenet", "mobilenet", "xception", "densenet121", "densenet169"]
MIN_INPUT = {"alexnet": 67, "vgg16": 32, "vgg19": 32, "googlenet": 31, "mobilenet": 32, "xception": 71,
             "densenet121": 32, "densenet169": 32}
KERAS_APPS = {
    "vgg16": keras.applications.VGG16,
    "vgg19": keras.applications.VGG19,
    "mobilenet": keras.applications.MobileNet,
    "xception": keras.applications.Xception,
    "densenet121": keras.applications.DenseNet121,
    "densenet169": keras.applications.DenseNet169,
}

_MEASURED = {}


def full(name, **kwargs):
    """The model at the paper's resolution with 1000 classes."""
    size = PAPER_SIZE.get(name, 224)
    return kerastk.create_model(name, input_shape=(size, size, 3), num_classes=1000, **kwargs)


def measure(name, **kwargs):
    """(parameters, mult-adds) at the paper's resolution with 1000 classes, measured once per session (the models
    are not kept: VGG-19 alone holds 575 MB of weights)."""
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _MEASURED:
        model = full(name, **kwargs)
        _MEASURED[key] = (model.count_params(), kerastk.count_flops(model))
        del model
        keras.backend.clear_session()
    return _MEASURED[key]


def weight_shapes(model):
    """Multiset of the weight shapes (names differ between kerastk and keras.applications). 1x1 kernels count as
    matrices: keras.applications.MobileNet's classifier is a 1x1 convolution where kerastk has a Dense layer."""
    shapes = [tuple(w.shape) for w in model.weights]
    return collections.Counter(s[2:] if len(s) == 4 and s[:2] == (1, 1) else s for s in shapes)


def test_registered_metadata():
    for name in NAMES:
        info = kerastk.model_info(name)
        size = MIN_INPUT[name]
        assert info["test_kwargs"] == dict(input_shape=(size, size, 3), num_classes=10), name
        assert info["default_input_shape"] == (PAPER_SIZE.get(name, 224),) * 2 + (3,)
        assert info["paper"] and info["reference_source"] and info["preprocessing"]
        expected = KERAS_PARAMS.get(name) or PUBLIC_PARAMS[name][0]
        assert info["reference_params"] == expected
        assert info.get("reference_macs") == SLIDES_MACS.get(name)


@pytest.mark.paper  # builds at the paper resolution
@pytest.mark.parametrize("name", sorted(KERAS_PARAMS))
def test_params_equal_keras_applications(name):
    assert measure(name)[0] == KERAS_PARAMS[name]


@pytest.mark.parametrize("name", sorted(KERAS_APPS))
def test_structure_equals_keras_applications(name):
    """Same weight shapes (and so the same count) as keras.applications at a small input with 10 classes."""
    size = MIN_INPUT[name]
    ours = kerastk.create_model(name, input_shape=(size, size, 3), num_classes=10)
    theirs = KERAS_APPS[name](weights=None, input_shape=(size, size, 3), classes=10)
    assert ours.count_params() == theirs.count_params()
    assert weight_shapes(ours) == weight_shapes(theirs)
    assert ours.output.shape == theirs.output.shape
    eps = {l.epsilon for l in ours.layers if isinstance(l, keras.layers.BatchNormalization)}
    assert eps == {l.epsilon for l in theirs.layers if isinstance(l, keras.layers.BatchNormalization)}


@pytest.mark.paper  # builds at the paper resolution
@pytest.mark.parametrize("name", sorted(PUBLIC_PARAMS))
def test_params_against_public_reference(name):
    reference, pinned = PUBLIC_PARAMS[name]
    count = measure(name)[0]
    assert count == pinned
    assert abs(count - reference) <= 0.01 * reference


@pytest.mark.paper  # builds at the paper resolution
@pytest.mark.parametrize("name", sorted(SLIDES_MACS))
def test_macs_against_slides(name):
    macs = measure(name)[1]
    assert abs(macs - SLIDES_MACS[name]) <= 0.05 * SLIDES_MACS[name], f"{name}: {macs / 1e6:.1f} M mult-adds"


@pytest.mark.paper  # builds at the paper resolution
def test_measured_figures_pinned():
    """Exact MACs kerastk counts, so that any change to a graph shows (conv + dense only)."""
    assert measure("vgg16")[1] == 15_470_264_320
    assert measure("mobilenet")[1] == 568_740_352
    assert measure("googlenet")[1] == 1_582_671_872
    assert measure("alexnet")[1] == 1_135_256_096


@pytest.mark.paper  # builds at the paper resolution
def test_mobilenet_width_multiplier():
    params, macs = measure("mobilenet", alpha=0.5)
    assert params == 1_342_536  # keras.applications.MobileNet(alpha=0.5, weights=None)
    assert params < measure("mobilenet")[0]
    assert abs(macs - 149e6) <= 0.05 * 149e6  # the paper's table 6: 149 M mult-adds
    small = kerastk.create_model("mobilenet", input_shape=(32, 32, 3), num_classes=10, alpha=0.5)
    theirs = keras.applications.MobileNet(weights=None, input_shape=(32, 32, 3), classes=10, alpha=0.5)
    assert weight_shapes(small) == weight_shapes(theirs)
    # resolution is the second knob: mult-adds scale with the pixels, parameters do not change
    low = kerastk.create_model("mobilenet", input_shape=(128, 128, 3))
    assert low.count_params() == KERAS_PARAMS["mobilenet"]
    assert kerastk.count_flops(low) < 0.35 * measure("mobilenet")[1]
    deep = kerastk.create_model("mobilenet", input_shape=(32, 32, 3), num_classes=10, depth_multiplier=2)
    assert deep.get_layer("block1_dw_conv").output.shape[-1] == 64


@pytest.mark.paper  # builds at the paper resolution
@pytest.mark.parametrize("name,size,features", [
    ("alexnet", 227, (6, 6, 256)), ("vgg16", 224, (7, 7, 512)), ("googlenet", 224, (7, 7, 1024)),
    ("mobilenet", 224, (7, 7, 1024)), ("xception", 299, (10, 10, 2048)), ("densenet121", 224, (7, 7, 1024)),
    ("densenet169", 224, (7, 7, 1664)),
])
def test_headless_shapes(name, size, features):
    model = kerastk.create_model(name, input_shape=(size, size, 3), include_top=False)
    assert model.output.shape == (None, *features)
    small = MIN_INPUT[name]
    for pooling in ("avg", "max"):
        pooled = kerastk.create_model(name, input_shape=(small, small, 3), include_top=False, pooling=pooling)
        assert pooled.output.shape == (None, features[-1])
    keras.backend.clear_session()


@pytest.mark.paper  # builds at the paper resolution
def test_googlenet_feature_map_sizes():
    assert googlenet_module.feature_sizes(224) == {"conv1": 112, "pool1": 56, "pool2": 28, "pool3": 14, "pool4": 7}
    model = full("googlenet")
    assert model.get_layer("inception_3a_output").output.shape == (None, 28, 28, 256)
    assert model.get_layer("inception_4e_output").output.shape == (None, 14, 14, 832)
    assert model.get_layer("inception_5b_output").output.shape == (None, 7, 7, 1024)
    # the 5x5 branch is a real 5x5 convolution with a bias; no batch normalisation anywhere
    assert tuple(model.get_layer("inception_3a_5x5").kernel.shape) == (5, 5, 16, 32)
    assert not [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert all(l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))


@pytest.mark.paper  # builds at the paper resolution
def test_googlenet_aux_heads():
    model = full("googlenet", aux_heads=True)
    assert [o.shape for o in model.outputs] == [(None, 1000)] * 3
    assert model.get_layer("aux1_avg_pool").output.shape == (None, 4, 4, 512)
    assert model.get_layer("aux2_avg_pool").output.shape == (None, 4, 4, 528)
    assert model.count_params() == 13_378_280  # bvlc_googlenet train_val.prototxt with loss1/loss2 heads
    small = kerastk.create_model("googlenet", input_shape=(79, 79, 3), num_classes=10, aux_heads=True)
    x = np.random.default_rng(0).random((2, 79, 79, 3)).astype("float32")
    outs = small.predict(x, verbose=0)
    assert len(outs) == 3 and all(o.shape == (2, 10) for o in outs)
    assert all(np.allclose(o.sum(axis=1), 1.0, atol=1e-5) for o in outs)
    with pytest.raises(ValueError, match=r"79x79.*input_shape=\(78, 78, 3\)"):
        kerastk.create_model("googlenet", input_shape=(78, 78, 3), aux_heads=True)
    with pytest.raises(ValueError, match="include_top"):
        kerastk.create_model("googlenet", include_top=False, aux_heads=True)
    with pytest.raises(ValueError, match="aux_heads"):
        kerastk.create_model("googlenet", aux_heads="yes")


@pytest.mark.parametrize("name", NAMES)
def test_minimum_input(name):
    """The registered minimum builds to a 1x1 (or, for Xception, 3x3) map; one pixel less is refused."""
    size = MIN_INPUT[name]
    kerastk.create_model(name, input_shape=(size, size, 3), num_classes=10, include_top=False)
    with pytest.raises(ValueError, match=rf"input_shape=\({size - 1}, {size}, 3\)") as err:
        kerastk.create_model(name, input_shape=(size - 1, size, 3))
    assert f"{size}x{size}" in str(err.value)


@pytest.mark.parametrize("name,kwargs,match", [
    ("vgg16", dict(num_classes=0), "num_classes"),
    ("densenet121", dict(pooling="sum"), "pooling"),
    ("xception", dict(include_top="yes"), "include_top"),
    ("alexnet", dict(dropout=1.0), "dropout"),
    ("googlenet", dict(dropout=-0.1), "dropout"),
    ("mobilenet", dict(alpha=0), "alpha"),
    ("mobilenet", dict(alpha=0.01), "alpha"),
    ("mobilenet", dict(depth_multiplier=0), "depth_multiplier"),
    ("densenet169", dict(growth_rate=0), "growth_rate"),
    ("densenet121", dict(reduction=1.5), "reduction"),
    ("xception", dict(middle_blocks=-1), "middle_blocks"),
    ("alexnet", dict(input_shape=(227, 227)), "input_shape"),
])
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kerastk.create_model(name, **kwargs)


def test_xception_middle_flow_depth():
    four = kerastk.create_model("xception", input_shape=(71, 71, 3), num_classes=10, middle_blocks=4)
    eight = kerastk.create_model("xception", input_shape=(71, 71, 3), num_classes=10)
    middle = 3 * (728 * 9 + 728 * 728 + 4 * 728)  # three separable convs + BN per middle block
    assert eight.count_params() - four.count_params() == 4 * middle
    assert four.get_layer("block9_sepconv2").output.shape[-1] == 1024  # the exit flow follows the 4th block


# === Blocks ===

def _params(block, shape, **kwargs):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, block(inputs, **kwargs))
    return model, model.count_params()


@pytest.mark.parametrize("channels,filters,k", [(16, 16, 3), (8, 24, 5)])
def test_spatially_separable_conv(channels, filters, k):
    model, count = _params(apply_spatially_separable_conv, (12, 12, channels), filters=filters, kernel_size=k,
                           name="sep", use_bias=False)
    assert count == k * channels * filters + k * filters * filters
    if channels == filters:
        assert count == 2 * k * channels * filters  # vs k * k * C * F for the full k x k kernel
        assert count * k == 2 * k * k * channels * filters
    assert model.output.shape == (None, 12, 12, filters)
    valid, _ = _params(apply_spatially_separable_conv, (12, 12, channels), filters=filters, kernel_size=k,
                       name="sep", padding="valid")
    assert valid.output.shape == (None, 12 - k + 1, 12 - k + 1, filters)
    strided, _ = _params(apply_spatially_separable_conv, (12, 12, channels), filters=filters, kernel_size=k,
                         name="sep", strides=2)
    assert strided.output.shape == (None, 6, 6, filters)


def test_spatially_separable_conv_equals_its_kxk_kernel():
    """k x 1 then 1 x k is one k x k convolution whose kernel is sum_m V[y, c, m] H[x, m, f]."""
    rng = np.random.default_rng(0)
    model, _ = _params(apply_spatially_separable_conv, (9, 9, 3), filters=4, kernel_size=3, name="sep",
                       padding="valid", use_bias=False)
    vertical = model.get_layer("sep_kx1_conv").get_weights()[0]  # (3, 1, 3, 4)
    horizontal = model.get_layer("sep_1xk_conv").get_weights()[0]  # (1, 3, 4, 4)
    kernel = np.einsum("ycm,xmf->yxcf", vertical[:, 0], horizontal[0])
    full_conv = keras.Sequential([keras.Input((9, 9, 3)), keras.layers.Conv2D(4, 3, use_bias=False)])
    full_conv.set_weights([kernel])
    x = rng.standard_normal((2, 9, 9, 3)).astype("float32")
    diff = np.max(np.abs(model.predict(x, verbose=0) - full_conv.predict(x, verbose=0)))
    assert diff < 1e-4


@pytest.mark.parametrize("channels,filters,k", [(16, 32, 3), (3, 8, 5)])
def test_flattened_conv(channels, filters, k):
    model, count = _params(apply_flattened_conv, (10, 10, channels), filters=filters, kernel_size=k, name="flat",
                           use_bias=False)
    assert count == channels * filters + 2 * k * filters  # vs k * k * C * F for the 3-D filters
    assert count < k * k * channels * filters
    assert model.output.shape == (None, 10, 10, filters)
    biased, count_b = _params(apply_flattened_conv, (10, 10, channels), filters=filters, kernel_size=k,
                              name="flat", padding="valid")
    assert count_b == count + filters
    assert biased.output.shape == (None, 10 - k + 1, 10 - k + 1, filters)


def test_flattened_conv_equals_rank_one_filters():
    """Lateral, vertical, horizontal 1-D filters = one 3-D filter a_f(c) b_f(y) c_f(x) per output channel."""
    rng = np.random.default_rng(1)
    model, _ = _params(apply_flattened_conv, (8, 8, 3), filters=5, kernel_size=3, name="flat", padding="valid",
                       use_bias=False)
    lateral = model.get_layer("flat_lateral_conv").get_weights()[0][0, 0]  # (3, 5)
    vertical = model.get_layer("flat_vertical_conv").get_weights()[0][:, 0, :, 0]  # (3, 5)
    horizontal = model.get_layer("flat_horizontal_conv").get_weights()[0][0, :, :, 0]  # (3, 5)
    kernel = np.einsum("cf,yf,xf->yxcf", lateral, vertical, horizontal)
    full_conv = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(5, 3, use_bias=False)])
    full_conv.set_weights([kernel])
    x = rng.standard_normal((2, 8, 8, 3)).astype("float32")
    assert np.max(np.abs(model.predict(x, verbose=0) - full_conv.predict(x, verbose=0))) < 1e-4


def test_block_argument_checks():
    x = keras.Input((8, 8, 4))
    with pytest.raises(ValueError, match="kernel_size"):
        apply_spatially_separable_conv(x, 4, 0, name="a")
    with pytest.raises(ValueError, match="padding"):
        apply_flattened_conv(x, 4, 3, name="b", padding="full")
    with pytest.raises(ValueError, match="strides"):
        apply_depthwise_separable_block(x, 8, 3, 1.0, name="c")
    with pytest.raises(ValueError, match="pool_proj"):
        apply_inception_module(x, 1, 1, 1, 1, 1, 0, name="d")


def test_family_blocks():
    x = keras.Input((16, 16, 32))
    y = apply_inception_module(x, 64, 96, 128, 16, 32, 32, name="m")
    assert y.shape == (None, 16, 16, 256)
    y = apply_depthwise_separable_block(x, 128, 2, 0.5, name="ds")
    assert y.shape == (None, 8, 8, 64)
    y = apply_dense_block(x, 3, name="db", growth_rate=12)
    assert y.shape == (None, 16, 16, 32 + 3 * 12)
    y = apply_transition(y, 0.5, name="t")
    assert y.shape == (None, 8, 8, 34)
    model = keras.Model(x, y)
    # dense layer i: BN(C_i) + 1x1 (C_i -> 48) + BN(48) + 3x3 (48 -> 12); transition: BN(68) + 1x1 (68 -> 34)
    expected = sum(4 * c + c * 48 + 4 * 48 + 9 * 48 * 12 for c in (32, 44, 56)) + 4 * 68 + 68 * 34
    assert model.count_params() == expected
