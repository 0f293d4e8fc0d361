"""kerastk.layers: numeric correctness against numpy references, training-time randomness, config and .keras
round trips, and ONNX export on the active backend's own route - under the backend this process runs."""
import keras
import numpy as np
import pytest

import kerastk
from kerastk.deploy import export_onnx
from kerastk.layers import (
    DropConnectDense,
    LayerScale,
    LocalResponseNormalization,
    Maxout,
    SqueezeExcite,
    StochasticDepth,
    instance_normalization,
)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# === numpy references ===

def maxout_ref(x, num_units, axis=-1):
    x = np.moveaxis(x, axis, -1)
    k = x.shape[-1] // num_units
    out = np.stack([x[..., j * k:(j + 1) * k].max(axis=-1) for j in range(num_units)], axis=-1)
    return np.moveaxis(out, -1, axis)


def lrn_ref(x, depth_radius, bias, alpha, beta):
    """tf.nn.local_response_normalization, written as its documentation states it (explicit channel loop)."""
    out = np.empty_like(x, dtype="float64")
    c = x.shape[-1]
    for d in range(c):
        lo, hi = max(0, d - depth_radius), min(c, d + depth_radius + 1)
        sqr_sum = np.sum(x[..., lo:hi].astype("float64") ** 2, axis=-1)
        out[..., d] = x[..., d] / (bias + alpha * sqr_sum) ** beta
    return out


def instance_norm_ref(x, epsilon):
    axes = tuple(range(1, x.ndim - 1))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# === Maxout ===

def test_maxout_matches_numpy_last_axis():
    x = _rand(3, 4, 5, 12)
    layer = Maxout(4)
    y = _np(layer(x))
    assert y.shape == (3, 4, 5, 4)
    np.testing.assert_array_equal(y, maxout_ref(x, 4))
    # groups are contiguous: unit 1 is the max of features 3, 4, 5
    np.testing.assert_array_equal(y[..., 1], x[..., 3:6].max(axis=-1))
    assert layer.compute_output_shape((None, 4, 5, 12)) == (None, 4, 5, 4)


def test_maxout_matches_numpy_inner_axis():
    x = _rand(2, 6, 5)
    y = _np(Maxout(3, axis=1)(x))
    assert y.shape == (2, 3, 5)
    np.testing.assert_array_equal(y, maxout_ref(x, 3, axis=1))


def test_maxout_indivisible_axis_names_both_sizes():
    with pytest.raises(ValueError, match=r"num_units`=5.*12 features"):
        Maxout(5)(_rand(2, 12))


# === Local response normalisation ===

@pytest.mark.parametrize("kwargs", [
    {},  # AlexNet: r=2, k=2, alpha=1e-4, beta=0.75
    dict(depth_radius=1, bias=1.0, alpha=0.5, beta=0.5),
    dict(depth_radius=0, bias=1.0, alpha=0.3, beta=1.0),
    dict(depth_radius=4, bias=0.5, alpha=0.05, beta=0.75),  # the window is wider than the 7 channels
])
def test_lrn_matches_numpy(kwargs):
    x = 10.0 * _rand(2, 3, 4, 7)  # large activations so the normalisation term matters
    layer = LocalResponseNormalization(**kwargs)
    y = _np(layer(x))
    ref = lrn_ref(x, layer.depth_radius, layer.bias, layer.alpha, layer.beta)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(y - x / layer.bias ** layer.beta)) > 1e-3 or kwargs == {}  # not a plain rescale


def test_lrn_alexnet_defaults_scale_the_plain_sum():
    layer = LocalResponseNormalization()
    assert (layer.depth_radius, layer.bias, layer.alpha, layer.beta) == (2, 2.0, 1e-4, 0.75)
    x = np.zeros((1, 5), "float32")
    x[0, 2] = 100.0  # sum of squares in every window that reaches channel 2 is 1e4: alpha * 1e4 = 1
    y = _np(layer(x))
    np.testing.assert_allclose(y[0, 2], 100.0 / 3.0 ** 0.75, rtol=1e-6)


