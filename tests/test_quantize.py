"""int8 / fp16 quantisation of exported models (kerastk.deploy.quantize) and the data the runner leaves for it.

One small CNN is trained for a few epochs on the 8x8 digits through kerastk.training.run (so the run folder is
the real one); every int8 / fp16 check reads that folder.
"""
import argparse
import dataclasses
import json
import types

import keras
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from kerastk import data as kdata
from kerastk.cli import add_quantize_arguments as add_arguments
from kerastk.cli import quantize_after_export as command
from kerastk.deploy import OnnxModel
from kerastk.deploy.card import sha256
from kerastk.deploy.quantize import (
    QUANTIZATION_DATA,
    TEST_ROWS_CAP,
    format_summary,
    quantize_onnx,
    quantize_run,
    save_quantization_data,
)
from kerastk.training import run


def _digits_as_images():
    d = kdata.load("digits", seed=0)
    r = lambda x: x.reshape(-1, 8, 8, 1)  # noqa: E731
    return dataclasses.replace(d, x_train=r(d.x_train), x_val=r(d.x_val), x_test=r(d.x_test),
                               info={**d.info, "input_shape": [8, 8, 1]})


def _cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = _digits_as_images()
    result = run(_cnn(), data, "digits_cnn", loss="sparse_categorical_crossentropy", epochs=4, batch_size=32,
                 out=tmp_path_factory.mktemp("runs"), verbose=0, learning_rate=3e-3)
    return types.SimpleNamespace(data=data, result=result, run_dir=result.run_dir)


def _accuracy(path, x, y):
    return float(np.mean(np.argmax(OnnxModel(path, card={}).predict(x), -1) == y))


def _dequantized_weights(model):
    """(weight initializer, DequantizeLinear node) for every quantised weight."""
    inits = {i.name: i for i in model.graph.initializer}
    return [(inits[n.input[0]], n, numpy_helper.to_array(inits[n.input[1]]))
            for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]


# --- the runner's quantization_data.npz -----------------------------------------------------------------------


def test_runner_leaves_calibration_rows_and_the_test_split(trained):
    d, run_dir = trained.data, trained.run_dir
    card = json.loads((run_dir / "card.json").read_text())
    assert card["quantization_data"] == QUANTIZATION_DATA
    with np.load(run_dir / QUANTIZATION_DATA, allow_pickle=False) as npz:
        assert npz["x_train"].shape == (256, 8, 8, 1) and npz["x_train"].dtype == np.float32
        flat_train = d.x_train.reshape(len(d.x_train), -1)
        rows = npz["x_train"].reshape(256, -1)
        # every calibration row is a training row, drawn at random (not the first 256)
        matches = [np.flatnonzero(np.all(flat_train == r, axis=1)) for r in rows]
        assert all(len(m) >= 1 for m in matches)
        assert max(m[0] for m in matches) > 256
        np.testing.assert_array_equal(npz["x_test"], d.x_test)  # 270 test rows: under the 2,000 cap
        np.testing.assert_array_equal(npz["y_test"], d.y_test)
        assert npz["task"].item() == "classification"


def test_save_quantization_data_multi_input_and_cap(tmp_path):
    rng = np.random.default_rng(0)
    n_test = TEST_ROWS_CAP + 500
    data = types.SimpleNamespace(
        x_train=[rng.standard_normal((300, 3)).astype("float32"), rng.integers(0, 9, (300, 5))],
        x_test=[rng.standard_normal((n_test, 3)).astype("float32"), rng.integers(0, 9, (n_test, 5))],
        y_test=rng.integers(0, 2, n_test), task="binary")
    path = save_quantization_data(tmp_path, data, rows=100, seed=3)
    assert path == tmp_path / QUANTIZATION_DATA
    assert sorted(p.name for p in tmp_path.iterdir()) == [QUANTIZATION_DATA]  # no temporary file left
    with np.load(path) as npz:
        assert {"x_train_0", "x_train_1", "x_test_0", "x_test_1", "y_test", "task"} <= set(npz.files)
        assert npz["x_train_0"].shape == (100, 3) and npz["x_train_1"].shape == (100, 5)
        assert npz["x_test_0"].shape == (TEST_ROWS_CAP, 3) and npz["y_test"].shape == (TEST_ROWS_CAP,)
        # the two inputs' rows stay paired: row i of both comes from the same training row
        idx = [int(np.flatnonzero(np.all(data.x_train[0] == r, axis=1))[0]) for r in npz["x_train_0"]]
        np.testing.assert_array_equal(npz["x_train_1"], data.x_train[1][idx])
        again = save_quantization_data(tmp_path, data, rows=100, seed=3)
        with np.load(again) as npz2:
            np.testing.assert_array_equal(npz["x_train_0"], npz2["x_train_0"])  # seeded


