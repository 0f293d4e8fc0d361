"""The bad-input matrix: each kind of bad input gives a clear error (type, and a message naming what was wrong and
what was expected), and nothing is lost or half-written on the way (no partial model.onnx, no temp folder, no
deleted history, an untouched card).

Runtime, cards, registry, data, runner, recipe flags and the export contract, under the active backend; the
backend-name and --distribute cases and the SIGKILL resume run in subprocesses. The HTTP side (oversized bodies,
malformed JSON ...) is tests/test_serve.py's.
"""
import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from kerastk.deploy.runtime import OnnxModel

REPO = Path(__file__).resolve().parent.parent


def onnx_file(path, shape, op="Softmax", inputs=1, elem=TensorProto.FLOAT) -> Path:
    """A tiny ONNX model made with onnx.helper (no exporter): `op` over one input, or Add over two."""
    names = ["x"] if inputs == 1 else ["a", "b"]
    node = helper.make_node(op if inputs == 1 else "Add", names, ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, elem, shape) for n in names],
                              [helper.make_tensor_value_info("y", elem, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Path(path)


@pytest.fixture
def clf(tmp_path):
    """A 4-class "classifier" (softmax over 4 features, dynamic batch) with a card beside it."""
    from kerastk.deploy import write_card

    path = onnx_file(tmp_path / "model.onnx", ["batch", 4])
    write_card(path, name="clf", class_names=list("abcd"), preprocessing={"type": "scale", "factor": 0.5},
               task="classification")
    return path


def x4(rows=2, dtype=np.float32):
    return np.arange(rows * 4, dtype=dtype).reshape(rows, 4) / 10


# --- runtime: what reaches OnnxModel.predict -----------------------------------------------------------------


@pytest.mark.parametrize("x, pattern", [
    (np.zeros((2, 5), np.float32), r"Input 'x' must have shape \(batch, 4\); received \(2, 5\)\.$"),
    (np.zeros((4,), np.float32), r"must have rank 2, shape \(batch, 4\); received rank 1, shape \(4,\)"),
    (np.zeros((2, 4), np.float64), r"must have dtype float32; received float64 \(convert with x.astype"),
    (np.zeros((2, 4), np.int64), r"must have dtype float32; received int64"),
    ([[0.0] * 4], r"Input 'x' must be a numpy array; received list"),
    (np.zeros((0, 4), np.float32), r"Input 'x' is an empty batch, shape \(0, 4\); expected at least one row"),
], ids=["shape", "rank", "dtype-float64", "dtype-int", "not-numpy", "empty-batch"])
def test_wrong_shape_rank_dtype_type_and_empty_batch(clf, x, pattern):
    with pytest.raises(ValueError, match=pattern):
        OnnxModel(clf).predict(x)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_inputs_are_refused_before_onnxruntime(clf, value):
    x = x4(3)
    x[1, 2] = value
    x[2, 0] = value
    with pytest.raises(ValueError, match=r"Input 'x' has 2 NaN or infinite values \(of 12\); expected finite"):
        OnnxModel(clf).predict(x)
    assert np.all(np.isfinite(OnnxModel(clf).predict(x4(3))))  # the same model still answers good inputs


def test_wrong_number_of_inputs(tmp_path):
    model = OnnxModel(onnx_file(tmp_path / "two.onnx", ["batch", 3], inputs=2))
    with pytest.raises(ValueError, match=r"two.onnx takes 2 input\(s\) \(a, b\); received 1"):
        model.predict(np.zeros((1, 3), np.float32))
    y = model.predict([np.ones((1, 3), np.float32), np.ones((1, 3), np.float32)])
    np.testing.assert_array_equal(y, np.full((1, 3), 2.0, np.float32))


def test_fixed_batch_file_used_at_another_batch_size(tmp_path):
    model = OnnxModel(onnx_file(tmp_path / "fixed.onnx", [1, 4]))
    with pytest.raises(ValueError, match=r"must have shape \(1, 4\); received \(3, 4\)\. The file has a fixed batch "
                                         r"size of 1: feed 1 row\(s\) at a time, or re-export with kerastk"):
        model.predict(x4(3))
    assert model.predict(x4(1)).shape == (1, 4)


def test_channels_first_images_to_a_channels_last_model(tmp_path):
    model = OnnxModel(onnx_file(tmp_path / "image.onnx", ["batch", 8, 8, 3], op="Identity"))
    nchw = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"received \(2, 3, 8, 8\)\. The model takes channels-last inputs "
                                         r"\(batch, \.\.\., channels=3\); these look channels-first: "
                                         r"use np\.moveaxis\(x, 1, -1\)"):
        model.predict(nchw)
    assert model.predict(np.moveaxis(nchw, 1, -1)).shape == (2, 8, 8, 3)


# --- ONNX files and cards ------------------------------------------------------------------------------------


def test_corrupt_and_truncated_onnx_files(tmp_path, clf):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match=r"junk.onnx' is not a valid ONNX model onnxruntime can load: "):
        OnnxModel(junk)
    truncated = tmp_path / "truncated.onnx"
    data = clf.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated.onnx' is not a valid ONNX model onnxruntime can load"):
        OnnxModel(truncated)
    with pytest.raises(FileNotFoundError, match=r"No ONNX model at '.*missing.onnx'"):
        OnnxModel(tmp_path / "missing.onnx")
    assert clf.read_bytes() == data  # reading never touches the source file