# === LayerScale ===

def test_layer_scale_initial_value_and_product():
    x = _rand(2, 3, 3, 4)
    layer = LayerScale(1e-6)
    y = _np(layer(x))
    np.testing.assert_allclose(_np(layer.gamma), np.full(4, 1e-6, "float32"))
    np.testing.assert_allclose(y, x * 1e-6, rtol=1e-6)
    gamma = np.array([0.5, -2.0, 3.0, 0.0], "float32")
    layer.set_weights([gamma])
    np.testing.assert_allclose(_np(layer(x)), x * gamma, rtol=1e-6)
    assert [w.name for w in layer.weights] == ["gamma"] and layer.count_params() == 4


# === Squeeze-and-excitation ===

def test_squeeze_excite_matches_numpy_with_fixed_weights():
    c, units = 8, 2
    x = _rand(2, 3, 4, c)
    layer = SqueezeExcite(reduction=4)
    layer(x)  # build
    w1, b1, w2, b2 = _rand(c, units, seed=1), _rand(units, seed=2), _rand(units, c, seed=3), _rand(c, seed=4)
    layer.set_weights([w1, b1, w2, b2])
    pooled = x.mean(axis=(1, 2))
    gate = sigmoid(np.maximum(pooled @ w1 + b1, 0.0) @ w2 + b2)
    ref = x * gate[:, None, None, :]
    np.testing.assert_allclose(_np(layer(x)), ref, rtol=1e-5, atol=1e-6)


def test_squeeze_excite_on_1d_feature_maps_and_activations():
    c = 6
    x = _rand(3, 5, c)
    layer = SqueezeExcite(reduction=2, activation="tanh", gate="hard_sigmoid")
    y = _np(layer(x))
    w1, b1, w2, b2 = layer.get_weights()
    assert w1.shape == (c, 3) and w2.shape == (3, c)
    z = np.tanh(x.mean(axis=1) @ w1 + b1) @ w2 + b2
    gate = np.clip(z / 6.0 + 0.5, 0.0, 1.0)  # Keras 3's hard_sigmoid
    np.testing.assert_allclose(y, x * gate[:, None, :], rtol=1e-5, atol=1e-6)


def test_squeeze_excite_parameters_and_macs():
    inputs = keras.Input((4, 4, 256))
    model = keras.Model(inputs, SqueezeExcite(reduction=16, name="se")(inputs))
    assert model.count_params() == 256 * 16 + 16 + 16 * 256 + 256
    assert kerastk.count_flops(model) == 2 * 256 * 16
    # min_units floors the bottleneck: 8 channels // 16 = 0 -> 4 units
    small = SqueezeExcite(reduction=16, min_units=4)
    small(_rand(1, 2, 2, 8))
    assert small.get_weights()[0].shape == (8, 4)


def test_squeeze_excite_rejects_flat_inputs():
    with pytest.raises(ValueError, match="rank >= 3"):
        SqueezeExcite()(_rand(2, 16))


# === Stochastic depth ===

def test_stochastic_depth_inference_is_the_plain_sum():
    shortcut, residual = _rand(8, 3, 3, 2, seed=1), _rand(8, 3, 3, 2, seed=2)
    layer = StochasticDepth(0.5, seed=0)
    np.testing.assert_array_equal(_np(layer([shortcut, residual])), shortcut + residual)
    np.testing.assert_array_equal(_np(layer([shortcut, residual], training=False)), shortcut + residual)
    # rate 0 in training: no randomness at all
    np.testing.assert_array_equal(_np(StochasticDepth(0.0)([shortcut, residual], training=True)),
                                  shortcut + residual)