# --- int8 -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def int8(trained):
    return quantize_run(trained.run_dir, "int8")


def test_int8_file_is_qdq_per_channel_and_small(trained, int8):
    run_dir = trained.run_dir
    path = run_dir / "model.int8.onnx"
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 8
    weights = {w.name: (w, node, scale) for w, node, scale in _dequantized_weights(model)
               if w.data_type == onnx.TensorProto.INT8}
    conv = [(w, node, scale) for w, node, scale in weights.values() if len(w.dims) == 4]
    assert sorted(w.dims[0] for w, _, _ in conv) == [16, 32]  # both convolutions' kernels are int8
    for w, node, scale in conv:  # one scale per output channel, along the kernel's output axis
        axis = next(a.i for a in node.attribute if a.name == "axis")
        assert axis == 0 and scale.shape == (w.dims[0],)
    dense = [(w, node, scale) for w, node, scale in weights.values() if len(w.dims) == 2]
    assert sorted(scale.shape[0] for _, _, scale in dense) == [10, 64]  # per output unit as well
    # no float32 weight matrix is left: the file is about 4x smaller
    assert int8["size_ratio"] > 2.5
    assert int8["bytes_fp32"] == (run_dir / "model.onnx").stat().st_size
    assert int8["bytes_quantized"] == path.stat().st_size
    assert int8["size_ratio"] == pytest.approx(int8["bytes_fp32"] / int8["bytes_quantized"], rel=1e-3)


def test_int8_accuracy_measured_and_close_to_fp32(trained, int8):
    d, run_dir = trained.data, trained.run_dir
    fp32 = _accuracy(run_dir / "model.onnx", d.x_test, d.y_test)
    q = _accuracy(run_dir / "model.int8.onnx", d.x_test, d.y_test)
    assert fp32 > 0.85, "the CNN must learn the digits for the comparison to mean anything"
    assert abs(fp32 - q) <= 0.02  # within a couple of points
    assert int8["metrics_fp32"]["accuracy"] == pytest.approx(fp32)
    assert int8["metrics_quantized"]["accuracy"] == pytest.approx(q)
    assert int8["accuracy_drop_points"] == pytest.approx(100 * (fp32 - q), abs=1e-3)
    agree = np.mean(np.argmax(OnnxModel(run_dir / "model.onnx", card={}).predict(d.x_test), -1)
                    == np.argmax(OnnxModel(run_dir / "model.int8.onnx", card={}).predict(d.x_test), -1))
    assert int8["argmax_agreement"] == pytest.approx(agree) and agree >= 0.95
    assert int8["test_rows"] == len(d.x_test)


def test_int8_summary_and_cards(trained, int8):
    run_dir = trained.run_dir
    assert int8["mode"] == "int8" and int8["file"] == "model.int8.onnx"
    assert (int8["format"], int8["weight_type"], int8["activation_type"]) == ("QDQ", "int8", "uint8")
    assert int8["per_channel"] is True and int8["calibrate_method"] == "minmax"
    assert int8["calibration_rows"] == 256 and QUANTIZATION_DATA in int8["calibration_source"]
    lat = int8["latency_batch1_ms"]
    assert lat["fp32"] > 0 and lat["quantized"] > 0
    assert int8["speedup"] == pytest.approx(lat["fp32"] / lat["quantized"], rel=1e-2)
    target = int8["target"]
    assert isinstance(target["met"], bool)
    expected_met = int8["speedup"] >= 2.0 and int8["accuracy_drop_points"] <= 1.0
    assert target["met"] == expected_met  # speed is not asserted: the machine may be busy
    if not target["met"]:
        assert ("speed" in target["why"]) == (int8["speedup"] < 2.0)
        assert ("accuracy" in target["why"]) == (int8["accuracy_drop_points"] > 1.0)
    # the quantised file's card: a copy of the fp32 card describing the new file
    qcard = json.loads((run_dir / "model.int8.card.json").read_text())
    fcard = json.loads((run_dir / "card.json").read_text())
    assert qcard["file"] == "model.int8.onnx" and qcard["sha256"] == sha256(run_dir / "model.int8.onnx")
    assert qcard["class_names"] == fcard["class_names"] and qcard["preprocessing"] == fcard["preprocessing"]
    assert qcard["inputs"] == fcard["inputs"] and qcard["quantization"]["size_ratio"] == int8["size_ratio"]
    assert qcard["metrics"]["onnx"]["accuracy"] == int8["metrics_quantized"]["accuracy"]
    assert fcard["sha256"] == sha256(run_dir / "model.onnx")  # the fp32 card still describes the fp32 file
    assert fcard["quantized"]["int8"]["speedup"] == int8["speedup"]
    assert fcard["quantized"]["int8"]["target"] == target
    labels = OnnxModel(run_dir / "model.int8.onnx").predict_labels(trained.data.x_test[:3])  # finds its card
    assert all(label in fcard["class_names"] for label in labels)
    line = format_summary(int8)
    assert line.startswith("int8: model.int8.onnx") and f"{int8['size_ratio']:.2f}x smaller" in line
    assert "target" in line


