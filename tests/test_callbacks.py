"""Learning-rate policies, the LR range test and the runner's training toolbox (kerastk.callbacks, TrainingOptions)."""
import json
import runpy
from pathlib import Path

import keras
import numpy as np
import pytest

from kerastk.callbacks import SCHEDULES, CyclicLR, LinearWarmup, LRFinder, lr_find, make_schedule, schedule_values
from kerastk.data import Dataset
from kerastk.losses import SparseCategoricalCrossentropy
from kerastk.training import LRFindFinished, TrainingOptions, make_optimizer, run, weight_penalty, with_label_smoothing

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def smith_clr(step, base, peak, half, mode, gamma=1.0):
    """Smith (2017), section 3.1, written out in numpy."""
    cycle = np.floor(1 + step / (2 * half))
    x = np.abs(step / half - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma ** step}[mode]
    return base + (peak - base) * np.maximum(0, 1 - x) * scale


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_lr_follows_its_formula(mode):
    schedule = CyclicLR(1e-4, 1e-2, step_size=10, mode=mode, gamma=0.99)
    steps = np.arange(95)
    got = schedule_values(schedule, steps)
    np.testing.assert_allclose(got, smith_clr(steps, 1e-4, 1e-2, 10, mode, 0.99), rtol=1e-5, atol=1e-9)
    assert got[10] == pytest.approx(1e-2 if mode != "exp_range" else 1e-4 + (1e-2 - 1e-4) * 0.99 ** 10, rel=1e-5)
    assert got[0] == pytest.approx(1e-4) and got[20] == pytest.approx(1e-4)
    if mode == "triangular2":  # the second peak is half as high above the base
        assert got[30] - 1e-4 == pytest.approx((1e-2 - 1e-4) / 2, rel=1e-5)
    restored = CyclicLR.from_config(schedule.get_config())
    np.testing.assert_allclose(schedule_values(restored, steps), got, rtol=1e-7)


def test_cyclic_lr_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        CyclicLR(1e-3, 1e-2, 10, mode="sawtooth")
    with pytest.raises(ValueError, match="base_lr <= max_lr"):
        CyclicLR(1e-2, 1e-3, 10)
    with pytest.raises(ValueError, match="step_size"):
        CyclicLR(1e-3, 1e-2, 0)


def test_make_schedule_policies():
    lr, spe, epochs = 1e-2, 10, 20
    assert make_schedule("plateau", lr, spe, epochs) == lr and make_schedule("constant", lr, spe, epochs) == lr
    step = schedule_values(make_schedule("step", lr, spe, epochs), [0, 100, 101, 150, 151, 199])
    np.testing.assert_allclose(step, [lr, lr, lr * 0.1, lr * 0.1, lr * 0.01, lr * 0.01], rtol=1e-6)
    exp = schedule_values(make_schedule("exponential", lr, spe, epochs), [0, 200])
    np.testing.assert_allclose(exp, [lr, lr / 100], rtol=1e-5)
    cos = schedule_values(make_schedule("cosine", lr, spe, epochs), [0, 100, 200])
    np.testing.assert_allclose(cos, [lr, lr * (0.01 + 0.99 * 0.5), lr * 0.01], rtol=1e-5)
    sgdr = schedule_values(make_schedule("sgdr", lr, spe, epochs), np.arange(200))
    restarts = np.flatnonzero(np.diff(sgdr) > 0) + 1  # periods of 3, 6, 12 epochs (T = round(20 / 7) = 3)
    assert list(restarts) == [30, 90]
    tri = schedule_values(make_schedule("triangular", lr, spe, epochs), [0, 20, 40])
    np.testing.assert_allclose(tri, [lr / 4, lr, lr / 4], rtol=1e-6)
    warm = schedule_values(make_schedule("cosine", lr, spe, epochs, warmup_epochs=2), [0, 9, 19, 20, 200])
    np.testing.assert_allclose(warm[:3], [lr / 20, lr / 2, lr], rtol=1e-5)
    assert warm[3] == pytest.approx(lr, rel=1e-5) and warm[4] == pytest.approx(lr * 0.01, rel=1e-4)
    for name in SCHEDULES[1:]:  # every schedule ends lower than or equal to where it peaks, and stays positive
        values = schedule_values(make_schedule(name, lr, spe, epochs), np.arange(0, 200, 7))
        assert np.all(values > 0) and values.max() <= lr * (1 + 1e-6)