def test_stochastic_depth_drops_whole_samples():
    n = 64
    shortcut, residual = _rand(n, 3, 3, 2, seed=1), _rand(n, 3, 3, 2, seed=2)
    y = _np(StochasticDepth(0.5, seed=3)([shortcut, residual], training=True))
    branch = y - shortcut
    dropped = np.all(np.abs(branch) < 1e-6, axis=(1, 2, 3))
    kept = np.all(np.abs(branch - residual / 0.5) < 1e-5, axis=(1, 2, 3))
    assert np.all(dropped | kept), "each sample's residual must be dropped entirely or kept and scaled by 2"
    assert 0 < dropped.sum() < n


def test_stochastic_depth_preserves_the_mean():
    n = 4000
    shortcut, residual = np.zeros((n, 2, 2, 1), "float32"), np.ones((n, 2, 2, 1), "float32")
    y = _np(StochasticDepth(0.25, seed=4)([shortcut, residual], training=True))
    assert np.all(np.isclose(y, 0.0) | np.isclose(y, 1 / 0.75, rtol=1e-6))
    assert abs(y.mean() - 1.0) < 0.05
    assert abs((y[:, 0, 0, 0] == 0).mean() - 0.25) < 0.03


def test_stochastic_depth_seeded_reproducibility():
    pair = [_rand(32, 4, seed=1), _rand(32, 4, seed=2)]
    a = _np(StochasticDepth(0.5, seed=7)(pair, training=True))
    b = _np(StochasticDepth(0.5, seed=7)(pair, training=True))
    np.testing.assert_array_equal(a, b)
    layer = StochasticDepth(0.5, seed=7)
    first, second = _np(layer(pair, training=True)), _np(layer(pair, training=True))
    assert not np.array_equal(first, second), "each call must draw a fresh mask"


# === DropConnect ===

def _drop_connect(in_dim=32, units=24, rate=0.5, seed=5):
    layer = DropConnectDense(units, rate=rate, seed=seed)
    layer.build((None, in_dim))
    layer.set_weights([_rand(in_dim, units, seed=11), _rand(units, seed=12)])
    return layer


def test_drop_connect_inference_is_the_dense_product():
    layer = _drop_connect()
    x = _rand(5, 32)
    w, b = layer.get_weights()
    assert [v.name for v in layer.weights] == ["kernel", "bias"]
    np.testing.assert_allclose(_np(layer(x)), x @ w + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(layer(x, training=False)), x @ w + b, rtol=1e-5, atol=1e-5)
    assert not np.allclose(_np(layer(x, training=True)), x @ w + b, atol=1e-3)


def test_drop_connect_masks_the_kernel_not_the_outputs():
    in_dim, units, rate = 32, 24, 0.5
    layer = _drop_connect(in_dim, units, rate)
    w, b = layer.get_weights()
    eye = np.eye(in_dim, dtype="float32")
    y = _np(layer(np.concatenate([eye, eye]), training=True)) - b  # rows of the kernel used in this call
    np.testing.assert_array_equal(y[:in_dim], y[in_dim:])  # one mask per call: identical rows agree
    kernel = y[:in_dim]
    zero = np.abs(kernel) < 1e-5
    scaled = np.abs(kernel - w / (1 - rate)) < 1e-4
    assert np.all(zero | scaled), "each kernel entry is dropped or scaled by 1 / (1 - rate)"
    assert abs(zero.mean() - rate) < 0.08


def test_drop_connect_preserves_the_expected_output():
    layer = _drop_connect(rate=0.3)
    w, b = layer.get_weights()
    x = _rand(4, 32, seed=3)
    mean = np.mean([_np(layer(x, training=True)) for _ in range(300)], axis=0)
    full = x @ w + b
    assert np.mean(np.abs(mean - full)) / np.mean(np.abs(full)) < 0.1


def test_drop_connect_seeded_reproducibility():
    x = _rand(4, 32, seed=3)
    a = _np(_drop_connect(seed=9)(x, training=True))
    b = _np(_drop_connect(seed=9)(x, training=True))
    np.testing.assert_array_equal(a, b)


