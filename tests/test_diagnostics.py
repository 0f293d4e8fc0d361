"""kerastk.diagnostics under the backend this process runs: input checks, norms, gradients against the analytic
value, dead ReLUs on hand-set biases, the Diagnostics callback's files, and the one-batch overfit test."""
import csv
import importlib.util
import json
import warnings

import numpy as np
import pytest

from kerastk import diagnostics


def _mlp(inputs=8, hidden=16, classes=3, batchnorm=False, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    x_in = keras.Input((inputs,), name="features")
    x = keras.layers.Dense(hidden, activation="relu", name="dense1")(x_in)
    if batchnorm:
        x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(hidden, name="dense2")(x)
    x = keras.layers.Activation("relu", name="act2")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="out")(x)
    return keras.Model(x_in, out)


def _toy(n=64, inputs=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, inputs)).astype("float32")
    return x, (np.arange(n) % classes).astype("int32")


# --- check_inputs


def test_check_inputs_warns_on_raw_pixels():
    x = np.random.default_rng(0).integers(0, 256, size=(100, 28, 28)).astype("float32")
    with pytest.warns(UserWarning, match="divide by 255|Divide by 255"):
        messages = diagnostics.check_inputs(x, "x_train")
    assert len(messages) == 1 and messages[0].startswith("kerastk: x_train") and "255" in messages[0]


@pytest.mark.parametrize("x", [np.random.default_rng(1).normal(size=(500, 10)),  # standardised
                               np.random.default_rng(2).uniform(size=(200, 8, 8, 1)),  # pixels scaled to [0, 1]
                               np.random.default_rng(3).integers(0, 5000, size=(50, 20))])  # token ids
def test_check_inputs_quiet_on_good_inputs(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert diagnostics.check_inputs(x) == []


def test_check_inputs_large_scale_constant_and_nan():
    rng = np.random.default_rng(0)
    table = np.stack([rng.normal(size=300), rng.normal(5000, 800, size=300)], axis=1)  # 2nd feature unscaled
    with pytest.warns(UserWarning, match="Standardise each feature"):
        (message,) = diagnostics.check_inputs(table, "x")
    assert "#1" in message  # names the feature at fault
    with pytest.warns(UserWarning, match="constant"):
        diagnostics.check_inputs(np.full((10, 3), 0.5, "float32"))
    bad = rng.normal(size=(10, 4)).astype("float32")
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="x_val has 1 NaN"):
        diagnostics.check_inputs(bad, "x_val")


def test_check_inputs_multi_input_names_each():
    x = [np.random.default_rng(0).normal(size=(20, 4)), np.random.default_rng(1).uniform(0, 255, size=(20, 3))]
    with pytest.warns(UserWarning):
        messages = diagnostics.check_inputs(x, "x_train")
    assert len(messages) == 1 and messages[0].startswith("kerastk: x_train[1]")


# --- norms and gradients


def test_weight_norms_are_kernel_norms():
    model = _mlp()
    norms = diagnostics.weight_norms(model)
    assert list(norms) == ["dense1", "dense2", "out"]
    kernel, bias = model.get_layer("dense2").get_weights()
    model.get_layer("dense2").set_weights([kernel, bias + 5.0])  # biases are not counted
    assert diagnostics.weight_norms(model)["dense2"] == pytest.approx(float(np.linalg.norm(kernel)), rel=1e-5)
    assert norms["dense2"] == pytest.approx(float(np.linalg.norm(kernel)), rel=1e-5)


def test_gradient_norms_match_analytic_linear_regression():
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1, name="linear")])
    w, b = rng.normal(size=(5, 1)).astype("float32"), np.array([0.3], "float32")
    model.get_layer("linear").set_weights([w, b])
    # loss = mean((xw + b - y)^2)  =>  d loss / d w = 2/N x^T (xw + b - y)
    expected = np.linalg.norm(2.0 / len(x) * x.T @ (x @ w + b - y))
    norms = diagnostics.gradient_norms(model, x, y, loss="mse")
    assert norms == {"linear": pytest.approx(float(expected), rel=1e-4)}
    # the compiled loss is the default; a scaled target changes the number (the test can fail)
    model.compile(loss="mse")
    assert diagnostics.gradient_norms(model, x, y)["linear"] == pytest.approx(float(expected), rel=1e-4)
    assert diagnostics.gradient_norms(model, x, 3 * y)["linear"] != pytest.approx(float(expected), rel=1e-2)


def test_gradient_norms_leave_the_model_unchanged():
    model = _mlp(batchnorm=True)
    x, y = _toy()
    before = [np.array(w) for w in model.get_weights()]  # BatchNorm moving statistics included
    norms = diagnostics.gradient_norms(model, x, y, loss="sparse_categorical_crossentropy")
    assert set(norms) == {"dense1", "dense2", "out"} and all(v > 0 for v in norms.values())
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="not compiled with a loss"):
        diagnostics.gradient_norms(model, x, y)


