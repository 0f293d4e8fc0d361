"""kerastk.deploy.serve: the HTTP endpoints, every bad request, batching, a real uvicorn server under load."""
import asyncio
import http.client
import io
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kerastk.cli import add_serve_arguments, cmd_serve
from kerastk.deploy.card import sha256
from kerastk.deploy.runtime import OnnxModel, card_path_for
from kerastk.deploy.serve import create_app, load_test, running_server, sample_body

W = np.array([[1.0, -1.0, 0.5], [0.5, 2.0, -1.0], [-1.0, 0.0, 1.5], [2.0, 1.0, 0.0]], np.float32)
B = np.array([0.1, -0.2, 0.3], np.float32)


def _save(path, nodes, inputs, outputs, initializers=()):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Small ONNX files made with onnx.helper: a classifier with a card, a two-input model and a
    variable-length model without cards, and a model with a fixed batch axis."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    tmp = tmp_path_factory.mktemp("serve")
    vi = helper.make_tensor_value_info
    clf = _save(tmp / "clf.onnx",
                [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["z"]),
                 helper.make_node("Softmax", ["z"], ["probs"], axis=-1)],
                [vi("x", T.FLOAT, ["N", 4])], [vi("probs", T.FLOAT, ["N", 3])],
                [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")])
    card = {"name": "toy_classifier", "file": clf.name, "sha256": sha256(clf),
            "inputs": [{"name": "x", "shape": [None, 4], "dtype": "float32"}],
            "outputs": [{"name": "probs", "shape": [None, 3], "dtype": "float32"}],
            "task": "classification", "preprocessing": {"type": "scale", "factor": 0.5},
            "class_names": ["cat", "dog", "owl"], "route": "onnx.helper",
            "parity": {"passed": True, "max_abs_diff": 0.0}, "metrics": {"onnx": {"accuracy": 0.75}}}
    card_path_for(clf).write_text(json.dumps(card))
    multi = _save(tmp / "multi.onnx",
                  [helper.make_node("MatMul", ["x", "ones"], ["a"]),
                   helper.make_node("Cast", ["ids"], ["idsf"], to=T.FLOAT),
                   helper.make_node("MatMul", ["idsf", "w2"], ["b"]), helper.make_node("Add", ["a", "b"], ["y"])],
                  [vi("x", T.FLOAT, ["N", 3]), vi("ids", T.INT64, ["N", 2])], [vi("y", T.FLOAT, ["N", 1])],
                  [numpy_helper.from_array(np.ones((3, 1), np.float32), "ones"),
                   numpy_helper.from_array(np.array([[10.0], [100.0]], np.float32), "w2")])
    seq = _save(tmp / "seq.onnx", [helper.make_node("ReduceSum", ["t", "axes"], ["total"], keepdims=1)],
                [vi("t", T.FLOAT, ["N", "L"])], [vi("total", T.FLOAT, ["N", 1])],
                [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    fixed = _save(tmp / "fixed.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                  [vi("x", T.FLOAT, [1, 4])], [vi("y", T.FLOAT, [1, 4])])
    return {"clf": clf, "multi": multi, "seq": seq, "fixed": fixed}


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models["clf"], max_batch_rows=16, max_body_bytes=4096)) as c:
        yield c


@pytest.fixture(scope="module")
def multi_client(models):
    with TestClient(create_app(models["multi"], batching=False)) as c:
        yield c


def _npy_header(shape) -> bytes:
    """Only the header of a float32 .npy array of `shape` (a body that claims far more data than it holds)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def test_serving_imports_neither_keras_nor_a_backend(models):
    code = (
        "import sys, numpy as np\n"
        "from fastapi.testclient import TestClient\n"
        "from kerastk.deploy.serve import create_app\n"
        f"r = TestClient(create_app({str(models['clf'])!r})).post('/predict', json={{'inputs': [[1, 2, 3, 4]]}})\n"
        "bad = [n for n in ('keras', 'tensorflow', 'jax', 'torch') if n in sys.modules]\n"
        "print(r.status_code, r.json()['batch_size'], bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "200 1 []"


def test_health_and_metadata_serve_the_card_and_settings(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "toy_classifier" and health["batching"] is True
    assert {"requests", "session_runs", "merged_runs", "rows"} <= set(health["stats"])
    meta = client.get("/metadata").json()
    assert meta["name"] == "toy_classifier" and meta["class_names"] == ["cat", "dog", "owl"]
    assert meta["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert meta["outputs"] == [{"name": "probs", "shape": [None, 3], "dtype": "float32"}]
    assert meta["preprocessing"] == {"type": "scale", "factor": 0.5} and meta["route"] == "onnx.helper"
    assert meta["parity"]["passed"] is True and meta["metrics"] == {"onnx": {"accuracy": 0.75}}
    assert meta["card"]["sha256"] and "note" not in meta
    assert meta["serving"]["batching"] is True and meta["serving"]["max_batch_rows"] == 16
    assert meta["serving"]["batch_wait_ms"] == 2.0 and meta["serving"]["max_body_bytes"] == 4096


def test_metadata_without_a_card_reads_the_file(multi_client):
    meta = multi_client.get("/metadata").json()
    assert meta["card"] is None and "No model card beside multi.onnx" in meta["note"]
    assert meta["name"] == "multi" and meta["class_names"] is None and meta["preprocessing"] is None
    assert [(i["name"], i["dtype"]) for i in meta["inputs"]] == [("x", "float32"), ("ids", "int64")]
    assert meta["serving"]["batching"] is False


def test_predict_json_and_npy_match_onnxmodel(client, models):
    x = _x(5)
    expected = OnnxModel(models["clf"]).predict(x)
    r = client.post("/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    np.testing.assert_allclose(np.array(body["outputs"], np.float32), expected, rtol=1e-6, atol=1e-7)
    assert body["batch_size"] == 5
    assert body["labels"] == [["cat", "dog", "owl"][i] for i in expected.argmax(-1)]
    r = client.post("/predict", content=_npy(x), headers={"content-type": "application/x-npy"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["outputs"], np.float32), expected, rtol=1e-6, atol=1e-7)
    # JSON integers are lossless for a float input
    r = client.post("/predict", json={"inputs": [[1, 2, 3, 4]]})
    np.testing.assert_allclose(r.json()["outputs"], OnnxModel(models["clf"]).predict(
        np.array([[1, 2, 3, 4]], np.float32)), rtol=1e-6)


def test_raw_inputs_get_the_card_preprocessing(client, models):
    x = _x(3, seed=1)
    expected = OnnxModel(models["clf"]).predict(x)  # the card scales raw values by 0.5
    r = client.post("/predict", json={"inputs": (2 * x).tolist(), "raw": True})
    np.testing.assert_allclose(r.json()["outputs"], expected, rtol=1e-5, atol=1e-6)
    r = client.post("/predict?raw=true", content=_npy(2 * x), headers={"content-type": "application/x-npy"})
    np.testing.assert_allclose(r.json()["outputs"], expected, rtol=1e-5, atol=1e-6)
    r = client.post("/predict", json={"inputs": (2 * x).tolist()})  # without raw: not preprocessed
    assert not np.allclose(r.json()["outputs"], expected, atol=1e-3)


def test_several_inputs_by_name_with_integer_ids(multi_client):
    r = multi_client.post("/predict", json={"inputs": {"x": [[1, 2, 3], [0, 0, 0.5]], "ids": [[1, 2], [3.0, 0]]}})
    assert r.status_code == 200, r.text
    assert r.json() == {"outputs": [[216.0], [30.5]], "batch_size": 2}  # no card: no labels


BAD = [
    # (content type, body, status, message pattern)
    ("application/json", b"{not json", 400, r"not valid JSON"),
    ("application/json", b"[[1, 2, 3, 4]]", 422, r'JSON object \{"inputs"'),
    ("application/json", b'{"x": [[1, 2, 3, 4]]}', 422, r'JSON object \{"inputs"'),
    ("application/json", b'{"inputs": [[1, 2, 3, 4]], "extra": 1}', 422, r"Unknown field.*'extra'"),
    ("application/json", b'{"inputs": [[1, 2, 3, 4]], "raw": "yes"}', 422, r'"raw" must be true or false'),
    ("application/json", b'{"inputs": [[1, 2, 3, 4, 5]]}', 400, r"shape \(batch, 4\); received \(1, 5\)"),
    ("application/json", b'{"inputs": [1, 2, 3, 4]}', 400, r"rank 2.*received rank 1"),
    ("application/json", b'{"inputs": [[1, 2, 3, 4], [1, 2]]}', 400, r"not rectangular"),
    ("application/json", b'{"inputs": [["a", "b", "c", "d"]]}', 400, r"only numbers"),
    ("application/json", b'{"inputs": [[true, false, true, true]]}', 400, r"send numbers; received true/false"),
    ("application/json", b'{"inputs": "pixels"}', 400, r"nested list of numbers"),
    ("application/json", b'{"inputs": [[1, NaN, 3, 4]]}', 400, r"NaN or infinite values"),
    ("application/json", b'{"inputs": [[1, 2, Infinity, 4]]}', 400, r"NaN or infinite"),
    ("application/json", b'{"inputs": [[1, 2, 1e39, 4]]}', 400, r"out of range for float32"),
    ("application/json", b'{"inputs": []}', 400, r"empty batch"),
    ("application/json", json.dumps({"inputs": [[0.0] * 4] * 17}).encode(), 413, r"17 rows; the limit is 16"),
    ("application/json", json.dumps({"inputs": [[0.5] * 4] * 300}).encode(), 413, r"limit is 4096"),
    ("text/plain", b"1,2,3,4", 415, r"application/json, application/x-npy; received 'text/plain'"),
    ("", b'{"inputs": [[1, 2, 3, 4]]}', 415, r"received 'none'"),
    ("application/x-npy", b"\x93NUMPY garbage", 400, r"not a valid \.npy array"),
    ("application/x-npy", _npy_header((10**6, 4)) + bytes(16), 400, r"truncated \.npy array.*shape \(1000000, 4\)"),
    ("application/x-npy", _npy(np.zeros((2, 4))), 400, r"dtype float32; received float64"),
    ("application/x-npy", _npy(np.array([[1, np.nan, 0, 0]], np.float32)), 400, r"NaN or infinite"),
    ("application/x-npy", _npy(np.zeros((0, 4), np.float32)), 400, r"empty batch"),
    ("application/x-npy", _npy(np.array([[{"a": 1}] * 4], dtype=object)), 400, r"not a valid \.npy.*pickle"),
]


@pytest.mark.parametrize("content_type, body, status, pattern", BAD)
def test_bad_requests_get_a_clear_error_and_nothing_runs(client, content_type, body, status, pattern):
    runs = client.get("/health").json()["stats"]["session_runs"]
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] and re.search(pattern, r.json()["error"]), r.json()["error"]
    assert client.get("/health").json()["stats"]["session_runs"] == runs


@pytest.mark.parametrize("payload, status, pattern", [
    ({"inputs": {"x": [[1, 2, 3]], "ids": [[1.5, 2]]}}, 400, r"'ids' has dtype int64: send integers.*1\.5"),
    ({"inputs": {"x": [[1, 2, 3]], "ids": [[1, 2]], "tokens": [[1]]}}, 422, r"every input.*\['x', 'ids'\]"),
    ({"inputs": {"x": [[1, 2, 3]]}}, 422, r"every input"),
    ({"inputs": [[1, 2, 3]]}, 422, r"takes 2 inputs"),
    ({"inputs": {"x": [[1, 2, 3]], "ids": [[1, 2], [3, 4]]}}, 400, r"same number of rows"),
    ({"inputs": {"x": [[1, 2, 3]], "ids": [[1, 2 ** 70]]}}, 400,
     r"'ids' must contain only numbers \(integers within 64 bits\); received 1180591620717411303424"),
    ({"inputs": {"x": [[1, 2, 3]], "ids": [[1, 2]]}, "raw": True}, 400, r"no card.*multi\.card\.json"),
])
def test_bad_requests_for_a_two_input_model(multi_client, payload, status, pattern):
    r = multi_client.post("/predict", json=payload)
    assert r.status_code == status, r.text
    assert re.search(pattern, r.json()["error"]), r.json()["error"]


def test_npy_body_is_refused_for_a_two_input_model(multi_client):
    r = multi_client.post("/predict", content=_npy(np.zeros((1, 3), np.float32)),
                          headers={"content-type": "application/x-npy"})
    assert r.status_code == 400 and "single-input models" in r.json()["error"]


@pytest.mark.parametrize("batching", [True, False])
def test_an_unexpected_error_is_a_500_and_the_server_keeps_serving(models, batching):
    app = create_app(models["clf"], batching=batching)
    session = app.state.model.session
    real_run, calls = session.run, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated onnxruntime failure")
        return real_run(*args, **kwargs)

    session.run = flaky
    with TestClient(app) as c:
        r = c.post("/predict", json={"inputs": [[1, 2, 3, 4]]})
        assert r.status_code == 500 and r.json()["error"] == "RuntimeError: simulated onnxruntime failure"
        r = c.post("/predict", json={"inputs": [[1, 2, 3, 4]]})
        assert r.status_code == 200 and r.json()["batch_size"] == 1
        assert c.get("/health").json()["stats"]["server_errors"] == 1


def test_batcher_merges_concurrent_requests_of_one_shape_and_splits_the_outputs(models):
    """Deterministic: six requests queued at once (lengths 5 and 7) give two merged runs, each split back."""
    app = create_app(models["seq"], batch_wait_ms=200)
    batcher, stats = app.state.batcher, app.state.stats
    rng = np.random.default_rng(0)
    feeds = [{"t": rng.standard_normal((rows, length)).astype(np.float32)}
             for rows, length in [(1, 5), (2, 7), (3, 5), (1, 7), (2, 5), (1, 7)]]

    async def main():
        return await asyncio.gather(*(batcher.submit(f, f["t"].shape[0]) for f in feeds))

    outputs = asyncio.run(main())
    for feed, (total,) in zip(feeds, outputs):
        np.testing.assert_allclose(total, feed["t"].sum(axis=1, keepdims=True), rtol=1e-5)
    assert stats.session_runs == 2 and stats.merged_runs == 2 and stats.requests == 6 and stats.rows == 10
    assert stats.largest_run_requests == 3 and stats.largest_run_rows == 6


def test_a_failed_merged_run_is_retried_request_by_request(models):
    app = create_app(models["clf"], batch_wait_ms=200)
    session = app.state.model.session
    real_run = session.run

    def no_big_batches(names, feed):
        if feed["x"].shape[0] > 1:
            raise RuntimeError("batch too big")
        return real_run(names, feed)

    session.run = no_big_batches
    feeds = [{"x": _x(1, seed=i)} for i in range(4)]

    async def main():
        return await asyncio.gather(*(app.state.batcher.submit(f, 1) for f in feeds))

    outputs = asyncio.run(main())
    for feed, (probs,) in zip(feeds, outputs):
        np.testing.assert_allclose(probs, real_run(None, feed)[0], rtol=1e-6)
    stats = app.state.stats  # the failed merged run counted apart, then four single runs: each request once
    assert stats.session_runs == 4 and stats.failed_merged_runs == 1 and stats.requests == 4


def test_a_fixed_batch_axis_turns_batching_off(models):
    with TestClient(create_app(models["fixed"])) as c:
        serving = c.get("/metadata").json()["serving"]
        assert serving["batching"] is False and "fixed batch axis of 1" in serving["batching_note"]
        assert c.post("/predict", json={"inputs": [[-1, 2, -3, 4]]}).json()["outputs"] == [[0, 2, 0, 4]]


def test_create_app_and_load_test_reject_bad_settings(models):
    with pytest.raises(ValueError, match=r"max_batch_rows must be an integer >= 1; received 0"):
        create_app(models["clf"], max_batch_rows=0)
    with pytest.raises(ValueError, match=r"batch_wait_ms must be a finite number >= 0; received -1"):
        create_app(models["clf"], batch_wait_ms=-1)
    with pytest.raises(FileNotFoundError, match="No ONNX model"):
        create_app(models["clf"].parent / "missing.onnx")
    with pytest.raises(ValueError, match=r"concurrency must be an integer >= 1"):
        load_test("http://127.0.0.1:1/predict", b"{}", "application/json", concurrency=0)
    with pytest.raises(ValueError, match=r"http:// URL"):
        load_test("127.0.0.1:8000/predict", b"{}", "application/json")


def _post(url, body, content_type="application/json"):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", parts.path, body=body, headers={"Content-Type": content_type})
    r = conn.getresponse()
    data = json.loads(r.read())
    conn.close()
    return r.status, data


def test_uvicorn_server_under_load_merges_requests_and_answers_correctly(models):
    model = OnnxModel(models["clf"])
    with running_server(models["clf"], batch_wait_ms=5) as url:
        # distinct concurrent requests: each answer must be its own rows, whatever it was merged with
        xs = [_x(1 + i % 3, seed=i) for i in range(48)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda x: _post(f"{url}/predict", json.dumps({"inputs": x.tolist()})), xs))
        for x, (status, body) in zip(xs, answers):
            assert status == 200 and body["batch_size"] == len(x)
            np.testing.assert_allclose(np.array(body["outputs"], np.float32), model.predict(x), rtol=1e-5,
                                       atol=1e-6)
        body, content_type = sample_body(model, rows=1)
        result = load_test(f"{url}/predict", body, content_type, concurrency=8, requests=200, timeout=30)
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", "/health")
        stats = json.loads(conn.getresponse().read())["stats"]
    assert result["requests"] == 200 and result["ok"] == 200 and result["failed"] == 0
    assert result["status_counts"] == {"200": 200} and result["concurrency"] == 8
    assert 0 < result["p50_ms"] <= result["p99_ms"] and result["throughput_rps"] > 0
    assert stats["requests"] == 248 and stats["server_errors"] == 0
    assert stats["session_runs"] < stats["requests"] and stats["merged_runs"] > 0, stats


def test_load_test_counts_failures_and_stays_bounded(models):
    with running_server(models["clf"]) as url:
        result = load_test(f"{url}/predict", b'{"inputs": [[1, 2]]}', "application/json", concurrency=4,
                           requests=20)
    assert result["requests"] == 20 and result["ok"] == 0 and result["failed"] == 20
    assert result["status_counts"] == {"400": 20} and result["p50_ms"] is None
    # the server is gone now: every request fails to connect, and the test still ends
    result = load_test(f"{url}/predict", b"{}", "application/json", concurrency=2, requests=6, timeout=2)
    assert result["failed"] == 6 and result["status_counts"] == {"ConnectionRefusedError": 6}


def test_cli_load_test_prints_figures_and_writes_json(models, tmp_path, capsys):
    import argparse

    out = tmp_path / "load.json"
    args = add_serve_arguments(argparse.ArgumentParser()).parse_args(
        [str(models["multi"]), "--load-test", "--concurrency", "4", "--requests", "40", "--rows", "2",
         "--json", str(out)])
    assert args.port == 8000 and args.max_batch_rows == 64 and args.no_batching is False
    assert cmd_serve(args) == 0
    printed = capsys.readouterr().out
    assert "40 requests, concurrency 4: 40 ok, 0 failed" in printed and "session runs" in printed
    figures = json.loads(out.read_text())
    assert figures["ok"] == 40 and figures["failed"] == 0 and figures["rows_per_request"] == 2
    assert figures["server"]["requests"] == 40 and figures["server"]["rows"] == 80
    bad = add_serve_arguments(argparse.ArgumentParser()).parse_args(
        [str(models["multi"]), "--load-test", "--format", "npy"])
    assert cmd_serve(bad) == 2 and "single-input models" in capsys.readouterr().err


def test_a_model_exported_under_this_backend_is_served(tmp_path):
    """The whole chain: a kerastk model exported by the active backend, served, equal to Keras's predictions."""
    import kerastk
    from kerastk.deploy import export_onnx, write_card

    model = kerastk.create_model("logistic_regression", input_shape=(4,), num_classes=3)
    result = export_onnx(model, tmp_path / "model.onnx")
    write_card(tmp_path / "model.onnx", name="iris", export_result=result, class_names=["a", "b", "c"],
               task="classification")
    x = _x(6, seed=3)
    with TestClient(create_app(tmp_path / "model.onnx")) as c:
        body = c.post("/predict", json={"inputs": x.tolist()}).json()
        meta = c.get("/metadata").json()
    np.testing.assert_allclose(body["outputs"], model.predict(x, verbose=0), atol=1e-5)
    assert body["labels"] == [["a", "b", "c"][i] for i in np.argmax(body["outputs"], axis=-1)]
    assert meta["route"] == result.route and meta["parity"]["passed"] is True
