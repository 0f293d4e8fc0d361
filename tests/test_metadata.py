"""Self-describing ONNX files (kerastk.deploy.metadata): Keras's input/output names on every route, only the opset
domains the graph uses, producer kerastk, the card's essentials in metadata_props; OnnxModel and the server
working from the file alone, the card winning (with a warning) when it disagrees, dict feeds by input name."""
import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

import kerastk
from kerastk.deploy import OnnxModel, export_onnx, metadata, write_card
from kerastk.deploy.card import sha256
from kerastk.deploy.feeds import input_names, output_names

CLASSES = ["ant", "bee", "cow"]
PREP = {"type": "scale", "factor": 0.5}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One small MLP exported through the active backend's own route (so the three backends' runs cover the three
    routes), optimised (the default), with its card."""
    import keras

    tmp = tmp_path_factory.mktemp("metadata")
    model = kerastk.create_model("mlp", input_shape=(6,), num_classes=3, depth=1, width=8)
    result = export_onnx(model, tmp / "model.onnx", route=keras.backend.backend())
    card_path = write_card(tmp / "model.onnx", name="tiny_mlp", export_result=result, class_names=CLASSES,
                           preprocessing=PREP, task="classification")
    return model, result, tmp / "model.onnx", card_path


def _x(rows=5, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, 6)).astype(np.float32)


def _bare(tmp_path, path):
    """The ONNX file alone in a folder of its own (no card beside it)."""
    (tmp_path / "alone").mkdir()
    shutil.copy(path, tmp_path / "alone" / "model.onnx")
    return tmp_path / "alone" / "model.onnx"


# --- the exported file -----------------------------------------------------------------------------------------

def test_graph_inputs_and_outputs_carry_the_keras_names(exported):
    model, result, path, _ = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == input_names(model) == ["features"]
    assert [o.name for o in proto.graph.output] == output_names(model) == ["predictions"]
    assert result.graph.get("optimizer", "").startswith("onnxruntime")  # the optimised file was finalised too
    # every reference follows the rename: the output is produced by a node, the input feeds one
    assert any("predictions" in n.output for n in proto.graph.node)
    assert any("features" in n.input for n in proto.graph.node)
    # and the file still computes the Keras model's outputs (positions kept)
    x = _x(4)
    np.testing.assert_allclose(OnnxModel(path).predict(x), model.predict(x, verbose=0), atol=1e-5)


def test_opset_imports_are_the_domains_used_and_producer_is_kerastk(exported):
    _, result, path, _ = exported
    proto = onnx.load(str(path))
    used = {n.domain for n in proto.graph.node} | {""}
    listed = {o.domain for o in proto.opset_import}
    assert listed == used == {""}, (listed, used)  # no ai.onnx.training, com.microsoft.nchwc, ...
    assert proto.producer_name == "kerastk" and proto.producer_version == kerastk.__version__
    assert result.opset == next(o.version for o in proto.opset_import if o.domain == "")


def test_metadata_props_hold_the_card_essentials(exported):
    _, result, path, card_path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["kerastk.task"] == "classification"
    assert json.loads(props["kerastk.class_names"]) == CLASSES
    assert json.loads(props["kerastk.preprocessing"]) == PREP
    assert json.loads(props["kerastk.input_layout"]) == {"features": "NC"}
    assert props["kerastk.route"] == result.route and props["kerastk.backend"] == result.backend
    assert props["kerastk.opset"] == str(result.opset)
    assert props["kerastk.parity"] == "passed" and props["kerastk.version"] == kerastk.__version__
    assert json.loads(props["kerastk.parity_figures"])["max_abs_diff"] == result.validation.max_abs_diff
    assert props["kerastk.name"] == "tiny_mlp" and props["kerastk.format"] == "1"
    assert props["kerastk.exporter"].split()[0] in ("tf2onnx", "jax2onnx", "pytorch")
    assert "None" not in props["kerastk.exporter"].split()
    # read() decodes the same values without onnx (wire format), and the card's sha256 is the final file's
    meta = metadata.read(path)
    assert meta["class_names"] == CLASSES and meta["opset"] == result.opset and meta["preprocessing"] == PREP
    card = json.loads(card_path.read_text())
    assert card["sha256"] == sha256(path) and card["input_layout"] == {"features": "NC"}
    assert card["versions"]["kerastk"] == kerastk.__version__
    assert metadata.differences(card, meta) == []


def test_writing_the_card_again_replaces_the_metadata_and_keeps_the_graph(exported, tmp_path):
    _, result, path, _ = exported
    copy = tmp_path / "model.onnx"
    shutil.copy(path, copy)
    graph_before = onnx.load(str(copy)).graph.SerializeToString()
    write_card(copy, name="renamed", export_result=result, class_names=["x", "y", "z"], preprocessing=PREP,
               task="classification")
    proto = onnx.load(str(copy))
    keys = [p.key for p in proto.metadata_props]
    assert len(keys) == len(set(keys))  # replaced, not appended twice
    assert metadata.read(copy)["class_names"] == ["x", "y", "z"] and metadata.read(copy)["name"] == "renamed"
    assert proto.graph.SerializeToString() == graph_before  # the validated graph's bytes are untouched
    assert json.loads((tmp_path / "card.json").read_text())["sha256"] == sha256(copy)


def test_reading_metadata_imports_neither_onnx_nor_keras(exported):
    _, _, path, _ = exported
    code = ("import sys\n"
            "from kerastk.deploy import metadata\n"
            f"m = metadata.read({str(path)!r})\n"
            "bad = [n for n in ('onnx', 'keras', 'tensorflow', 'jax', 'torch') if n in sys.modules]\n"
            "print(m['class_names'], bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['ant', 'bee', 'cow'] []"


# --- the file alone, and the card against it ----------------------------------------------------------------------

def test_onnxmodel_works_from_the_file_alone(exported, tmp_path):
    model, result, path, _ = exported
    alone = OnnxModel(_bare(tmp_path, path))
    assert alone.card == {} and alone.class_names == CLASSES and alone.task == "classification"
    assert alone.info["route"] == result.route and alone.info["parity"]["verdict"] == "passed"
    x = _x(6, seed=1)
    expected = [CLASSES[i] for i in np.argmax(model.predict(x, verbose=0), axis=-1)]
    assert alone.predict_labels(x) == expected
    np.testing.assert_allclose(alone.preprocess(np.full((2, 6), 4.0)), np.full((2, 6), 2.0))  # factor 0.5
    assert alone.preprocess(np.full((1, 6), 4.0)).dtype == np.float32


def test_multilabel_threshold_comes_from_the_metadata(exported, tmp_path):
    _, result, path, _ = exported
    write_card(_bare(tmp_path, path), name="ml", export_result=result,
               class_names=CLASSES, preprocessing=PREP, task="multilabel", extra={"decision_threshold": 0.99})
    (tmp_path / "alone" / "card.json").unlink()
    alone = OnnxModel(tmp_path / "alone" / "model.onnx")
    assert alone.task == "multilabel" and alone.info["decision_threshold"] == 0.99
    probs = alone.predict(_x(8, seed=2))
    assert alone.predict_labels(_x(8, seed=2)) == [[CLASSES[j] for j in np.flatnonzero(r > 0.99)] for r in probs]


def test_a_card_that_agrees_gives_no_warning(exported):
    _, _, path, _ = exported
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = OnnxModel(path)
    assert m.card["name"] == "tiny_mlp" and m.class_names == CLASSES


def test_a_card_that_disagrees_wins_with_a_warning_naming_the_fields(exported):
    _, _, path, card_path = exported
    card = json.loads(card_path.read_text())
    card.update(class_names=["one", "two", "three"], task="multilabel")
    with pytest.warns(UserWarning, match=r"differ in task, class_names \(task: card 'multilabel', file "
                                         r"'classification'; class_names: card \[\"one\".*the card is used"):
        m = OnnxModel(path, card=card)
    assert m.class_names == ["one", "two", "three"] and m.task == "multilabel"


def test_metadata_from_another_kerastk_version_is_named(exported, tmp_path):
    _, _, path, card_path = exported
    copy = tmp_path / "model.onnx"
    shutil.copy(path, copy)
    meta = metadata.read(copy)
    metadata.embed(copy, {**meta, "version": "0.0.1"})
    card = json.loads(card_path.read_text())
    card["sha256"] = sha256(copy)
    with pytest.warns(UserWarning, match=r"differ in version \(version: card '0\.1\.0', file '0\.0\.1'\)"):
        m = OnnxModel(copy, card=card)
    assert m.info["versions"]["kerastk"] == kerastk.__version__ and m.class_names == CLASSES


# --- dict feeds ---------------------------------------------------------------------------------------------------

def test_predict_accepts_a_dict_keyed_by_input_names(exported):
    _, _, path, _ = exported
    m = OnnxModel(path)
    x = _x(3)
    np.testing.assert_array_equal(m.predict({"features": x}), m.predict(x))
    with pytest.raises(ValueError, match=r"takes inputs \['features'\]; the dict given has missing \['features'\] "
                                         r"and unknown \['feature'\] key"):
        m.predict({"feature": x})
    with pytest.raises(ValueError, match=r"unknown \['extra'\] key"):
        m.predict({"features": x, "extra": x})


def test_dict_feed_is_matched_by_name_not_order(tmp_path):
    nodes = [helper.make_node("Sub", ["a", "b"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, T.FLOAT, ["N", 2]) for n in "ab"],
                              [helper.make_tensor_value_info("y", T.FLOAT, ["N", 2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "sub.onnx"))
    m = OnnxModel(tmp_path / "sub.onnx")
    a, b = np.ones((1, 2), np.float32), np.full((1, 2), 3.0, np.float32)
    np.testing.assert_array_equal(m.predict({"b": b, "a": a}), a - b)
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        m.predict({"a": a})


# --- the server, from the file alone ------------------------------------------------------------------------------

def test_serve_works_from_the_file_alone(exported, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from kerastk.deploy.serve import create_app

    model, result, path, _ = exported
    x = _x(4, seed=3)
    with TestClient(create_app(_bare(tmp_path, path), batching=False)) as c:
        meta = c.get("/metadata").json()
        body = c.post("/predict", json={"inputs": {"features": x.tolist()}}).json()
        raw = c.post("/predict", json={"inputs": (2 * x).tolist(), "raw": True}).json()
        bad = c.post("/predict", json={"inputs": {"feature": x.tolist()}})
    assert meta["card"] is None and "embedded in it" in meta["note"]
    assert meta["class_names"] == CLASSES and meta["preprocessing"] == PREP and meta["task"] == "classification"
    assert meta["route"] == result.route and meta["parity"]["verdict"] == "passed"
    assert meta["embedded"]["version"] == kerastk.__version__
    assert meta["name"] == "tiny_mlp"
    keras_labels = [CLASSES[i] for i in np.argmax(model.predict(x, verbose=0), axis=-1)]
    assert body["labels"] == keras_labels and raw["labels"] == keras_labels  # raw: scaled by the metadata's 0.5
    np.testing.assert_allclose(raw["outputs"], body["outputs"], rtol=1e-5, atol=1e-6)
    assert bad.status_code == 422 and "missing ['features']" in bad.json()["error"]
    assert "unknown ['feature']" in bad.json()["error"]


# --- finalize_graph on hand-made graphs ---------------------------------------------------------------------------

def _model(nodes, inputs, outputs, initializers=(), opsets=(("", 13),)):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    proto.ir_version = 8
    return proto


def test_finalize_renames_moves_colliding_names_and_prunes_domains(tmp_path):
    vi = helper.make_tensor_value_info
    # tf2onnx-style names; an internal tensor already called "out" (a wanted output name)
    nodes = [helper.make_node("Relu", ["x:0"], ["out"]), helper.make_node("Neg", ["out"], ["Identity:0"]),
             helper.make_node("Abs", ["x:0"], ["StatefulPartitionedCall/y:0"])]
    proto = _model(nodes, [vi("x:0", T.FLOAT, ["N", 2])],
                   [vi("Identity:0", T.FLOAT, ["N", 2]), vi("StatefulPartitionedCall/y:0", T.FLOAT, ["N", 2])],
                   opsets=(("", 13), ("com.microsoft.nchwc", 1), ("ai.onnx.training", 1)))
    proto.graph.value_info.append(vi("out", T.FLOAT, ["N", 2]))
    onnx.save(proto, str(tmp_path / "m.onnx"))
    x = np.array([[1.0, -2.0]], np.float32)
    before = OnnxModel(tmp_path / "m.onnx").predict(x)
    changed = metadata.finalize_graph(tmp_path / "m.onnx", ["image"], ["out", "aux"])
    done = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(done, full_check=True)
    assert [i.name for i in done.graph.input] == ["image"]
    assert [o.name for o in done.graph.output] == ["out", "aux"]
    assert [o.domain for o in done.opset_import] == [""]
    assert sorted(changed["removed_domains"]) == ["ai.onnx.training", "com.microsoft.nchwc"]
    assert done.producer_name == "kerastk"
    after = OnnxModel(tmp_path / "m.onnx").predict(x)
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(after[0], -np.maximum(x, 0))  # "out" is the Neg output, not the old "out"
    assert metadata.finalize_graph(tmp_path / "m.onnx", ["image"], ["out", "aux"])["renamed"] == {}  # idempotent


def test_finalize_gives_a_passthrough_or_repeated_output_an_identity(tmp_path):
    vi = helper.make_tensor_value_info
    proto = _model([helper.make_node("Relu", ["x"], ["r"])], [vi("x", T.FLOAT, ["N", 2])],
                   [vi("x", T.FLOAT, ["N", 2]), vi("r", T.FLOAT, ["N", 2]), vi("r", T.FLOAT, ["N", 2])])
    onnx.save(proto, str(tmp_path / "m.onnx"))
    metadata.finalize_graph(tmp_path / "m.onnx", ["inp"], ["same", "relu_a", "relu_b"])
    done = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(done, full_check=True)
    assert [i.name for i in done.graph.input] == ["inp"]
    assert [o.name for o in done.graph.output] == ["same", "relu_a", "relu_b"]
    x = np.array([[1.0, -2.0]], np.float32)
    same, a, b = OnnxModel(tmp_path / "m.onnx").predict(x)
    np.testing.assert_array_equal(same, x)
    np.testing.assert_array_equal(a, np.maximum(x, 0))
    np.testing.assert_array_equal(b, np.maximum(x, 0))


def test_names_that_do_not_fit_the_graph_are_left_alone(tmp_path):
    vi = helper.make_tensor_value_info
    proto = _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["N", 2])],
                   [vi("y", T.FLOAT, ["N", 2])])
    onnx.save(proto, str(tmp_path / "m.onnx"))
    metadata.finalize_graph(tmp_path / "m.onnx", ["a", "b"], ["z", "z"])
    done = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in done.graph.input] == ["x"] and [o.name for o in done.graph.output] == ["y"]


def test_embed_keeps_other_metadata_and_refuses_unknown_fields(tmp_path):
    vi = helper.make_tensor_value_info
    proto = _model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["N", 2])],
                   [vi("y", T.FLOAT, ["N", 2])])
    proto.metadata_props.add(key="author", value="someone")
    onnx.save(proto, str(tmp_path / "m.onnx"))
    metadata.embed(tmp_path / "m.onnx", {"task": "regression", "class_names": None, "decision_threshold": 0.25})
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props == {"author": "someone", "kerastk.task": "regression", "kerastk.decision_threshold": "0.25"}
    assert metadata.read(tmp_path / "m.onnx") == {"task": "regression", "decision_threshold": 0.25}
    with pytest.raises(ValueError, match="Unknown kerastk metadata field 'colour'"):
        metadata.embed(tmp_path / "m.onnx", {"colour": "red"})