def test_make_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'cosin'"):
        make_schedule("cosin", 1e-3, 10, 5)
    with pytest.raises(ValueError, match="Warm-up needs a schedule"):
        make_schedule("plateau", 1e-3, 10, 5, warmup_epochs=1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_schedule("cosine", 1e-3, 0, 5)


def test_schedule_survives_keras_file(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    schedule = LinearWarmup(CyclicLR(1e-3, 4e-3, 5, mode="triangular2"), warmup_steps=3)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    model.fit(np.ones((8, 3), "float32"), np.zeros((8, 2), "float32"), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    steps = np.arange(30)
    np.testing.assert_allclose(schedule_values(loaded.optimizer.learning_rate_schedule
                                               if hasattr(loaded.optimizer, "learning_rate_schedule")
                                               else loaded.optimizer._learning_rate, steps),
                               schedule_values(schedule, steps), rtol=1e-6)


def linear_problem(n=4000, seed=0):
    """y = 3x + noise, one weight, MSE: the Hessian is 2 E[x^2] = 2, so plain SGD falls fastest near lr = 1/2
    and diverges above lr = 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1)).astype("float32")
    return x, (3 * x[:, 0] + 0.1 * rng.standard_normal(n)).astype("float32")


def test_lr_finder_suggests_the_fast_descent_range_and_restores_weights(tmp_path):
    x, y = linear_problem()
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    before = model.get_weights()[0].copy()
    result = lr_find(model, x, y, loss="mse", optimizer="sgd", start_lr=1e-4, end_lr=10, num_steps=100, out=tmp_path,
                     verbose=False)
    # the loss falls fastest per decade between 1e-2 and 1/2 (below, steps barely move the weight; above, the
    # weight is already near 3); the range test must stop when the loss blows up beyond lr = 1
    assert 5e-3 <= result.suggestion <= 0.5, result.suggestion
    assert result.diverged and 0.1 <= result.min_loss_lr <= 2.0 and result.lrs[-1] < 10
    assert result.smoothed[0] > 5 * np.min(result.smoothed)  # it really trained
    np.testing.assert_array_equal(model.get_weights()[0], before)
    assert (tmp_path / "lr_find.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggestion"] == pytest.approx(result.suggestion) and len(saved["losses"]) == len(result.lrs)
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        LRFinder(1.0, 0.1)


def test_label_smoothing_losses():
    y = np.array([0, 2, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], "float32")
    smoothed = float(SparseCategoricalCrossentropy(label_smoothing=0.1)(y, p))
    target = np.eye(3)[y] * 0.9 + 0.1 / 3
    assert smoothed == pytest.approx(float(np.mean(-np.sum(target * np.log(p), axis=1))), rel=1e-5)
    assert float(SparseCategoricalCrossentropy()(y, p)) == pytest.approx(
        float(keras.losses.SparseCategoricalCrossentropy()(y, p)), rel=1e-6)
    assert isinstance(with_label_smoothing("sparse_categorical_crossentropy", 0.1), SparseCategoricalCrossentropy)
    logits = with_label_smoothing(keras.losses.CategoricalCrossentropy(from_logits=True), 0.2)
    assert logits.from_logits and logits.label_smoothing == 0.2
    assert with_label_smoothing("mse", 0.0) == "mse"
    with pytest.raises(ValueError, match="Label smoothing applies to cross-entropy losses"):
        with_label_smoothing("mse", 0.1)


def test_weight_penalty_and_optimizer_switches():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_regularizer="l1"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    own = float(keras.ops.convert_to_numpy(model.losses[0]))  # the model's own L1 penalty on its first kernel
    kernels = [w for w in model.get_weights() if w.ndim == 2]
    with weight_penalty(model, l2=0.01) as count:
        assert count == 2  # two kernels; no bias, no BatchNorm parameter
        penalty = sum(float(keras.ops.convert_to_numpy(v)) for v in model.losses)
        assert penalty == pytest.approx(0.01 * sum(float(np.sum(k ** 2)) for k in kernels), rel=1e-5)
    assert [float(keras.ops.convert_to_numpy(v)) for v in model.losses] == [pytest.approx(own)]  # put back
    with weight_penalty(model) as count:  # nothing asked: nothing touched
        assert count == 0 and len(model.losses) == 1
    opt = make_optimizer("adam", 1e-3, clipnorm=1.0, weight_decay=1e-4, use_ema=True, ema_momentum=0.9)
    config = opt.get_config()
    assert (config["clipnorm"], config["weight_decay"], config["use_ema"], config["ema_momentum"]) == (1.0, 1e-4,
                                                                                                      True, 0.9)
    sgd = keras.optimizers.SGD(0.05, momentum=0.9)
    rebuilt = make_optimizer(sgd, 0.05, clipnorm=2.0)
    assert rebuilt is not sgd and rebuilt.get_config()["momentum"] == 0.9 and rebuilt.get_config()["clipnorm"] == 2.0
    assert make_optimizer(sgd, 0.05) is sgd and make_optimizer(sgd) is sgd
    decayed = make_optimizer("adamw", 1e-3, weight_decay=0.01)
    decayed.build([keras.Variable(np.ones((2, 2)), name="kernel"), keras.Variable(np.ones(2), name="bias")])
    assert [decayed._use_weight_decay(v) for v in decayed._trainable_variables] == [True, False]


def regression_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype("float32")
    y = (x @ np.array([[1.5], [-2.0], [0.5]], "float32") + 0.5).astype("float32")
    info = {"input_shape": [3], "task": "regression", "preprocessing": {"type": "none"}, "source": "test"}
    return Dataset("linear", x, y, x[:32], y[:32], x[32:], y[32:], info)


def test_ema_weights_are_kept_and_exported(tmp_path):
    """Full-batch SGD on a linear model, replayed in numpy: the run keeps (and exports) the moving average of the
    weights of its best epoch, which differs from the raw weights."""
    data = regression_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,), name="x"), keras.layers.Dense(1)])
    w, b = (np.array(v, np.float64) for v in model.get_weights())
    lr, momentum, epochs = 0.05, 0.8, 6
    result = run(model, data, "ema", loss="mse", metrics=[], optimizer="sgd", learning_rate=lr, epochs=epochs,
                 batch_size=64, out=tmp_path, patience=50, verbose=0,
                 options=TrainingOptions(lr_schedule="constant", ema=True, ema_momentum=momentum))
    x, y = data.x_train.astype(np.float64), data.y_train.astype(np.float64)
    raw, ema = [], []
    avg_w = avg_b = None
    for step in range(epochs):  # one full batch per epoch: one step
        r = x @ w + b - y
        w, b = w - lr * 2 * x.T @ r / len(x), b - lr * 2 * r.mean(axis=0)
        m = momentum if step else 0.0  # Keras: the average starts at the first step's weights
        avg_w = w if avg_w is None else m * avg_w + (1 - m) * w
        avg_b = b if avg_b is None else m * avg_b + (1 - m) * b
        raw.append((w, b))
        ema.append((avg_w, avg_b))
    best = int(np.argmin(result.history["val_loss"]))
    kept_w, kept_b = model.get_weights()
    np.testing.assert_allclose(kept_w, ema[best][0], atol=2e-5)
    np.testing.assert_allclose(kept_b, ema[best][1], atol=2e-5)
    assert np.max(np.abs(kept_w - raw[best][0])) > 1e-2  # the average is not the raw weights
    from kerastk.deploy import OnnxModel

    onnx_pred = OnnxModel(result.run_dir / "model.onnx").predict(data.x_test)
    np.testing.assert_allclose(onnx_pred, data.x_test @ ema[best][0] + ema[best][1], atol=1e-4)
    card = json.loads((result.run_dir / "card.json").read_text())
    assert card["training"]["options"] == {"lr_schedule": "constant", "ema": True, "ema_momentum": momentum}


def test_schedule_is_logged_per_epoch(tmp_path):
    data = regression_data()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    result = run(model, data, "sched", loss="mse", metrics=[], learning_rate=0.01, epochs=4, batch_size=16,
                 out=tmp_path, patience=50, verbose=0, export=False,
                 options=TrainingOptions(lr_schedule="triangular"))
    steps_per_epoch = 4  # 64 / 16; the rate logged for epoch e is the one it started with, at step 4 e
    expected = smith_clr(np.arange(4) * steps_per_epoch, 0.0025, 0.01, 2 * steps_per_epoch, "triangular")
    np.testing.assert_allclose(result.history["learning_rate"], expected, rtol=1e-5)


def test_recipe_lr_find_stops_before_training(tmp_path):
    main = runpy.run_path(str(RECIPES / "digits_mlp.py"))["main"]
    with pytest.raises(LRFindFinished) as stop:
        main(["--smoke", "--out", str(tmp_path), "--lr-find"])
    found = stop.value.result
    assert stop.value.code == 0 and found.min_loss_lr / 1000 <= found.suggestion <= found.min_loss_lr
    assert found.smoothed.min() < 0.5 * found.smoothed[0]  # the range test really trained the MLP
    run_dir = tmp_path / "digits_mlp"
    assert (run_dir / "lr_find.png").is_file() and not (run_dir / "model.onnx").exists()
    assert len(json.loads((run_dir / "lr_find.json").read_text())["lrs"]) == len(found.lrs)


def test_cli_lr_find(tmp_path, capsys):
    from kerastk.cli import main as cli

    assert cli(["lr-find", "iris_logistic_regression", "--smoke", "--out", str(tmp_path)]) == 0
    assert "LR range test suggests learning rate" in capsys.readouterr().out
    assert (tmp_path / "iris_logistic_regression" / "lr_find.json").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--lr-schedule", "cosin"], "invalid choice: 'cosin'"),
    (["--label-smoothing", "1.5"], "label_smoothing must be in [0.0, 1.0)"),
    (["--clipnorm", "0"], "clipnorm must be > 0.0"),
    (["--l2", "-1"], "l2 must be >= 0.0"),
    (["--warmup-epochs", "2"], "Warm-up needs a schedule"),
    (["--warmup-epochs", "2", "--lr-schedule", "cosine"], None),
])
def test_recipe_flags_are_checked(flags, message, capsys):
    from kerastk.training import parse_recipe_args, recipe_parser

    parser = recipe_parser("doc", 3, 8)
    if message is None:
        assert parse_recipe_args(parser, flags).options.warmup_epochs == 2
        return
    with pytest.raises(SystemExit):
        parse_recipe_args(parser, flags)
    assert message in capsys.readouterr().err


def test_label_smoothing_on_a_regression_recipe_is_refused(tmp_path):
    main = runpy.run_path(str(RECIPES / "housing_linear_regression.py"))["main"]
    with pytest.raises(ValueError, match="Label smoothing applies to cross-entropy losses"):
        main(["--smoke", "--out", str(tmp_path), "--label-smoothing", "0.1"])


@pytest.mark.slow
def test_recipe_with_every_switch(tmp_path):
    main = runpy.run_path(str(RECIPES / "digits_mlp.py"))["main"]
    result = main(["--smoke", "--out", str(tmp_path), "--epochs", "2", "--lr-schedule", "sgdr", "--warmup-epochs",
                   "1", "--ema", "--label-smoothing", "0.1", "--clipnorm", "1", "--l2", "1e-4", "--weight-decay",
                   "1e-4", "--diagnostics"])
    run_dir = result.run_dir
    card = json.loads((run_dir / "card.json").read_text())
    assert card["parity"]["passed"] and card["training"]["options"]["lr_schedule"] == "sgdr"
    assert set(card["training"]["options"]) >= {"ema", "label_smoothing", "clipnorm", "l2", "weight_decay"}
    assert len(result.history["learning_rate"]) == 2 and np.all(np.isfinite(result.history["loss"]))
    assert (run_dir / "diagnostics.png").is_file() and (run_dir / "diagnostics.json").is_file()