def test_drop_connect_macs_and_sequences():
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, DropConnectDense(3, name="dc")(inputs))
    assert model.output_shape == (None, 5, 3)
    assert model.count_params() == 8 * 3 + 3
    assert kerastk.count_flops(model) == 5 * 8 * 3
    no_bias = DropConnectDense(3, use_bias=False)
    no_bias.build((None, 8))
    assert [v.name for v in no_bias.weights] == ["kernel"]


# === Instance normalisation ===

def test_instance_normalization_matches_numpy():
    x = 3.0 * _rand(2, 5, 4, 3) + 1.0
    layer = instance_normalization(name="inorm", epsilon=1e-3)
    assert isinstance(layer, keras.layers.GroupNormalization) and layer.groups == -1 and layer.name == "inorm"
    np.testing.assert_allclose(_np(layer(x)), instance_norm_ref(x, 1e-3), rtol=1e-4, atol=1e-4)
    gamma, beta = _rand(3, seed=1), _rand(3, seed=2)
    layer.set_weights([gamma, beta])
    np.testing.assert_allclose(_np(layer(x)), instance_norm_ref(x, 1e-3) * gamma + beta, rtol=1e-4, atol=1e-4)


# === Bad arguments ===

@pytest.mark.parametrize("make, argument", [
    (lambda: Maxout(0), "num_units"),
    (lambda: Maxout(2.5), "num_units"),
    (lambda: Maxout(2, axis="last"), "axis"),
    (lambda: LocalResponseNormalization(depth_radius=-1), "depth_radius"),
    (lambda: LocalResponseNormalization(bias=0.0), "bias"),
    (lambda: LocalResponseNormalization(alpha=-1.0), "alpha"),
    (lambda: LocalResponseNormalization(beta="x"), "beta"),
    (lambda: SqueezeExcite(reduction=0), "reduction"),
    (lambda: SqueezeExcite(min_units=0), "min_units"),
    (lambda: SqueezeExcite(activation="not_an_activation"), "activation"),
    (lambda: SqueezeExcite(gate="nope"), "gate"),
    (lambda: StochasticDepth(1.0), "rate"),
    (lambda: StochasticDepth(-0.1), "rate"),
    (lambda: StochasticDepth(0.1, seed="a"), "seed"),
    (lambda: DropConnectDense(0), "units"),
    (lambda: DropConnectDense(4, rate=1.0), "rate"),
    (lambda: DropConnectDense(4, activation="nope"), "activation"),
    (lambda: DropConnectDense(4, use_bias="yes"), "use_bias"),
    (lambda: LayerScale("big"), "init_value"),
    (lambda: instance_normalization(groups=2), "groups"),
])
def test_bad_arguments_raise_value_error_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=rf"`{argument}`"):
        make()


def test_stochastic_depth_needs_two_inputs():
    with pytest.raises(ValueError, match=r"\[shortcut, residual\]"):
        StochasticDepth(0.1)(_rand(2, 3))


# === Small functional models containing each layer ===

def _maxout_model():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(12, 3, name="conv")(inputs)
    x = Maxout(4, name="maxout")(x)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, Maxout(2, name="maxout_dense")(keras.layers.Dense(6, name="fc")(x)), name="maxout_net")


def _lrn_model():
    inputs = keras.Input((5, 5, 3))
    x = keras.layers.Conv2D(8, 1, name="conv")(inputs)
    return keras.Model(inputs, LocalResponseNormalization(depth_radius=2, alpha=0.1, name="norm")(x), name="lrn_net")


def _se_model():
    inputs = keras.Input((6, 6, 16))
    x = SqueezeExcite(reduction=4, name="se")(inputs)
    seq = keras.layers.Reshape((36, 16), name="seq")(x)
    return keras.Model(inputs, SqueezeExcite(reduction=8, gate="hard_sigmoid", name="se_1d")(seq), name="se_net")


def _stochastic_depth_model():
    inputs = keras.Input((6, 6, 4))
    residual = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    return keras.Model(inputs, StochasticDepth(0.3, seed=1, name="drop_path")([inputs, residual]), name="sd_net")


