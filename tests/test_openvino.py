"""OpenVINO as a second runtime (kerastk.deploy.openvino): the same outputs as onnxruntime on one exported file at
batch sizes 1 and 8, onnxruntime's session interface, and clear errors for an unknown or missing runtime.

Backend-independent (marked so): both runtimes read the same file, so tests/run_all_backends.py runs these under
the first backend only.

Tolerance: |ov - ort| / (|ort| + std(ort)) <= 1e-5 (REL_TOL). Both runtimes compute in float32 with different
kernels (oneDNN vs MLAS) and summation orders; measured here (tensorflow route, random inputs, batch 1 and 8):
LeNet-5 <= 2.8e-7, the MLP (784-long dot products) <= 9.2e-7 - a few float32 epsilons (1.2e-7); over the whole
registry (kerastk bench registry-openvino) the largest is 1.6e-6 (ConvNeXt-T). 1e-5 leaves ~10x headroom here and
stays 100x below what a reduced precision gives: with OpenVINO's default CPU precision hint (bf16 on a CPU with
bf16 support) the same measure is 1.5e-3 (LeNet-5) and 4.4e-3 (MLP).
"""
import importlib.util
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.backend_independent,
              pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                 reason='openvino not installed (pip install "kerastk[openvino]")')]

REL_TOL = 1e-5
MODELS = ("lenet5", "mlp")


def relative_diff(ort: np.ndarray, ov: np.ndarray) -> float:
    """max |ov - ort| / (|ort| + std(ort)): relative, without blowing up at outputs near zero."""
    ort, ov = ort.astype(np.float64), ov.astype(np.float64)
    return float(np.max(np.abs(ov - ort) / (np.abs(ort) + np.std(ort) + 1e-30), initial=0.0))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: (model, onnx path, keras path)}: untrained registered models exported once (active backend)."""
    import kerastk
    from kerastk.deploy import export_onnx

    folder = tmp_path_factory.mktemp("openvino")
    out = {}
    for name in MODELS:
        model = kerastk.create_model(name, **kerastk.model_info(name).get("test_kwargs", {}))
        export_onnx(model, folder / f"{name}.onnx")
        model.save(folder / f"{name}.keras")
        out[name] = (model, folder / f"{name}.onnx", folder / f"{name}.keras")
    return out


def _ort(path):
    from kerastk.deploy.validate import make_session

    return make_session(path)


def _feed(session, arrays):
    return dict(zip([i.name for i in session.get_inputs()], arrays))


@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_onnxruntime_at_batch_1_and_8(exported, name):
    from kerastk.deploy.feeds import sample_inputs
    from kerastk.deploy.openvino import make_session

    model, path, _ = exported[name]
    ov, ort = make_session(path), _ort(path)
    assert ov.dynamic, "the graph's dynamic batch axis should compile as is"
    worst = {}
    for batch in (1, 8, 3):  # one session, three batch sizes
        arrays = sample_inputs(model, batch, seed=batch)
        expected, got = ort.run(None, _feed(ort, arrays)), ov.run(None, _feed(ov, arrays))
        assert len(got) == len(expected) == len(ort.get_outputs())
        for e, g in zip(expected, got):
            assert isinstance(g, np.ndarray) and g.shape == e.shape == (batch, 10) and g.dtype == e.dtype
            worst[batch] = relative_diff(e, g)
            assert np.array_equal(np.argmax(e, -1), np.argmax(g, -1))
    assert max(worst.values()) <= REL_TOL, f"{name}: relative differences by batch size {worst}"


def test_session_interface_like_onnxruntime(exported):
    from kerastk.deploy.openvino import make_session

    _, path, _ = exported["lenet5"]
    ov, ort = make_session(path), _ort(path)
    for mine, theirs in ((ov.get_inputs(), ort.get_inputs()), (ov.get_outputs(), ort.get_outputs())):
        assert [(a.name, a.shape, a.type) for a in mine] == [(a.name, a.shape, a.type) for a in theirs]
    assert ov.get_inputs()[0].type == "tensor(float)"
    x = np.random.default_rng(0).standard_normal((2, 28, 28, 1)).astype("float32")
    name = ov.get_inputs()[0].name
    by_name = ov.run([ov.get_outputs()[0].name], {name: x})
    assert len(by_name) == 1 and np.array_equal(by_name[0], ov.run(None, {name: x})[0])
    with pytest.raises(ValueError, match="do not match the model's inputs"):
        ov.run(None, {"nope": x})


def test_extra_graph_outputs_in_file_order(exported, tmp_path):
    """A file with an extra output (pre-softmax logits, listed first): outputs follow the file's graph order."""
    import onnx

    from kerastk.deploy.openvino import make_session

    _, path, _ = exported["lenet5"]
    graph = onnx.load(str(path))
    softmax = [n for n in graph.graph.node if n.op_type == "Softmax"][-1]
    graph.graph.output.insert(0, onnx.helper.make_tensor_value_info(softmax.input[0], onnx.TensorProto.FLOAT, None))
    extra = tmp_path / "with_logits.onnx"
    onnx.save(graph, str(extra))
    ov, ort = make_session(extra), _ort(extra)
    assert [o.name for o in ov.get_outputs()] == [o.name for o in ort.get_outputs()] == [
        softmax.input[0], softmax.output[0]]
    x = np.random.default_rng(1).standard_normal((8, 28, 28, 1)).astype("float32")
    expected, got = ort.run(None, _feed(ort, [x])), ov.run(None, _feed(ov, [x]))
    assert len(got) == 2
    logits, probs = got
    assert np.allclose(probs.sum(-1), 1, atol=1e-5) and not np.allclose(logits.sum(-1), 1, atol=1e-3)
    assert max(relative_diff(e, g) for e, g in zip(expected, got)) <= REL_TOL


