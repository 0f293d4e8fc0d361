import json
import os

import keras
import numpy as np
import pytest

import kerastk
from kerastk.cli import main as cli
from kerastk.deploy import ExportError, export_onnx, validate_onnx
from kerastk.deploy import export as export_module

# Stock keras.applications CNNs (weights=None: nothing to download), small inputs to keep the suite quick.
# On the JAX route max pooling exports a MaxPool onnxruntime rejects (ResNet50: kerastk rewrites the node); on
# the TensorFlow route EfficientNet's normalisation constants become graph inputs (kerastk falls back).
APPLICATIONS = {
    "MobileNetV2": lambda: keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None,
                                                          classes=10),
    "ResNet50": lambda: keras.applications.ResNet50(input_shape=(64, 64, 3), weights=None, classes=10),
    "EfficientNetB0": lambda: keras.applications.EfficientNetB0(input_shape=(64, 64, 3), weights=None,
                                                                classes=10),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_applications_export_and_validate(name, tmp_path, backend):
    model = APPLICATIONS[name]()
    x = np.random.default_rng(0).uniform(0, 255, (8, *model.input_shape[1:])).astype("float32")
    # optimize=False: each backend's own exporter first (the fallbacks depend on them working)
    result = export_onnx(model, tmp_path / f"{name}.onnx", inputs=x, optimize=False)
    assert result.validation.passed and result.validation.max_abs_diff <= 1e-4
    assert result.validation.argmax_agreement in (1.0, None)  # None: every row a tie (untrained softmax)
    assert result.route in ("tensorflow", "jax", "torch") and result.backend == backend
    if result.route != backend:  # a fallback: the native attempt is recorded with why it was not used
        assert result.attempts[0]["route"] == backend


def _two_models():
    keras.utils.set_random_seed(0)
    a = kerastk.create_model("mlp", input_shape=(6,), num_classes=4, depth=1, width=8)
    b = kerastk.create_model("mlp", input_shape=(6,), num_classes=4, depth=1, width=8)
    return a, b


def test_failed_validation_leaves_no_file_and_reports_figures(tmp_path, monkeypatch, backend):
    model, other = _two_models()
    out = tmp_path / "model.onnx"
    out.write_bytes(b"stale export from an earlier run")
    real = export_module.export_native
    # The exporter "succeeds" but writes a different network: validation must catch it.
    monkeypatch.setattr(export_module, "export_native", lambda m, p, opset=None: real(other, p, opset))
    with pytest.raises(ExportError, match=r"max abs diff") as info:
        export_onnx(model, out, route=backend)
    assert not out.exists(), "a file that failed validation (or a stale one) must not be left as the output"
    assert not list(tmp_path.glob(".kerastk-export-*"))
    figures = info.value.attempts[0]["validation"]
    assert figures["passed"] is False and figures["max_abs_diff"] > 1e-4


def test_native_failure_falls_back_to_another_backend_in_a_subprocess(tmp_path, monkeypatch, backend):
    model, _ = _two_models()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated exporter failure")

    monkeypatch.setattr(export_module, "export_native", broken)
    result = export_onnx(model, tmp_path / "m.onnx", optimize=False)
    assert result.route != backend and result.validation.passed
    assert result.attempts[0].to_dict() == {"route": backend, "seconds": result.attempts[0]["seconds"],
                                  "error": "RuntimeError: simulated exporter failure"}


def test_export_from_keras_path_and_validate_cli(tmp_path, backend):
    model, _ = _two_models()
    model.save(tmp_path / "net.keras")
    assert cli(["export", str(tmp_path / "net.keras")]) == 0
    card = json.loads((tmp_path / "net.card.json").read_text())
    assert card["parity"]["passed"] and card["inputs"][0]["shape"] == [None, 6]
    assert cli(["validate", str(tmp_path / "net.onnx"), "--keras", str(tmp_path / "net.keras")]) == 0
    report = validate_onnx(tmp_path / "net.onnx", tmp_path / "net.keras", batch_sizes=(1, 5))
    assert report.passed and report.batch_sizes == (1, 5) and report.argmax_agreement in (1.0, None)