def _drop_connect_model():
    inputs = keras.Input((10,))
    x = DropConnectDense(6, rate=0.4, activation="relu", seed=2, name="dc1")(inputs)
    return keras.Model(inputs, DropConnectDense(3, use_bias=False, name="dc2")(x), name="dc_net")


def _layer_scale_model():
    inputs = keras.Input((6, 6, 4))
    layer = LayerScale(0.1, name="ls")
    outputs = layer(inputs)
    layer.set_weights([np.array([0.5, -1.0, 2.0, 0.25], "float32")])
    return keras.Model(inputs, outputs, name="ls_net")


def _instance_norm_model():
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(4, 1, name="conv")(inputs)
    return keras.Model(inputs, instance_normalization(name="in")(x), name="in_net")


MODELS = {
    "maxout": _maxout_model,
    "lrn": _lrn_model,
    "squeeze_excite": _se_model,
    "stochastic_depth": _stochastic_depth_model,
    "drop_connect": _drop_connect_model,
    "layer_scale": _layer_scale_model,
    "instance_norm": _instance_norm_model,
}

# (layer, the constructor arguments its config must hold)
LAYERS = [
    (Maxout(3, axis=1, name="m"), dict(num_units=3, axis=1)),
    (LocalResponseNormalization(depth_radius=3, bias=1.5, alpha=0.2, beta=0.5, name="lrn"),
     dict(depth_radius=3, bias=1.5, alpha=0.2, beta=0.5)),
    (SqueezeExcite(reduction=8, min_units=2, activation="gelu", gate="hard_sigmoid", name="se"),
     dict(reduction=8, min_units=2, activation="gelu", gate="hard_sigmoid")),
    (StochasticDepth(0.2, seed=3, name="sd"), dict(rate=0.2, seed=3)),
    (DropConnectDense(7, rate=0.3, activation="tanh", use_bias=False, kernel_initializer="he_normal",
                      bias_initializer="ones", seed=4, name="dc"),
     dict(units=7, rate=0.3, activation="tanh", use_bias=False, seed=4)),
    (LayerScale(0.5, name="ls"), dict(init_value=0.5)),
]


@pytest.mark.parametrize("layer, arguments", LAYERS, ids=[type(layer).__name__ for layer, _ in LAYERS])
def test_config_round_trip(layer, arguments):
    config = layer.get_config()
    for key, value in arguments.items():
        assert config[key] == value, key
    for key in ("name", "dtype", "trainable"):
        assert key in config  # super().get_config() is chained
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    for key, value in arguments.items():
        assert getattr(clone, key) == value or clone.get_config()[key] == value, key
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    if isinstance(layer, DropConnectDense):
        assert config["kernel_initializer"]["class_name"] == "HeNormal"
        assert config["bias_initializer"]["class_name"] == "Ones"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_keras_file_round_trip(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    x = _rand(3, *model.input_shape[1:], seed=5)
    model.save(tmp_path / f"{name}.keras")
    loaded = keras.saving.load_model(tmp_path / f"{name}.keras", compile=False)
    assert loaded.count_params() == model.count_params()
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_np(model(x)), _np(loaded(x)))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trains_one_step(name):
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    x = _rand(4, *model.input_shape[1:], seed=6)
    y = _rand(4, *model.output_shape[1:], seed=7)
    model.compile(optimizer="adam", loss="mse")
    before = [w.copy() for w in model.get_weights()]
    loss = float(np.ravel(model.train_on_batch(x, y))[0])
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_export_on_the_active_backend_route(name, tmp_path, backend):
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    result = export_onnx(model, tmp_path / "m.onnx", optimize=False)  # the active backend's own exporter
    assert result.validation.passed, str(result.validation)
    assert result.validation.batch_sizes == (1, 8) and result.validation.max_abs_diff <= 1e-4
    # the layers export natively: no fallback to another backend's exporter was needed
    assert result.route == backend, result.attempts
    assert (tmp_path / "m.onnx").is_file()