def test_default_precision_hint_would_fail_the_tolerance(exported):
    """Why sessions ask for f32: where the CPU plugin's default is a reduced precision (bf16 on CPUs with bf16
    support), the same file differs from onnxruntime far beyond REL_TOL."""
    import openvino as ov

    from kerastk.deploy.openvino import make_session

    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    default = hint.get_type_name()  # e.g. "bf16"
    if hint == ov.Type.f32:
        pytest.skip("this CPU's default inference precision is already f32")
    _, path, _ = exported["mlp"]
    reduced, ort = make_session(path, config={"INFERENCE_PRECISION_HINT": default}), _ort(path)
    x = np.random.default_rng(2).standard_normal((8, 784)).astype("float32")
    diff = relative_diff(ort.run(None, _feed(ort, [x]))[0], reduced.run(None, _feed(reduced, [x]))[0])
    assert diff > 10 * REL_TOL, f"default hint {default}: relative difference {diff:.3g}"


def test_unknown_runtime_is_a_value_error(exported):
    from kerastk.cli import build_parser
    from kerastk.deploy.openvino import RUNTIMES, check_runtime, require_runtime

    assert RUNTIMES == ("onnxruntime", "openvino")
    assert check_runtime("openvino") == "openvino"
    for call in (check_runtime, require_runtime):
        with pytest.raises(ValueError, match=r"Unknown runtime 'tensorrt'; expected one of \['onnxruntime', "
                                             r"'openvino'\]"):
            call("tensorrt")
    with pytest.raises(SystemExit) as exit_info:  # the CLI: argparse's usage error, exit code 2
        build_parser().parse_args(["validate", "m.onnx", "--keras", "m.keras", "--runtime", "tensorrt"])
    assert exit_info.value.code == 2
    from kerastk.deploy.validate import validate_onnx

    model, path, _ = exported["lenet5"]
    with pytest.raises(ValueError, match="tensorrt"):
        validate_onnx(path, model, runtime="tensorrt")


def test_missing_openvino_names_the_extra(exported, monkeypatch, capsys):
    from kerastk import cli
    from kerastk.deploy.openvino import RuntimeNotInstalled, make_session

    _, path, keras_path = exported["lenet5"]
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(RuntimeNotInstalled, match=r'pip install "kerastk\[openvino\]"') as info:
        make_session(path)
    assert isinstance(info.value, ImportError)
    from kerastk.deploy.validate import validate_onnx

    with pytest.raises(RuntimeNotInstalled, match=r'pip install "kerastk\[openvino\]"'):  # the error, no report
        validate_onnx(path, exported["lenet5"][0], runtime="openvino")
    code = cli.main(["validate", str(path), "--keras", str(keras_path), "--runtime", "openvino"])
    err = capsys.readouterr().err
    assert code == 2
    assert 'pip install "kerastk[openvino]"' in err and "Traceback" not in err


def test_validate_onnx_in_openvino(exported, capsys):
    """End to end: the Keras model against the file in OpenVINO, logits included."""
    from kerastk import cli
    from kerastk.deploy.validate import validate_onnx

    for name in MODELS:
        model, path, keras_path = exported[name]
        report = validate_onnx(path, model, runtime="openvino")
        assert report.passed and report.max_abs_diff <= 1e-4 and report.runtime == "openvino", report
        assert [o["kind"] for o in report.outputs] == ["output", "logits"] and report.max_rel_diff <= 1e-4
    _, path, keras_path = exported["lenet5"]
    assert cli.main(["validate", str(path), "--keras", str(keras_path), "--runtime", "openvino"]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_openvino_error_is_one_line_naming_the_operation():
    """OpenVINO's conversion errors start with source locations; the session's error starts with what failed
    (validate_onnx reports an error's first line), e.g. the Loop of a TensorFlow-exported GRU."""
    from kerastk.deploy.openvino import OpenVINOError, _openvino_error

    raw = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\n"
        "Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
        "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted. Failed operations detailed log:\n"
        "-- Loop-15 with a message:\nCheck '(canonical_inputs.size() >= control_inputs_count)' failed at "
        "src/frontends/onnx/frontend/src/op/loop.cpp:310:\nWhile validating ONNX node '<Node(Loop): gru/while:0>':\n"
        "The provided loop body graph canonical inputs size (12), does not match the sum of loop carried "
        "dependencies and two mandatory inputs (8)\n\nSummary:\n-- Conversion is failed for: Loop-15\n")
    error = _openvino_error("read", "m.onnx", raw)
    assert isinstance(error, OpenVINOError) and isinstance(error, RuntimeError)
    assert "\n" not in str(error)
    assert str(error).startswith("OpenVINO cannot read 'm.onnx': Conversion is failed for: Loop-15; While "
                                 "validating ONNX node '<Node(Loop): gru/while:0>'")
    assert "canonical inputs size (12)" in str(error)