def test_onnx_without_a_card_predicts_but_refuses_raw_inputs(tmp_path, clf):
    import onnx

    bare = tmp_path / "bare"
    bare.mkdir()
    # the file alone carries the card's essentials (kerastk.deploy.metadata): labels and preprocessing
    (bare / "model.onnx").write_bytes(clf.read_bytes())
    alone = OnnxModel(bare / "model.onnx")
    assert alone.card == {} and alone.predict_labels(x4()) == ["d", "d"]
    np.testing.assert_allclose(alone.preprocess(np.full((1, 4), 4.0)), np.full((1, 4), 2.0))
    # a file with neither card nor metadata: indices, and raw inputs refused
    m = onnx.load(str(clf))
    del m.metadata_props[:]
    onnx.save(m, str(bare / "model.onnx"))
    model = OnnxModel(bare / "model.onnx")
    assert model.card == {} and model.class_names is None
    np.testing.assert_allclose(model.predict(x4()), OnnxModel(clf).predict(x4()))
    assert model.predict_labels(x4()) == [3, 3]  # indices: no class names without a card
    with pytest.raises(ValueError, match=r"model.onnx has no card \(looked for '.*bare/card.json'\) and no "
                                         r"kerastk metadata recording it, so the preprocessing it was trained "
                                         r"with is unknown; "):
        model.preprocess(np.ones((1, 4)))
    # the card given explicitly restores both (a card describes one file: the copy with its bytes unchanged)
    (bare / "model.onnx").write_bytes(clf.read_bytes())
    card = json.loads((clf.parent / "card.json").read_text())
    with_card = OnnxModel(bare / "model.onnx", card=card)
    np.testing.assert_allclose(with_card.preprocess(np.full((1, 4), 4.0)), np.full((1, 4), 2.0))
    assert with_card.predict_labels(x4()) == ["d", "d"]


def test_card_of_another_model_is_refused(tmp_path, clf):
    card_path = clf.parent / "card.json"
    card_bytes = card_path.read_bytes()
    onnx_file(clf, ["batch", 4], op="Identity")  # re-exported in place; the old card stayed
    with pytest.raises(ValueError, match=r"card.json' describes a different file \(sha256 [0-9a-f]{12}\.\.\.\) than "
                                         r"'.*model.onnx' \(sha256 [0-9a-f]{12}\.\.\.\); re-export the model"):
        OnnxModel(clf)
    assert card_path.read_bytes() == card_bytes  # the card is left for the user to look at, untouched
    # a card without a hash is still compared on its inputs
    card = json.loads(card_bytes)
    del card["sha256"]
    card["inputs"][0]["shape"] = [None, 5]
    with pytest.raises(ValueError, match=r"the card given records inputs \[\('x', \[None, 5\], 'float32'\)\] but "
                                         r"model.onnx takes \[\('x', \[None, 4\], 'float32'\)\]"):
        OnnxModel(clf, card=card)