# --- fp16 -----------------------------------------------------------------------------------------------------


def test_fp16_keeps_float32_io_and_matches(trained):
    d, run_dir = trained.data, trained.run_dir
    summary = quantize_run(run_dir, "fp16")
    path = run_dir / "model.fp16.onnx"
    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT, value.name
    floats = [i for i in model.graph.initializer
              if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) and np.prod(i.dims) > 1]
    assert floats and all(i.data_type == onnx.TensorProto.FLOAT16 for i in floats)
    y32 = OnnxModel(run_dir / "model.onnx", card={}).predict(d.x_test)
    y16 = OnnxModel(path, card={}).predict(d.x_test)  # float32 arrays in, float32 out
    assert y16.dtype == np.float32
    np.testing.assert_allclose(y16, y32, atol=1e-2)
    assert summary["size_ratio"] > 1.8 and summary["target"] is None
    assert summary["keep_io_types"] is True
    assert summary["max_abs_diff"] == pytest.approx(float(np.max(np.abs(y16 - y32))), abs=1e-6)
    fcard = json.loads((run_dir / "card.json").read_text())
    assert "fp16" in fcard["quantized"]


# --- errors and atomic writes ---------------------------------------------------------------------------------


def test_int8_without_calibration_says_where_it_comes_from(trained, tmp_path):
    with pytest.raises(ValueError, match=r"calibration data.*quantization_data\.npz"):
        quantize_onnx(trained.run_dir / "model.onnx", tmp_path / "q.onnx", "int8")
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "model.onnx").write_bytes((trained.run_dir / "model.onnx").read_bytes())
    with pytest.raises(ValueError, match=r"quantization_data\.npz.*--calibration FILE\.npy"):
        quantize_run(lone, "int8")
    assert sorted(p.name for p in lone.iterdir()) == ["model.onnx"]
    with pytest.raises(ValueError, match=r"Unknown quantisation mode 'int4'; expected one of int8, fp16"):
        quantize_onnx(trained.run_dir / "model.onnx", tmp_path / "q.onnx", "int4", calibration=np.zeros((1, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"must have shape \(batch, 8, 8, 1\); received \(4, 64\)"):
        quantize_onnx(trained.run_dir / "model.onnx", tmp_path / "q.onnx", "int8", np.zeros((4, 64), "float32"))
    bad = np.full((4, 8, 8, 1), np.nan, "float32")
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize_onnx(trained.run_dir / "model.onnx", tmp_path / "q.onnx", "int8", bad)
    assert not (tmp_path / "q.onnx").exists()


def test_calibration_file_without_run_data(trained, tmp_path):
    """A bare model.onnx with --calibration X.npy: quantised and timed; no test split, so the target says so."""
    (tmp_path / "model.onnx").write_bytes((trained.run_dir / "model.onnx").read_bytes())
    np.save(tmp_path / "x.npy", trained.data.x_train[:64])
    summary = quantize_run(tmp_path / "model.onnx", "int8", calibration=tmp_path / "x.npy")
    assert summary["calibration_rows"] == 64 and summary["calibration_source"] == "x.npy"
    assert summary["metrics_quantized"] is None and summary["accuracy_drop_points"] is None
    assert summary["target"]["met"] is False and "no test-split accuracy" in summary["target"]["why"]
    assert "not found" in summary["note"]
    assert (tmp_path / "model.int8.onnx").is_file() and (tmp_path / "model.int8.card.json").is_file()


@pytest.mark.parametrize("mode, target, error", [
    ("int8", "onnxruntime.quantization.quantize_static", OSError(28, "No space left on device")),
    ("fp16", "onnxruntime.transformers.float16.convert_float_to_float16", KeyboardInterrupt()),
])
def test_failed_quantisation_leaves_nothing_at_the_output(trained, tmp_path, monkeypatch, mode, target, error):
    import importlib

    module, name = target.rsplit(".", 1)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(importlib.import_module(module), name, fail)
    out = tmp_path / "model.q.onnx"
    out.write_bytes(b"stale file from an earlier run")
    with pytest.raises(type(error)):
        quantize_onnx(trained.run_dir / "model.onnx", out, mode, calibration=trained.data.x_train[:32])
    assert list(tmp_path.iterdir()) == []  # neither the stale file nor a temporary folder is left


def test_multi_input_model_with_list_calibration(tmp_path):
    """A two-input graph (made with onnx.helper) quantises from a list of calibration arrays."""
    rng = np.random.default_rng(0)
    wa, wb = rng.standard_normal((6, 16)).astype("float32"), rng.standard_normal((4, 16)).astype("float32")
    h = onnx.helper
    graph = h.make_graph(
        [h.make_node("MatMul", ["a", "wa"], ["ha"]), h.make_node("MatMul", ["b", "wb"], ["hb"]),
         h.make_node("Add", ["ha", "hb"], ["s"]), h.make_node("Relu", ["s"], ["y"])],
        "two_inputs",
        [h.make_tensor_value_info("a", onnx.TensorProto.FLOAT, ["n", 6]),
         h.make_tensor_value_info("b", onnx.TensorProto.FLOAT, ["n", 4])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 16])],
        [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(wb, "wb")])
    src = tmp_path / "two.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(src))
    xa, xb = rng.standard_normal((100, 6)).astype("float32"), rng.standard_normal((100, 4)).astype("float32")
    info = quantize_onnx(src, tmp_path / "two.int8.onnx", "int8", [xa, xb], calibration_rows=50)
    assert info["calibration_rows"] == 50
    # The file's arithmetic as written (QuantizeLinear / DequantizeLinear around float ops), on the rows it was
    # calibrated on: what the calibration decided. (onnxruntime 1.31-1.32's fused int8 kernels - QLinearMatMul +
    # QLinearAdd - were measured off by 1.85 at one element of this graph on an AVX2 CPU, 0.10 as written.)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(str(tmp_path / "two.int8.onnx"), options, providers=["CPUExecutionProvider"])
    y = session.run(None, {"a": xa[:50], "b": xb[:50]})[0]
    expected = np.maximum(xa[:50] @ wa + xb[:50] @ wb, 0)
    assert np.max(np.abs(y - expected)) < 0.03 * np.max(np.abs(expected))
    with pytest.raises(ValueError, match=r"one array per model input \(2: a, b\); received 1"):
        quantize_onnx(src, tmp_path / "x.onnx", "int8", xa)