def test_validate_cli_fails_on_a_different_model(tmp_path):
    model, other = _two_models()
    export_onnx(model, tmp_path / "a.onnx")
    other.save(tmp_path / "b.keras")
    assert cli(["validate", str(tmp_path / "a.onnx"), "--keras", str(tmp_path / "b.keras")]) == 1
    report = validate_onnx(tmp_path / "a.onnx", other)
    assert not report.passed and report.max_abs_diff > 1e-4


def test_export_cli_exit_code_and_message_for_missing_file(tmp_path, capsys):
    assert cli(["export", str(tmp_path / "missing.keras")]) == 2  # bad input (kerastk.cli exit-status rule)
    assert "No Keras model" in capsys.readouterr().err


def test_export_rejects_bad_arguments(tmp_path):
    model, _ = _two_models()
    with pytest.raises(ValueError, match="Unknown export route 'onnx'"):
        export_onnx(model, tmp_path / "m.onnx", route="onnx")
    with pytest.raises(TypeError, match="keras.Model"):
        export_onnx(object(), tmp_path / "m.onnx")


# Native on JAX (fast): all three ranks; elsewhere the JAX route runs in a subprocess, so one rank is enough.
POOL_LAYERS = ["MaxPooling1D", "MaxPooling2D", "MaxPooling3D"] if os.environ.get("KERAS_BACKEND") == "jax" \
    else ["MaxPooling2D"]


@pytest.mark.parametrize("layer", POOL_LAYERS)
def test_jax_route_max_pooling_is_rewritten_and_runs(layer, tmp_path):
    shape = {"MaxPooling1D": (9, 3), "MaxPooling2D": (9, 9, 3), "MaxPooling3D": (6, 6, 6, 2)}[layer]
    inputs = keras.Input(shape)
    x = getattr(keras.layers, layer)(2)(inputs)
    x = getattr(keras.layers, layer)(3, strides=2, padding="same")(x)
    result = export_onnx(keras.Model(inputs, x), tmp_path / "pool.onnx", route="jax")
    assert result.route == "jax" and result.validation.passed and result.validation.max_abs_diff == 0.0
    assert "rewrote 2 channels-last MaxPool node(s) as channels-first MaxPool" in result.attempts[-1]["graph_fixes"]


def test_erfc_nodes_are_rewritten_as_one_minus_erf(tmp_path):
    """tf2onnx writes exact GELU's erfc as an `Erfc` node (no such ONNX operator); the fix makes it 1 - Erf."""
    import math

    import onnx
    from onnx import TensorProto, helper

    from kerastk.deploy.onnx_fixes import apply_fixes
    from kerastk.deploy.validate import make_session

    graph = helper.make_graph([helper.make_node("Erfc", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])])
    path = tmp_path / "erfc.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), path)
    assert apply_fixes(path, "tensorflow") == ["rewrote 1 Erfc node(s) as 1 - Erf"]
    x = np.array([[-2.0, 0.0, 0.7], [1.5, 3.0, -0.3]], dtype=np.float32)
    y = make_session(path).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, np.vectorize(math.erfc)(x), atol=1e-6)
    assert [n.op_type for n in onnx.load(path).graph.node] == ["Erf", "Sub"]


def _small_cnn():
    keras.utils.set_random_seed(0)
    return kerastk.create_model("mobilenet", input_shape=(32, 32, 3), num_classes=5, alpha=0.25)