def test_card_that_is_not_json_or_has_unknown_preprocessing(tmp_path, clf):
    card_path = clf.parent / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text("{broken")
    with pytest.raises(ValueError, match=r"Model card '.*card.json' is not valid JSON"):
        OnnxModel(clf)
    card_path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"card.json' must hold a JSON object; received a list"):
        OnnxModel(clf)
    model = OnnxModel(clf, card={**card, "preprocessing": {"type": "whiten"}})
    with pytest.raises(ValueError, match=r"Unknown preprocessing type 'whiten'; expected one of 'none', 'scale'"):
        model.preprocess(np.ones((1, 4)))


# --- registry and data ---------------------------------------------------------------------------------------


def test_unknown_model_name_suggests_close_ones():
    import kerastk

    with pytest.raises(ValueError, match=r"Unknown model 'lenet'\. Did you mean: lenet5.*`kerastk.list_models\(\)` "
                                         r"lists the \d+ models"):
        kerastk.create_model("lenet")


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"widht": 8}, TypeError, r"create_model\('mlp'\) got unexpected argument\(s\) widht; accepted: .*width"),
    ({"depth": -1}, ValueError, r"`depth` must be an integer >= 0; received depth=-1"),
    ({"dropout": 1.5}, ValueError, r"`dropout` must be a float in \[0, 1\); received dropout=1.5"),
    ({"input_shape": (0,)}, ValueError, r"`input_shape` must be a non-empty tuple of positive ints"),
], ids=["unknown-kwarg", "negative-depth", "dropout-range", "empty-shape"])
def test_bad_builder_kwargs(kwargs, error, pattern):
    import kerastk

    with pytest.raises(error, match=pattern):
        kerastk.create_model("mlp", **kwargs)


def test_unknown_and_missing_datasets(tmp_path, monkeypatch):
    from kerastk import data as kdata

    with pytest.raises(ValueError, match=r"Unknown dataset 'mnsit'\. Did you mean 'mnist'.*Available: .*digits"):
        kdata.load("mnsit")
    monkeypatch.setenv("KERASTK_OFFLINE", "1")
    for name, fallback in (("mnist", "embedded"), ("cifar10", "generated"), ("imdb", "generated")):
        with pytest.raises(ValueError, match=rf"source='keras' asks for keras.datasets.{name}, but KERASTK_OFFLINE=1 "
                                             rf"forbids the download.*'{fallback}'"):
            kdata.load(name, source="keras")
    with pytest.raises(ValueError, match=r"`source` for 'mnist' must be 'auto', 'keras' or 'embedded'; received "
                                         r"'kaggle'"):
        kdata.load("mnist", source="kaggle")
    with pytest.raises(FileNotFoundError, match=r"No text file at '.*corpus.txt' \(load_text\(text=\.\.\.\) needs"):
        kdata.load("text", text=tmp_path / "corpus.txt")
    with pytest.raises(TypeError, match=r"kerastk.data.load\('digits'\): .*unexpected keyword"):
        kdata.load("digits", n_rows=10)


# --- the runner ----------------------------------------------------------------------------------------------


def _table(rows=64, features=4, seed=0):
    from kerastk.data import Dataset

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    y = rng.integers(0, 3, rows)
    info = {"task": "classification", "source": "test", "input_shape": [features],
            "preprocessing": {"type": "none"}, "class_names": ["a", "b", "c"], "num_classes": 3}
    return Dataset("table", x, y, x[:16], y[:16], x[:16], y[:16], info)


@pytest.fixture
def earlier_run(tmp_path):
    """A run folder left by an earlier, finished run: its history must survive a refused run."""
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "history.csv").write_text("epoch,loss\n0,1.5\n1,1.2\n")
    return run_dir


def _refused(run_dir, data, match, error=ValueError, **kwargs):
    import kerastk
    from kerastk.training import run

    model = kerastk.create_model("mlp", input_shape=(4,), num_classes=3, depth=1, width=8)
    with pytest.raises(error, match=match):
        run(model, data, "r", loss="sparse_categorical_crossentropy", epochs=2, out=run_dir.parent, export=False,
            verbose=0, **kwargs)
    assert (run_dir / "history.csv").read_text() == "epoch,loss\n0,1.5\n1,1.2\n"
    assert sorted(p.name for p in run_dir.iterdir()) == ["history.csv"]