def test_command_line_hook(trained, tmp_path, capsys):
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--quantize", "int8"])
    args.model, args.output = str(trained.run_dir / "model.keras"), None
    assert command(args) == 0
    assert capsys.readouterr().out.startswith("int8: model.int8.onnx")
    (tmp_path / "model.onnx").write_bytes((trained.run_dir / "model.onnx").read_bytes())
    assert command(args, onnx_path=tmp_path / "model.onnx") == 2  # no calibration rows there: bad input
    assert "--calibration FILE.npy" in capsys.readouterr().err
    assert command(parser.parse_args([])) == 0  # no --quantize: nothing to do


def test_calibration_files_npy_and_runner_npz(tmp_path):
    """--calibration takes a .npy, or an .npz such as a run folder's quantization_data.npz (one input: x_train)."""
    from kerastk.deploy.quantize import _load_calibration

    x = np.arange(12, dtype="float32").reshape(4, 3)
    np.save(tmp_path / "rows.npy", x)
    np.savez(tmp_path / "single.npz", x_train=x, x_test=x[:2], y_test=np.zeros(2))
    np.savez(tmp_path / "multi.npz", x_train_0=x, x_train_1=x[:, :2])
    np.savez(tmp_path / "plain.npz", x)
    assert np.array_equal(_load_calibration(tmp_path / "rows.npy")[0], x)
    assert np.array_equal(_load_calibration(tmp_path / "single.npz")[0], x)
    multi = _load_calibration(tmp_path / "multi.npz")[0]
    assert [a.shape for a in multi] == [(4, 3), (4, 2)]
    assert np.array_equal(_load_calibration(tmp_path / "plain.npz")[0][0], x)
