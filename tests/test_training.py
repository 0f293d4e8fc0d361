import csv

import keras
import numpy as np
import pytest

import kerastk
from kerastk import data as kdata
from kerastk.training import read_history, run, smoke_subset


class Interrupt(keras.callbacks.Callback):
    """Stops the process-like run after `epoch` finished epochs, as a crash or Ctrl-C would."""

    def __init__(self, after_epoch):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after_epoch:
            raise KeyboardInterrupt("simulated interruption")


def _data():
    return smoke_subset(kdata.load("blobs", seed=0), n_train=200, n_eval=60)


def _model():
    keras.utils.set_random_seed(0)
    return kerastk.create_model("mlp", input_shape=(2,), num_classes=3, depth=1, width=16)


def test_run_leaves_a_complete_run_folder(tmp_path):
    result = run(_model(), _data(), "blobs", loss="sparse_categorical_crossentropy", epochs=4, batch_size=32,
                 out=tmp_path, verbose=0, learning_rate=0.05)
    d = tmp_path / "blobs"
    for f in ("model.keras", "best.keras", "model.onnx", "card.json", "curves.png", "history.csv", "report.md"):
        assert (d / f).is_file(), f
    assert not (d / "backup").exists(), "the backup is removed once a run completes"
    assert result.history["epoch"] == [0, 1, 2, 3]
    assert result.history["learning_rate"][0] == pytest.approx(0.05)
    assert result.test_metrics["accuracy"] > 0.8
    assert result.onnx_metrics["accuracy"] == result.test_metrics["accuracy"]
    assert result.export.validation.passed
    report = (d / "report.md").read_text()
    assert "## Test split" in report and "parity: PASSED" in report


def test_interrupted_run_resumes_from_its_last_epoch(tmp_path):
    data = _data()
    kwargs = dict(loss="sparse_categorical_crossentropy", epochs=5, batch_size=32, out=tmp_path, verbose=0,
                  patience=10, export=False)
    with pytest.raises(KeyboardInterrupt):
        run(_model(), data, "resume", callbacks=[Interrupt(after_epoch=3)], **kwargs)
    assert (tmp_path / "resume" / "backup").exists()
    assert read_history(tmp_path / "resume" / "history.csv")["epoch"] == [0, 1, 2]

    result = run(_model(), data, "resume", **kwargs)  # a fresh model object, as a restarted script has
    assert result.epochs_run == 2, "the restarted run trains only the epochs that were missing"
    with open(tmp_path / "resume" / "history.csv") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == [0, 1, 2, 3, 4]
    assert not (tmp_path / "resume" / "backup").exists()


def test_early_stopping_restores_best_weights(tmp_path):
    import dataclasses

    data = _data()
    # Shuffled validation labels: the more confident the model gets on the training split, the worse the
    # validation loss, so early stopping must end the run and restore the best epoch's weights.
    noisy = np.random.default_rng(0).permutation(data.y_val)
    data = dataclasses.replace(data, y_val=noisy)
    result = run(_model(), data, "es", loss="sparse_categorical_crossentropy", epochs=30, batch_size=16,
                 out=tmp_path, verbose=0, patience=2, lr_patience=100, learning_rate=0.05, export=False)
    h = result.history
    assert len(h["epoch"]) < 30
    best = float(np.nanmin(h["val_loss"]))
    model = keras.saving.load_model(tmp_path / "es" / "model.keras")
    assert model.evaluate(data.x_val, data.y_val, verbose=0, return_dict=True)["loss"] == pytest.approx(best, rel=1e-3)


def test_run_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        run(_model(), _data(), "bad", loss="mse", epochs=0, out=tmp_path)
    with pytest.raises(ValueError, match="Unknown optimizer 'adamm'"):
        run(_model(), _data(), "bad", loss="mse", optimizer="adamm", out=tmp_path)


def test_augmentation_trains_but_is_not_in_the_saved_or_exported_model(tmp_path):
    from kerastk.data.augment import augmentation

    data = smoke_subset(kdata.load("shapes", seed=0, n_samples=120, image_size=32), n_train=64, n_eval=24)
    keras.utils.set_random_seed(0)
    model = kerastk.create_model("mnist_cnn", input_shape=(32, 32, 3), num_classes=5)
    aug = augmentation("standard")
    x = data.x_train[:4]
    assert not np.allclose(keras.ops.convert_to_numpy(aug(x, training=True)), x)  # it does change images
    result = run(model, data, "aug", loss="sparse_categorical_crossentropy", epochs=1, batch_size=16,
                 out=tmp_path, verbose=0, augmentation=aug)
    saved = keras.saving.load_model(tmp_path / "aug" / "model.keras")
    kinds = {type(layer).__name__ for layer in saved.layers}
    assert not kinds & {"Sequential", "RandomFlip", "RandomRotation", "RandomColorJitter"}
    assert saved.count_params() == model.count_params()
    assert result.export.validation.passed
    with pytest.raises(ValueError, match="Unknown augmentation policy 'autoaugment'"):
        augmentation("autoaugment")