def test_nan_training_data_is_refused_and_the_earlier_run_kept(earlier_run):
    data = _table()
    data.x_train[3, 1] = np.nan
    _refused(earlier_run, data, r"x_train has 1 NaN or infinite values \(of 256\).*Expected finite numbers")


def test_data_that_does_not_fit_the_model_is_refused_before_training(earlier_run):
    _refused(earlier_run, _table(features=5), r"x_train has shape \(64, 5\), but model 'mlp' input '.*' takes "
                                              r"\(rows, 4\)\. Build the model with input_shape=\(5,\)")
    data = _table()
    _refused(earlier_run, dataclasses.replace(data, y_train=data.y_train[:63]),
             r"y_train has 63 labels for 64 rows of x_train; expected one label per row")
    _refused(earlier_run, dataclasses.replace(data, x_val=[data.x_val, data.x_val]),
             r"Model 'mlp' takes 1 input\(s\); x_val gives 2 array\(s\)")


def test_bad_run_arguments_are_refused_and_the_earlier_run_kept(earlier_run):
    import kerastk
    from kerastk.training import TrainingOptions, run

    model = kerastk.create_model("mlp", input_shape=(4,), num_classes=3, depth=1, width=8)
    with pytest.raises(ValueError, match=r"`epochs` must be a positive integer; received epochs=0"):
        run(model, _table(), "r", loss="mse", epochs=0, out=earlier_run.parent, export=False)
    assert sorted(p.name for p in earlier_run.iterdir()) == ["history.csv"]
    _refused(earlier_run, _table(), r"Training option label_smoothing must be in \[0.0, 1.0\); received 1.5",
             options=TrainingOptions(label_smoothing=1.5))
    _refused(earlier_run, _table(), r"Unknown lr_schedule 'cosine_warm'; expected one of .*cosine",
             options=TrainingOptions(lr_schedule="cosine_warm"))


KILL_SCRIPT = '''
import os, signal, sys
import keras
import kerastk
from kerastk import data as kdata
from kerastk.training import run, smoke_subset

out, kill_epoch = sys.argv[1], int(sys.argv[2])


class KillMidEpoch(keras.callbacks.Callback):
    """SIGKILL (no cleanup, no exception handler runs) at the third batch of epoch `kill_epoch`."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == kill_epoch and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)


data = smoke_subset(kdata.load("digits", seed=0), n_train=192, n_eval=64)
model = kerastk.create_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, depth=1, width=16)
result = run(model, data, "killed", loss="sparse_categorical_crossentropy", epochs=4, batch_size=32, out=out,
             export=False, verbose=0, patience=10, callbacks=[KillMidEpoch()])
print("EPOCHS_RUN", result.epochs_run)
'''