def test_dead_relu_fraction_from_hand_set_biases():
    import keras

    x_in = keras.Input((4,))
    h = keras.layers.Dense(4, activation="relu", name="dense_relu")(x_in)
    h = keras.layers.Dense(4, name="pre")(h)
    h = keras.layers.ReLU(name="relu_layer")(h)
    h = keras.layers.Dense(2, name="pre2")(h)
    h = keras.layers.Activation("relu", name="act")(h)
    h = keras.layers.LeakyReLU(name="leaky")(h)  # not a ReLU: never counted
    model = keras.Model(x_in, keras.layers.Dense(1, activation="tanh", name="out")(h))
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 4)).astype("float32")
    small = np.full((4, 4), 0.01, "float32")
    model.get_layer("dense_relu").set_weights([small, np.full(4, -100.0, "float32")])  # always negative: dead
    model.get_layer("pre").set_weights([small, np.array([-100, -100, 100, 100], "float32")])  # half dead
    model.get_layer("pre2").set_weights([np.full((4, 2), 0.01, "float32"), np.full(2, 100.0, "float32")])  # alive
    dead = diagnostics.dead_relu_fraction(model, x)
    assert dead == {"dense_relu": 1.0, "relu_layer": 0.5, "act": 0.0}


# --- the callback


def test_diagnostics_callback_writes_its_files(tmp_path, backend):
    import keras

    model = _mlp()
    x, y = _toy(n=96)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    diag = diagnostics.Diagnostics(x[:32], y[:32], tmp_path / "run", tensorboard_dir=tmp_path / "tb")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(x, y, epochs=3, batch_size=32, verbose=0,
                        callbacks=[diag, keras.callbacks.CSVLogger(str(tmp_path / "history.csv"))])
    summary = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    assert summary["epochs"] == [1, 2, 3] and len(summary["records"]) == 3
    assert summary["initial"]["epoch"] == 0
    last = summary["records"][-1]
    assert set(last["grad_norm"]) == set(last["weight_norm"]) == {"dense1", "dense2", "out"}
    assert set(last["dead_relu"]) == {"dense1", "act2"}
    assert sum(last["histograms"]["dense1"]["counts"]) == 8 * 16
    # the weights moved: the norms differ from the initial ones
    assert last["weight_norm"]["out"] != pytest.approx(summary["initial"]["weight_norm"]["out"], rel=1e-6)
    assert (tmp_path / "run" / "diagnostics.png").stat().st_size > 10_000
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and float(rows[-1]["grad_norm"]) == pytest.approx(last["global_grad_norm"], rel=1e-5)
    assert fit.history["dead_relu"][-1] == pytest.approx(last["mean_dead_relu"])
    tb_files = list((tmp_path / "tb").glob("events.out.tfevents*")) if (tmp_path / "tb").exists() else []
    if backend == "tensorflow" and importlib.util.find_spec("tensorboard") is not None:
        assert tb_files
    else:  # another backend, or tensorboard not installed: said so, PNG only
        assert not tb_files and any("TensorBoard histograms need" in str(w.message) for w in caught)


# --- overfit one batch


def test_overfit_one_batch_reaches_zero_and_restores_nothing_changed():
    model = _mlp(hidden=32)
    x, y = _toy(n=24)
    before = [np.array(w) for w in model.get_weights()]
    result = diagnostics.overfit_one_batch(model, x, y, loss="sparse_categorical_crossentropy", steps=300)
    assert result.reached and result.final_loss <= 1e-2 and result.final_loss == result.losses[-1]
    assert len(result.losses) < 300 and result.losses[0] > 0.5  # stopped once the target was met
    assert "can fit one batch" in result.message
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_overfit_one_batch_reports_when_it_cannot():
    model = _mlp()
    x, y = _toy(n=24)
    result = diagnostics.overfit_one_batch(model, x, y, loss="sparse_categorical_crossentropy", learning_rate=0.0,
                                           steps=5)
    assert not result.reached and len(result.losses) == 5 and "learning rate is 0" in result.message
    assert result.final_loss == pytest.approx(result.losses[0], rel=1e-5)
    model.trainable = False
    result = diagnostics.overfit_one_batch(model, x, y, loss="sparse_categorical_crossentropy", steps=5)
    assert not result.reached and "frozen" in result.message and "loss matches the output" in result.message
    with pytest.raises(ValueError, match="steps"):
        diagnostics.overfit_one_batch(model, x, y, loss="mse", steps=0)
    with pytest.raises(ValueError, match="not compiled with a loss"):
        diagnostics.overfit_one_batch(model, x, y)


def test_norms_look_inside_a_nested_model():
    import keras

    inner = _mlp()
    x_in = keras.Input((8,))
    wrapper = keras.Model(x_in, inner(keras.layers.GaussianNoise(0.1)(x_in)))  # like run()'s augmentation wrapper
    x, y = _toy()
    assert list(diagnostics.weight_norms(wrapper)) == ["dense1", "dense2", "out"]
    assert diagnostics.gradient_norms(wrapper, x, y, loss="sparse_categorical_crossentropy", training=False) == \
        pytest.approx(diagnostics.gradient_norms(inner, x, y, loss="sparse_categorical_crossentropy"), rel=1e-5)
