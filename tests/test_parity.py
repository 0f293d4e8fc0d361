"""The proof must be able to fail: mutants of genuine exports (a kernel scaled by 1.01 at the first, middle and
last layer, a bias shifted, two output channels swapped; tests/mutants.py) fail validation, the genuine file
passes, and a check that cannot decide says "undecided" - under the backend this process runs (its own route).

Models, one per family: a 1000-class CNN (ResNet-18; its softmax values are all near 1e-3), a depthwise CNN
(MobileNet, 1000 classes: untrained, its softmax is uniform to float32 precision, so only the logits decide), a
recurrent model, a Transformer, a segmentation model and the detector."""
import json

import keras
import numpy as np
import pytest

import kerastk
from kerastk.cli import main as cli
from kerastk.deploy import export_onnx, validate_onnx
from kerastk.deploy.validate import ParityCheck
from tests.mutants import write_mutants

MODELS = {
    "resnet18_1000": ("resnet18", {"input_shape": (32, 32, 3), "num_classes": 1000}),
    "mobilenet_1000": ("mobilenet", {"input_shape": (32, 32, 3), "num_classes": 1000, "alpha": 0.25}),
    "gru_classifier": ("gru_classifier", None),
    "transformer_classifier": ("transformer_classifier", None),
    "unet": ("unet", None),
    "tiny_yolo": ("tiny_yolo", None),
}


@pytest.mark.parametrize("key", sorted(MODELS))
def test_every_mutant_fails_and_the_genuine_file_passes(key, tmp_path, backend):
    name, kwargs = MODELS[key]
    keras.utils.set_random_seed(0)
    model = kerastk.create_model(name, **(kwargs if kwargs is not None else kerastk.model_info(name)["test_kwargs"]))
    path = tmp_path / "model.onnx"
    # TensorFlow: the shipped path (its route + offline optimisation); JAX and torch: their own exporter first
    result = export_onnx(model, path, optimize=backend == "tensorflow")
    genuine = result.validation
    assert genuine.verdict == "passed" and genuine.passed, str(genuine)
    assert genuine.max_rel_diff <= 1e-4 and all(o["verdict"] in ("passed", "undecided") for o in genuine.outputs)
    check = ParityCheck(model)
    again = check.check(path)
    assert again.verdict == "passed" and again.max_rel_diff <= 1e-4, str(again)
    files = write_mutants(path, tmp_path)
    assert len(files) == 5, sorted(files)
    survivors = {}
    for what, mutant in files.items():
        report = check.check(mutant)
        if report.verdict != "failed":
            survivors[what] = str(report)
    assert not survivors, f"{key} ({result.route} route): mutants not caught: {json.dumps(survivors, indent=1)}"


def test_uniform_softmax_is_decided_by_its_logits(tmp_path):
    """MobileNet untrained at 1000 classes: every probability is 1e-3 (the output alone is undecided); the logits
    before the softmax decide, and are recorded per output in the report."""
    keras.utils.set_random_seed(0)
    model = kerastk.create_model("mobilenet", input_shape=(32, 32, 3), num_classes=1000, alpha=0.25)
    export_onnx(model, tmp_path / "m.onnx", optimize=False)
    report = validate_onnx(tmp_path / "m.onnx", model)
    by_kind = {o["kind"]: o for o in report.outputs}
    assert by_kind["output"]["verdict"] == "undecided" and by_kind["output"]["shape"] == [8, 1000]
    assert by_kind["logits"]["verdict"] == "passed" and by_kind["logits"]["max_rel_diff"] <= 1e-4
    assert report.verdict == "passed"
    assert {"name", "shape", "max_abs_diff", "max_rel_diff", "criterion", "verdict"} <= set(by_kind["logits"])


def test_a_model_whose_output_ignores_its_input_is_undecided(tmp_path, capsys):
    """All-zero weights: every row gives the same scores. Nothing differs, and nothing can: undecided, never
    passed; the CLI exits 3; export ships the file with a warning saying so."""
    inputs = keras.Input((3,))
    tied = keras.layers.Dense(4, kernel_initializer="zeros", bias_initializer="zeros")(inputs)
    model = keras.Model(inputs, tied)
    with pytest.warns(UserWarning, match="UNDECIDED"):
        result = export_onnx(model, tmp_path / "t.onnx", optimize=False)
    report = result.validation
    assert report.verdict == "undecided" and not report.passed and report.argmax_agreement is None
    assert report.argmax_ties == 1 + 8 and report.outputs[0]["verdict"] == "undecided"
    assert str(report).startswith("UNDECIDED") and "nothing could decide" in str(report)
    model.save(tmp_path / "t.keras")
    assert cli(["validate", str(tmp_path / "t.onnx"), "--keras", str(tmp_path / "t.keras")]) == 3
    assert "UNDECIDED" in capsys.readouterr().out


def test_tolerance_follows_the_values():
    """An output near 35 that differs by 1.6e-4 (5e-6 relative) passes; a softmax near 1e-3 that differs by 1e-5
    (1%) fails - a fixed atol of 1e-4 got both wrong."""
    from kerastk.deploy.parity import compare_tensor

    rng = np.random.default_rng(0)
    big = 35 + rng.standard_normal((8, 4))
    assert compare_tensor("y", "output", [big], [big + 1.6e-4]).verdict == "passed"
    probs = np.full((8, 1000), 1e-3) + 1e-6 * rng.standard_normal((8, 1000))
    shifted = probs.copy()
    shifted[:, 0] += 1e-5
    assert compare_tensor("p", "output", [probs], [shifted]).verdict == "failed"
    assert compare_tensor("p", "output", [probs], [probs]).verdict == "passed"
    ints = np.arange(16).reshape(8, 2)
    assert compare_tensor("i", "output", [ints], [ints + (ints == 3)]).verdict == "failed"