def test_optimized_export_takes_the_tensorflow_route_from_any_backend(tmp_path, backend):
    """The default export ships TensorFlow's graph whatever trained the model, after onnxruntime's offline
    optimisation, and the card records route, node / Transpose counts and the measured latency."""
    from kerastk.deploy import write_card

    model = _small_cnn()
    result = export_onnx(model, tmp_path / "model.onnx")
    assert result.route == "tensorflow" and result.optimize == "rule" and result.validation.passed
    graph = result.graph
    assert graph["transposes"] <= 1 and graph["nodes"] <= graph["exported"]["nodes"]
    assert "basic level" in graph["optimizer"] and graph["latency_ms_batch1"] > 0
    card = json.loads(write_card(tmp_path / "model.onnx", name="m", export_result=result).read_text())
    assert card["graph"]["route"] == "tensorflow" and card["graph"]["nodes"] == graph["nodes"]
    assert card["optimize"] == "rule"


@pytest.mark.backend_independent  # the JAX route's file (in a subprocess unless JAX is active) is the same from any backend
def test_offline_optimisation_shrinks_a_jax_route_graph(tmp_path):
    model = _small_cnn()
    result = export_onnx(model, tmp_path / "jax.onnx", route="jax")
    graph = result.graph
    assert result.route == "jax" and result.validation.passed
    # jax2onnx writes a Transpose pair around every convolution; the basic level removes most of them
    assert graph["exported"]["transposes"] >= 20 and graph["transposes"] <= graph["exported"]["transposes"] // 5
    assert graph["nodes"] < graph["exported"]["nodes"] // 2


@pytest.mark.slow
@pytest.mark.backend_independent  # every route's file and its timing: the same matrix from any training backend
def test_measured_export_ships_the_fastest_route(tmp_path):
    model = _small_cnn()
    result = export_onnx(model, tmp_path / "model.onnx", optimize="measure")
    timed = {a["route"]: a["graph"]["latency_ms_batch1"] for a in result.attempts if "graph" in a}
    assert set(timed) == {"tensorflow", "jax", "torch"}
    assert result.route == min(timed, key=timed.get) and result.optimize == "measure"
    assert result.graph["latency_ms_batch1"] == timed[result.route]


def test_export_rejects_bad_optimize_value(tmp_path):
    model, _ = _two_models()
    with pytest.raises(ValueError, match="optimize must be True, False, 'rule' or 'measure'; received 'fast'"):
        export_onnx(model, tmp_path / "m.onnx", optimize="fast")


def test_argmax_ties_are_left_out_of_the_agreement(tmp_path):
    """Rows whose two best scores are closer than twice the tolerance may be ordered either way by a file that
    meets the criterion: they are counted, not failed. When every row is such a tie (here: all scores equal for
    every input), nothing decides: the verdict is undecided, never passed (tests/test_parity.py)."""
    inputs = keras.Input((3,))
    tied = keras.layers.Dense(4, kernel_initializer="zeros", bias_initializer="zeros")(inputs)  # all scores equal
    with pytest.warns(UserWarning, match="UNDECIDED"):
        result = export_onnx(keras.Model(inputs, tied), tmp_path / "t.onnx", optimize=False)
    report = result.validation
    assert report.verdict == "undecided" and not report.passed
    assert report.argmax_ties == 1 + 8 and report.argmax_agreement is None
    assert "9 tied rows left out" in str(report)


def test_tf2onnx_optimiser_failure_redoes_the_conversion_with_tf2onnx_copying_path(tmp_path, backend, monkeypatch):
    """The TensorFlow route runs tf2onnx's optimisers on the graph itself; when one fails the conversion is redone
    with tf2onnx's own path (which skips the failing optimiser), and the file still validates."""
    if backend != "tensorflow":
        pytest.skip("the TensorFlow route runs in this process on the TensorFlow backend only")
    import keras
    from tf2onnx.optimizer import identity_optimizer

    from kerastk.deploy import export_onnx

    calls = []

    def broken(self, graph):
        calls.append(1)
        raise RuntimeError("optimiser broken for the test")

    monkeypatch.setattr(identity_optimizer.IdentityOptimizer, "_optimize", broken)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)])
    result = export_onnx(model, tmp_path / "m.onnx", optimize=False)
    assert result.route == "tensorflow" and result.validation.verdict == "passed"
    assert len(calls) >= 2  # once on the graph itself, then again on tf2onnx's copy (where it is skipped)
