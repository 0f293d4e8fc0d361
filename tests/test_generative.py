"""VAE and embedding_net: parameter counts, the Sampling layer (stochastic while training, z_mean at
inference, the KL term it adds), the compiled loss = negative ELBO, the encoder/decoder sub-models and the
decoder's own ONNX export, unit-norm embeddings - under the backend this process runs."""
import keras
import numpy as np
import pytest

import kerastk
from kerastk.deploy import OnnxModel, export_onnx
from kerastk.layers import Sampling
from kerastk.losses import ReconstructionLoss, kl_divergence, reconstruction_loss


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _images(n, shape=(28, 28, 1), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(n, *shape)).astype("float32")


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def dense(i, o):
    return i * o + o


# === VAE structure ===

def test_vae_default_counts_match_the_keras_example():
    model = kerastk.create_model("vae")
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    assert encoder.count_params() == 69_076 and decoder.count_params() == 65_089
    assert model.count_params() == 134_165 == kerastk.model_info("vae")["reference_params"]
    assert [layer.name for layer in model.layers] == ["image", "encoder", "sampling", "decoder"]
    assert encoder.output_shape == [(None, 2), (None, 2)]
    assert decoder.input_shape == (None, 2) and decoder.output_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 28, 28, 1)
    assert decoder.get_layer("decoder_output").get_config()["activation"] == "sigmoid"


def test_vae_counts_follow_the_arguments():
    model = kerastk.create_model("vae", input_shape=(16, 24, 3), latent_dim=5, filters=(8, 16, 4), hidden_units=7)
    enc = conv(3, 3, 8) + conv(3, 8, 16) + conv(3, 16, 4) + dense(2 * 3 * 4, 7) + 2 * dense(7, 5)
    dec = dense(5, 2 * 3 * 4) + conv(3, 4, 4) + conv(3, 4, 16) + conv(3, 16, 8) + conv(3, 8, 3)
    assert model.get_layer("encoder").count_params() == enc
    assert model.get_layer("decoder").count_params() == dec
    assert model.output_shape == (None, 16, 24, 3)


def test_vae_nearest_upsampling_keeps_the_parameter_count():
    model = kerastk.create_model("vae", upsampling="nearest")
    decoder = model.get_layer("decoder")
    assert model.count_params() == 134_165 and decoder.output_shape == (None, 28, 28, 1)
    kinds = [type(layer).__name__ for layer in decoder.layers]
    # the x2 steps are UpSampling2D + Conv2D; the output layer stays the example's stride-1 Conv2DTranspose
    assert kinds.count("UpSampling2D") == 2 and kinds.count("Conv2D") == 2 and kinds.count("Conv2DTranspose") == 1
    assert decoder.get_layer("decoder_output").get_config()["strides"] == (1, 1)


def test_vae_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"divisible by 4.*\(30, 30, 1\)"):
        kerastk.create_model("vae", input_shape=(30, 30, 1))
    with pytest.raises(ValueError, match=r"latent_dim"):
        kerastk.create_model("vae", latent_dim=0)
    with pytest.raises(ValueError, match=r"beta"):
        kerastk.create_model("vae", beta=-1.0)
    with pytest.raises(ValueError, match=r"filters"):
        kerastk.create_model("vae", filters=())
    with pytest.raises(ValueError, match=r"upsampling.*'bicubic'"):
        kerastk.create_model("vae", upsampling="bicubic")


# === Sampling ===

def test_vae_inference_is_deterministic_and_uses_z_mean():
    model = kerastk.create_model("vae", seed=1)
    x = _images(6)
    a, b = _np(model(x, training=False)), _np(model(x, training=False))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(_np(model.predict(x, verbose=0)), _np(model.predict(x, verbose=0)))
    z_mean, _ = model.get_layer("encoder")(x)
    np.testing.assert_allclose(a, _np(model.get_layer("decoder")(z_mean)), atol=1e-6)


def test_vae_samples_while_training():
    model = kerastk.create_model("vae", seed=1)
    x = _images(6)
    t1, t2 = _np(model(x, training=True)), _np(model(x, training=True))
    assert np.max(np.abs(t1 - t2)) > 1e-4
    assert np.max(np.abs(t1 - _np(model(x, training=False)))) > 1e-4


def test_sampling_statistics_match_the_posterior():
    layer = Sampling(seed=3)
    z_mean = np.full((20000, 2), [1.0, -2.0], dtype="float32")
    z_log_var = np.full((20000, 2), np.log([4.0, 0.25]), dtype="float32")
    z = _np(layer([z_mean, z_log_var], training=True))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(z.std(0), [2.0, 0.5], rtol=0.03)
    np.testing.assert_array_equal(_np(layer([z_mean, z_log_var], training=False)), z_mean)
    # a seeded layer repeats its first draw; the same layer called again draws new noise
    first = _np(Sampling(seed=7)([z_mean[:4], z_log_var[:4]], training=True))
    again = Sampling(seed=7)
    np.testing.assert_array_equal(_np(again([z_mean[:4], z_log_var[:4]], training=True)), first)
    assert not np.array_equal(_np(again([z_mean[:4], z_log_var[:4]], training=True)), first)


