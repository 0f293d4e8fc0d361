import json
import subprocess
import sys

import numpy as np
import pytest

import kerastk
from kerastk.deploy import OnnxModel, export_onnx, write_card


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runtime")
    model = kerastk.create_model("logistic_regression", input_shape=(4,), num_classes=3)
    result = export_onnx(model, tmp / "model.onnx")
    write_card(tmp / "model.onnx", name="iris", export_result=result, class_names=["a", "b", "c"],
               preprocessing={"type": "scale", "factor": 0.5}, task="classification")
    return model, tmp / "model.onnx"


def test_importing_the_runtime_does_not_import_keras_or_a_backend(exported):
    _, path = exported
    code = (
        "import sys, numpy as np\n"
        "from kerastk.deploy import OnnxModel\n"
        f"m = OnnxModel({str(path)!r})\n"
        "y = m.predict(np.zeros((2, 4), np.float32))\n"
        "bad = [n for n in ('keras', 'tensorflow', 'jax', 'torch') if n in sys.modules]\n"
        "print(y.shape, bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(2, 3) []"


def test_predict_matches_keras_and_uses_card(exported):
    model, path = exported
    m = OnnxModel(path)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x), model.predict(x, verbose=0), atol=1e-5)
    assert m.card["route"] and m.class_names == ["a", "b", "c"]
    assert set(m.predict_labels(x)) <= {"a", "b", "c"}
    np.testing.assert_allclose(m.preprocess(np.full((1, 4), 4.0)), np.full((1, 4), 2.0))


@pytest.mark.parametrize(
    "x, pattern",
    [
        (np.zeros((2, 5), np.float32), r"shape \(batch, 4\); received \(2, 5\)"),
        (np.zeros((4,), np.float32), r"rank 2.*received rank 1"),
        (np.zeros((2, 4), np.float64), r"dtype float32; received float64"),
        ([[0.0] * 4], r"numpy array"),
    ],
)
def test_bad_inputs_are_value_errors_naming_expected_and_received(exported, x, pattern):
    with pytest.raises(ValueError, match=pattern):
        OnnxModel(exported[1]).predict(x)


def test_missing_and_corrupt_files(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match="No ONNX model"):
        OnnxModel(tmp_path / "nope.onnx")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        OnnxModel(bad)
    (tmp_path / "card.json").write_text("{broken")
    good = tmp_path / "good"
    good.mkdir()
    (good / "model.onnx").write_bytes(exported[1].read_bytes())
    (good / "card.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        OnnxModel(good / "model.onnx")


def test_card_records_io_parity_and_sha(exported):
    import hashlib

    _, path = exported
    card = json.loads((path.parent / "card.json").read_text())
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["inputs"][0]["shape"] == [None, 4] and card["inputs"][0]["dtype"] == "float32"
    assert card["outputs"][0]["shape"] == [None, 3]
    assert card["parity"]["passed"] and card["parity"]["max_abs_diff"] <= 1e-4
    assert card["opset"] >= 13 and card["route"] in ("tensorflow", "jax", "torch")
