import numpy as np

import kerastk
from kerastk.cli import main as cli
from kerastk.deploy import export_onnx, write_card


def test_info_names_backend_versions_and_how_to_switch(capsys, backend):
    assert cli(["info"]) == 0
    out = capsys.readouterr().out
    assert f"active backend : {backend}" in out
    for word in ("keras", "onnxruntime", "onnx", "KERAS_BACKEND=jax kerastk info"):
        assert word in out
    assert {"tensorflow": "tf2onnx", "jax": "jax2onnx", "torch": "onnxscript"}[backend] in out


def test_models_lists_registry(capsys):
    assert cli(["models", "l*"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[1:]] == kerastk.list_models("l*")
    assert lines[0].split()[:3] == ["name", "params", "mult-adds"]
    assert "44.43 k" in lines[1] and "28x28x1" in lines[1]  # lenet5's reference count and input


def test_models_measure_counts_parameters_and_macs(capsys):
    assert cli(["models", "lenet5", "--measure"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[1]
    macs = kerastk.count_flops(kerastk.create_model("lenet5"))
    # c1: 24*24*150, c3: 8*8*2400, f5-f7: 256*120 + 120*84 + 84*10
    assert macs == 24 * 24 * 150 + 8 * 8 * 2400 + 256 * 120 + 120 * 84 + 84 * 10
    assert "44.43 k" in row and f"{macs / 1e3:.2f} k" in row


def test_predict_prints_labels_and_saves_outputs(tmp_path, capsys):
    model = kerastk.create_model("logistic_regression", input_shape=(4,), num_classes=3)
    result = export_onnx(model, tmp_path / "model.onnx")
    write_card(tmp_path / "model.onnx", name="t", export_result=result, class_names=["x", "y", "z"])
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert cli(["predict", str(tmp_path / "model.onnx"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = np.argmax(model.predict(x, verbose=0), axis=-1)
    assert [line.split("\t")[0] for line in lines] == [["x", "y", "z"][i] for i in expected]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0), atol=1e-5)


def test_predict_reports_bad_input(tmp_path, capsys):
    model = kerastk.create_model("logistic_regression", input_shape=(4,), num_classes=3)
    export_onnx(model, tmp_path / "model.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 7), np.float32))
    assert cli(["predict", str(tmp_path / "model.onnx"), str(tmp_path / "x.npy")]) == 2
    assert "shape (batch, 4); received (2, 7)" in capsys.readouterr().err