def test_sampling_adds_beta_times_the_mean_kl():
    rng = np.random.default_rng(0)
    z_mean = rng.standard_normal((5, 3)).astype("float32")
    z_log_var = rng.uniform(-1, 1, (5, 3)).astype("float32")
    kl = _np(kl_divergence(z_mean, z_log_var)).mean()
    for beta in (1.0, 4.0):
        layer = Sampling(beta=beta)
        layer([z_mean, z_log_var], training=False)
        assert len(layer.losses) == 1
        assert float(_np(layer.losses[0])) == pytest.approx(beta * kl, rel=1e-5)
    silent = Sampling(beta=0.0)
    silent([z_mean, z_log_var], training=True)
    assert silent.losses == []


def test_sampling_config_and_errors():
    layer = Sampling(beta=2.5, seed=4, name="s")
    assert Sampling.from_config(layer.get_config()).get_config() == layer.get_config()
    assert layer.compute_output_shape([(None, 3), (None, 3)]) == (None, 3)
    with pytest.raises(ValueError, match=r"beta"):
        Sampling(beta=-0.1)
    with pytest.raises(ValueError, match=r"seed"):
        Sampling(seed=1.5)
    with pytest.raises(ValueError, match=r"\[z_mean, z_log_var\]"):
        Sampling()(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"same shape"):
        Sampling()([np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32")])


# === ELBO training ===

def test_compiled_loss_is_reconstruction_plus_kl():
    keras.utils.set_random_seed(0)
    model = kerastk.create_model("vae", input_shape=(8, 8, 1), latent_dim=2, filters=(4, 8), hidden_units=8)
    model.compile(optimizer="adam", loss=ReconstructionLoss())
    x = _images(16, (8, 8, 1))
    evaluated = model.evaluate(x, x, batch_size=16, verbose=0)
    z_mean, z_log_var = model.get_layer("encoder").predict(x, verbose=0)
    expected = _np(reconstruction_loss(x, model.predict(x, verbose=0))).mean() + \
        _np(kl_divergence(z_mean, z_log_var)).mean()
    assert evaluated == pytest.approx(float(expected), rel=1e-5)
    history = model.fit(x, x, batch_size=8, epochs=5, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_vae_round_trips_with_its_sub_models(tmp_path):
    model = kerastk.create_model("vae", input_shape=(8, 8, 1), latent_dim=3, filters=(4, 8), hidden_units=8,
                                 beta=2.0, seed=5)
    model.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras", compile=False)
    x = _images(4, (8, 8, 1))
    np.testing.assert_allclose(_np(loaded.predict(x, verbose=0)), _np(model.predict(x, verbose=0)), atol=1e-6)
    assert loaded.get_layer("sampling").get_config()["beta"] == 2.0
    z = np.random.default_rng(1).standard_normal((4, 3)).astype("float32")
    np.testing.assert_allclose(_np(loaded.get_layer("decoder").predict(z, verbose=0)),
                               _np(model.get_layer("decoder").predict(z, verbose=0)), atol=1e-6)


@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
def test_decoder_exports_alone(tmp_path, backend, upsampling):
    model = kerastk.create_model("vae", input_shape=(8, 8, 1), latent_dim=2, filters=(4, 8), hidden_units=8,
                                 upsampling=upsampling)
    decoder = model.get_layer("decoder")
    z = np.random.default_rng(2).standard_normal((8, 2)).astype("float32")
    result = export_onnx(decoder, tmp_path / "decoder.onnx", inputs=z, optimize=False)  # the active route
    assert result.validation.passed and result.route == backend, result.attempts
    samples = OnnxModel(tmp_path / "decoder.onnx").predict(z)
    assert samples.shape == (8, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_allclose(samples, _np(decoder.predict(z, verbose=0)), atol=1e-5)
    encoder_result = export_onnx(model.get_layer("encoder"), tmp_path / "encoder.onnx")
    assert encoder_result.validation.passed


# === embedding_net ===

def test_embedding_net_counts_and_unit_norms():
    model = kerastk.create_model("embedding_net")
    expected = (conv(3, 1, 32) + conv(3, 32, 32) + conv(3, 32, 64) + conv(3, 64, 64) + dense(7 * 7 * 64, 128)
                + dense(128, 32))
    assert model.count_params() == expected == 470_656
    assert model.output_shape == (None, 32)
    for x in (_images(5), 10.0 * np.random.default_rng(1).standard_normal((5, 28, 28, 1)).astype("float32")):
        norms = np.linalg.norm(_np(model.predict(x, verbose=0)), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    small = kerastk.create_model("embedding_net", input_shape=(8, 8, 1), embedding_dim=8, filters=(4, 8),
                                 hidden_units=0)
    assert small.count_params() == conv(3, 1, 4) + conv(3, 4, 4) + conv(3, 4, 8) + conv(3, 8, 8) + dense(2 * 2 * 8, 8)
    assert "hidden_dense" not in [layer.name for layer in small.layers]


def test_embedding_net_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"at least 4x4"):
        kerastk.create_model("embedding_net", input_shape=(3, 3, 1))
    with pytest.raises(ValueError, match=r"embedding_dim"):
        kerastk.create_model("embedding_net", embedding_dim=0)
    with pytest.raises(ValueError, match=r"dropout"):
        kerastk.create_model("embedding_net", dropout=1.0)
