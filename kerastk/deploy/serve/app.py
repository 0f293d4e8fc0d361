"""The FastAPI app serving one ONNX file (GET /health, GET /metadata, POST /predict), and servers for it."""
# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (`request: Request`, imported
# inside create_app) as live objects.
import asyncio
import contextlib
import http.client
import io
import json
import socket
import threading
import time

import numpy as np

from kerastk.deploy.runtime import OnnxModel, card_path_for, ort_dtype
from kerastk.deploy.serve.batching import Batcher, Stats
from kerastk.deploy.serve.requests import (
    CONTENT_TYPES,
    RequestError,
    check_npy_header,
    json_array,
    non_negative,
    positive_int,
    to_json,
)

#: Card fields /metadata lifts to the top level.
CARD_FIELDS = ("task", "preprocessing", "class_names", "input_layout", "route", "backend", "opset", "parity",
               "metrics")


def create_app(onnx_path, *, max_batch_rows: int = 64, max_body_bytes: int = 8 * 2**20, batching: bool = True,
               batch_wait_ms: float = 2.0, max_queue: int = 1024, card=None):
    """A FastAPI app serving one ONNX file (and its card, when there is one beside it).

    Parameters
    ----------
    onnx_path : path of the ONNX file; its card is read from beside it (``card`` overrides: a path or dict).
    max_batch_rows : most rows one request may send (more is a 413) and most rows one merged run holds.
    max_body_bytes : largest request body accepted (more is a 413).
    batching : merge concurrent requests into one session.run (see the module docstring).
    batch_wait_ms : how long the batcher waits after the first request for others to join it.
    max_queue : most requests in flight at once; beyond it a request gets 503 (retry later).

    Returns
    -------
    fastapi.FastAPI, with ``app.state.model`` (the :class:`OnnxModel`), ``.stats``, ``.settings`` and
    ``.batcher`` (None without batching).
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    max_batch_rows = positive_int("max_batch_rows", max_batch_rows)
    max_body_bytes = positive_int("max_body_bytes", max_body_bytes)
    max_queue = positive_int("max_queue", max_queue)
    batch_wait_ms = non_negative("batch_wait_ms", batch_wait_ms)
    model = OnnxModel(onnx_path, card=card)
    stats = Stats()
    fixed = [(n, s[0]) for n, s, _ in model.inputs if s and s[0] is not None]
    settings = {"batching": bool(batching) and not fixed, "max_batch_rows": max_batch_rows,
                "batch_wait_ms": batch_wait_ms, "max_queue": max_queue, "max_body_bytes": max_body_bytes}
    if batching and fixed:
        settings["batching_note"] = (f"batching is off: input {fixed[0][0]!r} has a fixed batch axis of "
                                     f"{fixed[0][1]}; re-export with a dynamic batch axis to merge requests.")
    batcher = Batcher(model.session, stats, max_batch_rows, batch_wait_ms) if settings["batching"] else None
    names = [n for n, _, _ in model.inputs]
    started = time.time()

    app = FastAPI(title=f"kerastk: {model.info.get('name') or model.path.stem}",
                  description="Predictions from an exported ONNX model (numpy + onnxruntime).")
    app.state.model, app.state.stats, app.state.settings, app.state.batcher = model, stats, settings, batcher

    def io_spec():
        return {"inputs": [{"name": n, "shape": s, "dtype": d} for n, s, d in model.inputs],
                "outputs": [{"name": o.name, "shape": [d if isinstance(d, int) else None for d in o.shape],
                             "dtype": ort_dtype(o.type)} for o in model.session.get_outputs()]}

    async def read_body(request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body_bytes:
            raise RequestError(413, f"Request body is {int(length)} bytes; the limit is {max_body_bytes} "
                                    f"(--max-body-mb). Send fewer rows per request.")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise RequestError(413, f"Request body is over the {max_body_bytes}-byte limit (--max-body-mb). "
                                        f"Send fewer rows per request.")
        return bytes(body)

    def preprocess(a):
        if not model.card and not isinstance(model.info.get("preprocessing"), dict):
            raise RequestError(400, f"\"raw\": true applies the model card's preprocessing, but "
                                    f"{model.path.name} has no card ({card_path_for(model.path).name} not found) "
                                    f"and no kerastk metadata recording it; send preprocessed inputs instead.")
        if len(names) != 1:
            raise RequestError(400, f"\"raw\": true is for single-input models; {model.path.name} takes "
                                    f"{len(names)} inputs ({', '.join(names)}).")
        try:
            return model.preprocess(a)
        except ValueError as exc:
            raise RequestError(400, f"Cannot apply the card's preprocessing: {exc}") from None

    def parse_json(body: bytes) -> list:
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"Body is not valid JSON: {exc}.") from None
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise RequestError(422, 'Body must be a JSON object {"inputs": [[...], ...]} (one input) or '
                                    '{"inputs": {"name": [...], ...}} (several), optionally with "raw": true.')
        unknown = sorted(set(payload) - {"inputs", "raw"})
        if unknown:
            raise RequestError(422, f"Unknown field(s) {unknown}; expected \"inputs\" and optionally \"raw\".")
        raw = payload.get("raw", False)
        if not isinstance(raw, bool):
            raise RequestError(422, f"\"raw\" must be true or false; received {raw!r}.")
        given = payload["inputs"]
        if isinstance(given, dict):
            if sorted(given) != sorted(names):
                missing = [n for n in names if n not in given]
                unknown = [k for k in given if k not in names]
                what = "; ".join(([f"missing {missing}"] if missing else [])
                                 + ([f"unknown {unknown}"] if unknown else []))
                raise RequestError(422, f"\"inputs\" must name every input of {model.path.name}: {names}; "
                                        f"received {sorted(given)} ({what}).")
            values = [given[n] for n in names]
        elif len(names) == 1:
            values = [given]
        else:
            raise RequestError(422, f"{model.path.name} takes {len(names)} inputs: send "
                                    f"{{\"inputs\": {{{', '.join(repr(n) for n in names)}: ...}}}}.")
        arrays = [json_array(n, v, d, raw) for (n, _, d), v in zip(model.inputs, values)]
        return [preprocess(arrays[0])] if raw else arrays

    def parse_npy(body: bytes, raw: bool) -> list:
        if len(names) != 1:
            raise RequestError(400, f"application/x-npy bodies are for single-input models; {model.path.name} "
                                    f"takes {len(names)} inputs ({', '.join(names)}): send JSON "
                                    f"{{\"inputs\": {{name: ...}}}} instead.")
        check_npy_header(body)
        try:
            a = np.load(io.BytesIO(body), allow_pickle=False)
        except Exception as exc:
            raise RequestError(400, f"Body is not a valid .npy array (np.save format, no pickles): "
                                    f"{str(exc).strip()[:200]}") from None
        if not isinstance(a, np.ndarray):
            raise RequestError(400, "Body is an .npz archive; send one array saved with np.save.")
        return [preprocess(a)] if raw else [a]

    def check(arrays: list) -> dict:
        for (name, _, _), a in zip(model.inputs, arrays):
            if isinstance(a, np.ndarray) and a.ndim >= 1 and a.shape[0] == 0:
                raise RequestError(400, f"Input {name!r} is an empty batch (0 rows); send at least one row.")
        try:
            feed = model.check_arrays(arrays)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        rows = {a.shape[0] for a in feed.values()}
        if len(rows) > 1:
            raise RequestError(400, f"Every input must have the same number of rows; received "
                                    f"{ {n: a.shape[0] for n, a in feed.items()} }.")
        n = rows.pop()
        if n > max_batch_rows:
            raise RequestError(413, f"Request has {n} rows; the limit is {max_batch_rows} per request "
                                    f"(--max-batch-rows). Split it into smaller requests.")
        return feed  # rank, shape, dtype, empty batch, NaN / inf: checked once, by OnnxModel.check_arrays

    async def run(feed: dict, rows: int) -> list:
        if batcher is not None:
            return await batcher.submit(feed, rows)
        outputs = await asyncio.get_running_loop().run_in_executor(None, model.session.run, None, feed)
        stats.record_run(1, rows)
        return outputs

    def reply(outputs: list, rows: int) -> dict:
        out_names = [o.name for o in model.session.get_outputs()]
        body = {"outputs": to_json(outputs[0]) if len(outputs) == 1
                else {n: to_json(o) for n, o in zip(out_names, outputs)}}
        labels = model.info.labels(outputs[0])
        if labels is not None:
            body["labels"] = labels
        body["batch_size"] = rows
        if any(o.dtype.kind == "f" and not np.isfinite(o).all() for o in outputs):
            body["warning"] = "the model produced NaN or infinite outputs; they are sent as null."
        return body

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model.info.get("name") or model.path.stem, "file": model.path.name,
                "uptime_s": round(time.time() - started, 1), "batching": settings["batching"],
                "stats": stats.to_dict()}

    @app.get("/metadata")
    async def metadata():
        card_ = model.card or None
        meta = {"name": model.info.get("name") or model.path.stem, "file": model.path.name, **io_spec()}
        meta.update({k: model.info.get(k) for k in CARD_FIELDS})
        meta["card"] = card_
        meta["embedded"] = model.metadata or None  # the essentials kerastk embedded in the file
        if card_ is None and model.metadata:
            meta["note"] = (f"No model card beside {model.path.name} ({card_path_for(model.path).name}): inputs "
                            f"and outputs are read from the ONNX file, task, preprocessing and class names from "
                            f"the kerastk metadata embedded in it.")
        elif card_ is None:
            meta["note"] = (f"No model card beside {model.path.name} ({card_path_for(model.path).name}): inputs "
                            f"and outputs are read from the ONNX file; preprocessing and class names are "
                            f"unknown, so \"raw\": true is refused.")
        meta["serving"] = {**settings, "stats": stats.to_dict()}
        return meta

    @app.post("/predict")
    async def predict(request: Request):
        if stats.in_flight >= max_queue:
            stats.client_errors += 1
            return JSONResponse({"error": f"Server busy: {stats.in_flight} requests in flight "
                                          f"(max_queue={max_queue}); retry later."}, status_code=503)
        stats.in_flight += 1
        try:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in CONTENT_TYPES:
                raise RequestError(415, f"Content-Type must be one of {', '.join(CONTENT_TYPES)}; "
                                        f"received {ctype or 'none'!r}.")
            body = await read_body(request)
            if ctype == "application/json":
                arrays = parse_json(body)
            else:
                raw = request.query_params.get("raw", "false").lower()
                if raw not in ("true", "false", "1", "0"):
                    raise RequestError(422, f"?raw= must be true or false; received {raw!r}.")
                arrays = parse_npy(body, raw in ("true", "1"))
            feed = check(arrays)
            rows = next(iter(feed.values())).shape[0]
            return JSONResponse(reply(await run(feed, rows), rows))
        except RequestError as exc:
            stats.client_errors += 1
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except Exception as exc:  # the server keeps serving whatever one request did
            stats.server_errors += 1
            return JSONResponse({"error": f"{type(exc).__name__}: {str(exc).strip()[:500]}"}, status_code=500)
        finally:
            stats.in_flight -= 1

    @app.exception_handler(Exception)
    async def unexpected(request, exc):
        stats.server_errors += 1
        return JSONResponse({"error": f"{type(exc).__name__}: {str(exc).strip()[:500]}"}, status_code=500)

    return app


def serve(onnx_path, host: str = "127.0.0.1", port: int = 8000, **app_kwargs):
    """Serve `onnx_path` with uvicorn until interrupted (`app_kwargs` go to :func:`create_app`)."""
    import uvicorn

    uvicorn.run(create_app(onnx_path, **app_kwargs), host=host, port=port, log_level="warning")


@contextlib.contextmanager
def running_server(onnx_path, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0,
                   **app_kwargs):
    """Serve `onnx_path` from a background thread (port 0: a free one); yields the base URL, e.g.
    ``http://127.0.0.1:50123``, once /health answers, and stops the server on exit."""
    import uvicorn

    app = create_app(onnx_path, **app_kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="kerastk-serve-uvicorn")
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                conn = http.client.HTTPConnection(host, port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"The server on {host}:{port} did not answer /health within "
                                   f"{startup_timeout:g} s.")
            time.sleep(0.05)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# === Load test (stdlib HTTP client) ===