def test_training_killed_mid_epoch_resumes_without_losing_a_finished_epoch(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "KERASTK_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run_dir = tmp_path / "runs" / "killed"
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "runs"), "2"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    before = (run_dir / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in before] == ["epoch", "0", "1"]  # epochs 1 and 2 finished, 3 was cut
    assert (run_dir / "backup").is_dir() and not (run_dir / "model.keras").exists()

    resumed = subprocess.run([sys.executable, str(script), str(tmp_path / "runs"), "-1"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming killed from {run_dir / 'backup'}" in resumed.stderr
    assert "EPOCHS_RUN 2" in resumed.stdout  # only epochs 3 and 4 were trained again
    after = (run_dir / "history.csv").read_text().splitlines()
    assert after[:3] == before  # the finished epochs' rows, unchanged and once each
    assert [line.split(",")[0] for line in after] == ["epoch", "0", "1", "2", "3"]
    assert (run_dir / "model.keras").is_file() and not (run_dir / "backup").exists()


# --- recipe flags and the command line -----------------------------------------------------------------------


@pytest.mark.parametrize("argv, pattern", [
    (["--epochs", "0"], r"--epochs must be >= 1; received 0"),
    (["--batch-size", "-4"], r"--batch-size must be >= 1; received -4"),
    (["--lr-schedule", "bogus"], r"argument --lr-schedule: invalid choice: 'bogus' \(choose from .*cosine"),
    (["--label-smoothing", "1.5"], r"Training option label_smoothing must be in \[0.0, 1.0\); received 1.5"),
    (["--warmup-epochs", "2"], r"Warm-up needs a schedule"),
    (["--learning-rate", "fast"], r"argument --learning-rate: invalid float value: 'fast'"),
], ids=["epochs", "batch-size", "schedule", "smoothing", "warmup", "not-a-number"])
def test_bad_recipe_flag_values(argv, pattern, capsys):
    from kerastk.training import parse_recipe_args, recipe_parser

    with pytest.raises(SystemExit) as exc:
        parse_recipe_args(recipe_parser("A recipe.", 5, 32), argv)
    assert exc.value.code == 2
    assert __import__("re").search(pattern, capsys.readouterr().err)


def test_unknown_recipe_names_close_ones(capsys):
    from kerastk.cli import main

    assert main(["train", "mnist_lenet"]) == 2
    err = capsys.readouterr().err
    assert "kerastk train: no recipe 'mnist_lenet'. Did you mean mnist_lenet5" in err and "digits_mlp" in err


# --- backend assumptions -------------------------------------------------------------------------------------


def test_keras_backend_nonsense_names_the_backends_and_the_runtime_still_runs(clf):
    code = (
        "import sys, numpy as np\n"
        "from kerastk.deploy import OnnxModel\n"
        f"print(OnnxModel({str(clf)!r}).predict(np.ones((1, 4), np.float32)).shape)\n"
        "import kerastk\n"
        "try:\n"
        "    kerastk.create_model('mlp')\n"
        "except ValueError as exc:\n"
        "    print('ValueError:', exc)\n"
        "print('keras imported:', 'keras' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "KERAS_BACKEND": "nonsense"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "(1, 4)"  # numpy + onnxruntime only: no backend needed
    assert lines[1].startswith("ValueError: KERAS_BACKEND='nonsense' is not a backend kerastk runs on; expected one "
                               "of tensorflow, jax, torch. Set it before Python starts")
    assert lines[2] == "keras imported: False"


def test_distribute_under_torch_is_refused_before_the_recipe_starts(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "digits_mlp.py"), "--distribute", "2", "--smoke",
                           "--out", str(tmp_path)], env={**os.environ, "KERAS_BACKEND": "torch",
                                                         "KERASTK_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--distribute is not supported on the torch backend by Keras's fit; use jax or tensorflow" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


# --- .keras files --------------------------------------------------------------------------------------------


def test_incompatible_keras_files(tmp_path):
    import keras

    from kerastk.deploy import export_onnx
    from kerastk.deploy.validate import load_keras

    not_zip = tmp_path / "not_zip.keras"
    not_zip.write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"not_zip.keras' is not a Keras 3 `.keras` archive \(a zip with config"):
        load_keras(not_zip)
    no_config = tmp_path / "no_config.keras"
    with zipfile.ZipFile(no_config, "w") as z:
        z.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match=r"no_config.keras' is a zip but not a Keras 3 `.keras` archive: "
                                         r"\['config.json', 'model.weights.h5'\] missing"):
        load_keras(no_config)

    @keras.saving.register_keras_serializable(package="bad_inputs_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((3,))
    custom = tmp_path / "custom.keras"
    keras.Model(inputs, Doubler()(inputs)).save(custom)
    keras.saving.get_custom_objects().pop("bad_inputs_test>Doubler")
    with pytest.raises(ValueError, match=r"custom.keras' uses class\(es\) not registered in this process: "
                                         r"bad_inputs_test>Doubler; import the module that defines them"):
        load_keras(custom)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ValueError, match=r"not_zip.keras' is not a Keras 3"):  # the export command's path
        export_onnx(not_zip, out, optimize=False)
    assert not out.exists()


# --- export: the output folder, disk full, interrupted (kerastk.deploy.export's contract) --------------------


@pytest.fixture(scope="module")
def mlp():
    import kerastk

    return kerastk.create_model("mlp", input_shape=(4,), num_classes=3, depth=1, width=8)


def _stale_export(folder):
    """model.onnx + card.json from an earlier export, which a failed export must not leave looking current (they
    are renamed *.stale, not deleted: they may be the only copy of a good export and its training figures)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(b"old model")
    (folder / "card.json").write_text("{}")
    return folder / "model.onnx"


STALE = ["card.json.stale", "model.onnx.stale"]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def no_export(monkeypatch):
    """Records whether the exporter was reached."""
    import kerastk.deploy.export as export_module

    calls = []
    monkeypatch.setattr(export_module, "export_native", lambda *a, **k: calls.append(a) or [])
    return calls


def test_export_into_a_path_under_a_file_fails_before_exporting(tmp_path, mlp, no_export):
    from kerastk.deploy import export_onnx

    blocker = tmp_path / "results"
    blocker.write_text("a file where the folder should be")
    with pytest.raises((NotADirectoryError, FileExistsError), match=r"results"):
        export_onnx(mlp, blocker / "model.onnx", optimize=False)
    assert no_export == [] and blocker.read_text() == "a file where the folder should be"


def test_export_into_an_unwritable_folder_fails_before_exporting(mlp, no_export):
    from kerastk.deploy import export_onnx

    # sysfs refuses new files even to root (chmod does not stop root, so a read-only mode would prove nothing)
    with pytest.raises(PermissionError, match=r"'/sys"):
        export_onnx(mlp, "/sys/model.onnx", optimize=False)
    assert no_export == [] and not Path("/sys/model.onnx").exists()


def test_export_to_a_directory_path_fails_before_exporting(tmp_path, mlp, no_export):
    from kerastk.deploy import export_onnx

    (tmp_path / "model.onnx").mkdir()
    with pytest.raises(IsADirectoryError, match=r"model.onnx' is a directory; expected a file name"):
        export_onnx(mlp, tmp_path / "model.onnx", optimize=False)
    assert no_export == []


def test_disk_full_while_writing_the_export(tmp_path, mlp, monkeypatch):
    import kerastk.deploy.export as export_module

    def full(model, path, opset=None):
        Path(path).write_bytes(b"half a model")
        raise OSError(errno.ENOSPC, "No space left on device")  # the path in the message is the toolkit's job

    monkeypatch.setattr(export_module, "export_native", full)
    out = _stale_export(tmp_path / "run")
    with pytest.raises(OSError, match=r"model.onnx") as exc:
        export_module.export_onnx(mlp, out, optimize=False)
    assert exc.value.errno == errno.ENOSPC
    # no half-written file, no temp folder; the earlier model and card set aside, intact
    assert _leftovers(tmp_path / "run") == STALE
    assert (tmp_path / "run" / "model.onnx.stale").read_bytes() == b"old model"


def test_disk_full_at_the_final_move(tmp_path, mlp, monkeypatch):
    import kerastk.deploy.export as export_module

    def replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_module.os, "replace", replace)
    out = _stale_export(tmp_path / "run")
    with pytest.raises(OSError, match=r"model.onnx") as exc:
        export_module.export_onnx(mlp, out, optimize=False)
    assert exc.value.errno == errno.ENOSPC
    assert _leftovers(tmp_path / "run") == STALE


def test_disk_full_in_the_default_optimised_export(tmp_path, mlp, monkeypatch):
    """The default export may run the TensorFlow route in a subprocess: its disk-full error must reach the caller
    as the OSError, not as 'no route validates' after every other route hit the same full disk."""
    import kerastk.deploy.export as export_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_module, "export_native", full)
    monkeypatch.setattr(export_module, "export_in_subprocess", full)
    out = _stale_export(tmp_path / "run")
    with pytest.raises(OSError, match=r"model.onnx.*No space left") as exc:
        export_module.export_onnx(mlp, out)
    assert exc.value.errno == errno.ENOSPC and _leftovers(tmp_path / "run") == STALE


def test_export_worker_reports_an_unwritable_output_as_oserror(tmp_path, mlp):
    """A real export subprocess (another backend than the active one) that cannot write its file."""
    import keras

    from kerastk.deploy.export import export_in_subprocess

    route = "torch" if keras.backend.backend() != "torch" else "tensorflow"
    mlp.save(tmp_path / "m.keras")
    with pytest.raises(PermissionError):  # sysfs refuses new files even to root
        export_in_subprocess(tmp_path / "m.keras", "/sys/kerastk-m.onnx", route)


def test_export_interrupted_midway(tmp_path, mlp, monkeypatch):
    import kerastk.deploy.export as export_module

    def interrupted(model, path, opset=None):
        Path(path).write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "export_native", interrupted)
    out = _stale_export(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        export_module.export_onnx(mlp, out, optimize=False)
    assert _leftovers(tmp_path / "run") == STALE
