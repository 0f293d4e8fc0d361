"""Serve an exported ONNX model over HTTP with numpy + onnxruntime + FastAPI only (no keras, no backend).

    kerastk serve export/mnist_lenet5/model.onnx --port 8000
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"inputs": [[0.1, 0.2, ...]]}'
    kerastk serve model.onnx --load-test --concurrency 8 --requests 400     # bounded load test, then exit

Endpoints (see :func:`create_app`):

- ``GET /health``: ``{"status": "ok", ...}`` plus request / session-run counters.
- ``GET /metadata``: the model card (name, inputs, outputs, preprocessing, class names, export route, parity,
  metrics) and the serving settings; for an ONNX file without a card, what the file itself says (its inputs and
  outputs, and the essentials kerastk embedded in its metadata: task, preprocessing, class names, route,
  parity verdict, also under ``"embedded"``) plus ``"card": null`` and a note.
- ``POST /predict``: JSON ``{"inputs": [[...], ...]}`` (one input) or ``{"inputs": {"name": [...], ...}}``
  (several, keyed by input names), optional ``"raw": true`` to apply the preprocessing first (the card's, else
  the file's embedded metadata's); or an ``application/x-npy`` body (one ``np.save`` array, single-input
  models; ``?raw=true`` for raw values). The reply is ``{"outputs": ..., "labels": [...] (when the card or the
  file's metadata has class names), "batch_size": n}``.

Every request is checked before onnxruntime sees it: body size and rows per request (413), content type (415),
malformed JSON / npy / fields (400 or 422), rank, shape, dtype (400, with :class:`OnnxModel`'s message),
NaN / inf and empty batches (400). JSON numbers are cast to the input's dtype only when nothing is lost (any
number for a float input; whole numbers for an integer input, so ``1.5`` for token ids is a 400). Anything
unexpected is a 500 with the error as JSON, and the server keeps serving.

Batching. With ``batching=True`` concurrent requests wait in an asyncio queue; one worker takes the first,
then whatever arrives within ``batch_wait_ms`` (up to ``max_batch_rows`` rows in all), concatenates the
requests whose non-batch dims and dtypes match, makes ONE ``session.run`` in a worker thread and splits the
outputs back by rows (requests of other shapes get their own run in the same round). When a merged run fails
each request is re-run alone, so one bad request cannot fail its neighbours.

- It helps with many small concurrent requests (batch-1 clients): a run on 32 rows costs far less than 32
  runs, because per-call overhead dominates and onnxruntime's threads are better used on a bigger batch.
- It does not help a single client sending requests one after another (nothing to merge, and each request
  waits up to ``batch_wait_ms`` for company), requests that are already large, models whose cost grows
  linearly with rows on a saturated CPU (a request then also waits for its neighbours' rows, so p50 rises),
  tiny models whose cost is the HTTP handling rather than the run, or inputs whose non-batch dims vary
  (e.g. sequence lengths), which rarely match. A model exported with a
  fixed batch axis is never merged. ``/health`` reports ``requests`` vs ``session_runs`` so you can see it.
"""
# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (`request: Request`, imported
# inside create_app) as live objects.
import argparse
import asyncio
import contextlib
import http.client
import io
import json
import math
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from kerastk.deploy.runtime import OnnxModel, card_path_for, ort_dtype

__all__ = ["create_app", "serve", "running_server", "load_test", "add_serve_arguments", "cmd_serve"]

#: Content types POST /predict accepts.
CONTENT_TYPES = ("application/json", "application/x-npy")
#: Card fields /metadata lifts to the top level.
CARD_FIELDS = ("task", "preprocessing", "class_names", "input_layout", "route", "backend", "opset", "parity",
               "metrics")


class RequestError(Exception):
    """A request the server refuses: `status` (4xx/503) and a message saying what was wrong and what was expected."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {value!r}.")
    return int(value)


def _non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; received {value!r}.")
    return float(value)


# === Request parsing ===

def _json_array(name: str, value, dtype: str, raw: bool) -> np.ndarray:
    """A JSON nested list as an array of the input's dtype, cast only when the cast loses nothing."""
    if not isinstance(value, list):
        raise RequestError(400, f"Input {name!r} must be a nested list of numbers, rows first; "
                                f"received {type(value).__name__}.")
    try:
        a = np.array(value)
    except (ValueError, TypeError):
        raise RequestError(400, f"Input {name!r} is not rectangular: every row must have the same shape "
                                f"(a nested list of numbers, rows first).") from None
    if a.size and a.dtype.kind not in "biuf":
        example = next((v for v in a.flat if not isinstance(v, (int, float)) or isinstance(v, bool)
                        or (isinstance(v, int) and not -2**63 <= v < 2**64)), a.flat[0])
        raise RequestError(400, f"Input {name!r} must contain only numbers (integers within 64 bits); "
                                f"received {example!r}.")
    if raw:  # the card's preprocessing decides the dtype (float32, or int32 token ids)
        return a
    target = np.dtype(dtype)
    if a.size == 0:
        return a.astype(target)
    if target.kind == "b":
        if a.dtype.kind != "b":
            raise RequestError(400, f"Input {name!r} has dtype bool: send true/false; received numbers.")
        return a
    if a.dtype.kind == "b":
        raise RequestError(400, f"Input {name!r} has dtype {target.name}: send numbers; received true/false.")
    if target.kind == "f":
        with np.errstate(over="ignore"):
            out = a.astype(target)
        if not np.isfinite(out[np.isfinite(a)]).all():
            raise RequestError(400, f"Input {name!r} has values out of range for {target.name} "
                                    f"(largest magnitude {np.nanmax(np.abs(a[np.isfinite(a)])):g}).")
        return out
    if a.dtype.kind == "f":  # integer input: whole numbers only
        if not np.isfinite(a).all():
            raise RequestError(400, f"Input {name!r} has dtype {target.name}; received NaN or infinite values.")
        fractional = a[a != np.round(a)]
        if fractional.size:
            raise RequestError(400, f"Input {name!r} has dtype {target.name}: send integers; received "
                                    f"non-integer numbers (e.g. {fractional.flat[0]:g}).")
    info = np.iinfo(target)
    if a.min() < info.min or a.max() > info.max:
        raise RequestError(400, f"Input {name!r} has dtype {target.name} (range {info.min}..{info.max}); "
                                f"received values from {a.min():g} to {a.max():g}.")
    return a.astype(target)


def _to_json(a: np.ndarray):
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        return np.where(np.isfinite(a), a.astype(object), None).tolist()
    return a.tolist()


# === Batching ===

class _Job:
    __slots__ = ("feed", "rows", "key", "future")

    def __init__(self, feed, rows, future):
        self.feed = feed
        self.rows = rows
        self.key = tuple((a.shape[1:], a.dtype.str) for a in feed.values())
        self.future = future


class _Batcher:
    """Merges queued requests into one session.run (see the module docstring)."""

    def __init__(self, session, stats, max_rows: int, wait_ms: float):
        self.session = session
        self.stats = stats
        self.max_rows = max_rows
        self.wait_s = wait_ms / 1e3
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kerastk-serve")
        self._loop = self._queue = self._task = self._carry = None

    def _ensure_started(self):
        # One worker per event loop (a TestClient without `with` runs each request in a fresh loop).
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue, self._carry = loop, asyncio.Queue(), None
            self._task = loop.create_task(self._worker())
        return loop

    async def submit(self, feed: dict, rows: int) -> list:
        loop = self._ensure_started()
        job = _Job(feed, rows, loop.create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _worker(self):
        loop = asyncio.get_running_loop()
        while True:
            job, self._carry = self._carry or await self._queue.get(), None
            batch, rows = [job], job.rows
            deadline = loop.time() + self.wait_s
            while rows < self.max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if rows + nxt.rows > self.max_rows:
                    self._carry = nxt
                    break
                batch.append(nxt)
                rows += nxt.rows
            try:
                await self._run(batch)
            except Exception as exc:  # never let the worker die: fail this round's requests instead
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)

    async def _session_run(self, feed):
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.session.run, None, feed)

    async def _run(self, batch):
        groups = {}
        for job in batch:
            groups.setdefault(job.key, []).append(job)
        for jobs in groups.values():
            live = [j for j in jobs if not j.future.done()]  # a client that went away is not run
            results = await self._run_group(live) if live else []
            for job, result in zip(live, results):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    async def _run_group(self, jobs):
        if len(jobs) > 1:
            total = sum(j.rows for j in jobs)
            feed = {name: np.concatenate([j.feed[name] for j in jobs]) for name in jobs[0].feed}
            try:
                outputs = await self._session_run(feed)
            except Exception:
                outputs = None  # re-run each request alone so only the bad one fails
            ok = outputs is not None and all(o.ndim >= 1 and o.shape[0] == total for o in outputs)
            if ok:
                self.stats.record_run(len(jobs), total)
            else:  # counted apart: the requests are counted once, by their own runs below
                self.stats.failed_merged_runs += 1
            if ok:
                bounds = np.cumsum([0] + [j.rows for j in jobs])
                return [[o[a:b] for o in outputs] for a, b in zip(bounds[:-1], bounds[1:])]
        results = []
        for job in jobs:
            try:
                results.append(await self._session_run(job.feed))
            except Exception as exc:
                results.append(exc)
            self.stats.record_run(1, job.rows)
        return results


def _check_npy_header(body: bytes) -> None:
    """Refuse an .npy body whose header claims more data than the body holds, before numpy allocates the array
    the header describes (a 100-byte body could otherwise claim gigabytes)."""
    buffer = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(buffer)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(buffer) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(buffer))
    except Exception:
        return  # not an .npy header: np.load gives the error message
    claimed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if dtype.itemsize else 0
    if claimed > len(body) - buffer.tell():
        raise RequestError(400, f"Body is a truncated .npy array: its header describes shape {tuple(shape)} "
                                f"{dtype} ({claimed} bytes) but {len(body) - buffer.tell()} bytes follow it.")


class _Stats:
    """Counters shown by /health and /metadata (updated from the event loop thread only)."""

    def __init__(self):
        self.requests = self.rows = self.session_runs = self.merged_runs = 0
        self.largest_run_requests = self.largest_run_rows = 0
        self.client_errors = self.server_errors = self.in_flight = 0
        self.failed_merged_runs = 0

    def record_run(self, requests: int, rows: int):
        self.session_runs += 1
        self.requests += requests
        self.rows += rows
        self.merged_runs += requests > 1
        self.largest_run_requests = max(self.largest_run_requests, requests)
        self.largest_run_rows = max(self.largest_run_rows, rows)

    def to_dict(self) -> dict:
        return dict(vars(self))


# === The app ===

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

    max_batch_rows = _positive_int("max_batch_rows", max_batch_rows)
    max_body_bytes = _positive_int("max_body_bytes", max_body_bytes)
    max_queue = _positive_int("max_queue", max_queue)
    batch_wait_ms = _non_negative("batch_wait_ms", batch_wait_ms)
    model = OnnxModel(onnx_path, card=card)
    stats = _Stats()
    fixed = [(n, s[0]) for n, s, _ in model.inputs if s and s[0] is not None]
    settings = {"batching": bool(batching) and not fixed, "max_batch_rows": max_batch_rows,
                "batch_wait_ms": batch_wait_ms, "max_queue": max_queue, "max_body_bytes": max_body_bytes}
    if batching and fixed:
        settings["batching_note"] = (f"batching is off: input {fixed[0][0]!r} has a fixed batch axis of "
                                     f"{fixed[0][1]}; re-export with a dynamic batch axis to merge requests.")
    batcher = _Batcher(model.session, stats, max_batch_rows, batch_wait_ms) if settings["batching"] else None
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
        arrays = [_json_array(n, v, d, raw) for (n, _, d), v in zip(model.inputs, values)]
        return [preprocess(arrays[0])] if raw else arrays

    def parse_npy(body: bytes, raw: bool) -> list:
        if len(names) != 1:
            raise RequestError(400, f"application/x-npy bodies are for single-input models; {model.path.name} "
                                    f"takes {len(names)} inputs ({', '.join(names)}): send JSON "
                                    f"{{\"inputs\": {{name: ...}}}} instead.")
        _check_npy_header(body)
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
            feed = model._check(arrays)
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
        for name, a in feed.items():
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                bad = int(a.size - np.isfinite(a).sum())
                raise RequestError(400, f"Input {name!r} contains NaN or infinite values ({bad} of {a.size}); "
                                        f"send finite numbers.")
        return feed

    async def run(feed: dict, rows: int) -> list:
        if batcher is not None:
            return await batcher.submit(feed, rows)
        outputs = await asyncio.get_running_loop().run_in_executor(None, model.session.run, None, feed)
        stats.record_run(1, rows)
        return outputs

    def reply(outputs: list, rows: int) -> dict:
        out_names = [o.name for o in model.session.get_outputs()]
        body = {"outputs": _to_json(outputs[0]) if len(outputs) == 1
                else {n: _to_json(o) for n, o in zip(out_names, outputs)}}
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

def load_test(url: str, body, content_type: str, *, concurrency: int = 8, requests: int = 400,
              timeout: float = 30) -> dict:
    """POST `body` to `url` `requests` times from `concurrency` threads (keep-alive connections) and report.

    Bounded: a fixed number of requests, each with a `timeout` in seconds. `body` is bytes (or str), or a list
    of them used in turn. Only answers with status 200 count as ok; latency percentiles are over those.

    Returns
    -------
    dict with requests, ok, failed, status_counts ({"200": n, "400": n, "ConnectionRefusedError": n, ...}),
    concurrency, seconds, throughput_rps (ok requests per second), p50_ms, p99_ms, mean_ms.
    """
    concurrency = _positive_int("concurrency", concurrency)
    requests = _positive_int("requests", requests)
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"url must be an http:// URL such as http://127.0.0.1:8000/predict; received {url!r}.")
    bodies = [body] if isinstance(body, (bytes, bytearray, str)) else list(body)
    if not bodies:
        raise ValueError("body must be bytes, str or a non-empty list of them.")
    bodies = [b.encode() if isinstance(b, str) else bytes(b) for b in bodies]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Content-Type": content_type}
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        conn, results = None, []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
                conn.request("POST", path, body=bodies[i % len(bodies)], headers=headers)
                response = conn.getresponse()
                response.read()
                status = str(response.status)
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            results.append((status, (time.perf_counter() - t0) * 1e3))
        if conn is not None:
            conn.close()
        return results

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = [r for f in [pool.submit(worker) for _ in range(concurrency)] for r in f.result()]
    seconds = time.perf_counter() - t0
    status_counts = {}
    for status, _ in results:
        status_counts[status] = status_counts.get(status, 0) + 1
    ok = sorted(ms for status, ms in results if status == "200")

    def pct(q):
        return round(ok[min(len(ok) - 1, max(0, math.ceil(q * len(ok)) - 1))], 3) if ok else None

    return {"requests": len(results), "ok": len(ok), "failed": len(results) - len(ok),
            "status_counts": dict(sorted(status_counts.items())), "concurrency": concurrency,
            "seconds": round(seconds, 3), "throughput_rps": round(len(ok) / seconds, 1) if seconds else None,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "mean_ms": round(sum(ok) / len(ok), 3) if ok else None}


def format_load_test(result: dict) -> str:
    """One line of load-test figures."""
    return (f"{result['requests']} requests, concurrency {result['concurrency']}: {result['ok']} ok, "
            f"{result['failed']} failed {result['status_counts']}; {result['throughput_rps']} req/s, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, mean {result['mean_ms']} ms "
            f"({result['seconds']} s)")


def sample_body(model: OnnxModel, rows: int = 1, fmt: str = "json") -> tuple[bytes, str]:
    """A /predict body of `rows` random rows fitting the model's inputs (timing.feed_for), and its content type."""
    from kerastk.deploy.timing import feed_for

    feed = feed_for(model.session, rows)
    if fmt == "npy":
        if len(feed) != 1:
            raise ValueError(f"--format npy is for single-input models; {model.path.name} takes {len(feed)} inputs.")
        buf = io.BytesIO()
        np.save(buf, next(iter(feed.values())))
        return buf.getvalue(), "application/x-npy"
    if fmt != "json":
        raise ValueError(f"Unknown body format {fmt!r}; expected 'json' or 'npy'.")
    inputs = next(iter(feed.values())).tolist() if len(feed) == 1 else {n: a.tolist() for n, a in feed.items()}
    return json.dumps({"inputs": inputs}).encode(), "application/json"


# === CLI ===

def add_serve_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `kerastk serve MODEL.onnx ...`."""
    p.add_argument("onnx", help="the ONNX file (its card beside it is served at /metadata)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch-rows", type=int, default=64, help="most rows per request and per merged run")
    p.add_argument("--batch-wait-ms", type=float, default=2.0, help="how long a request waits for others to join")
    p.add_argument("--no-batching", action="store_true", help="one session.run per request")
    p.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body in MiB")
    p.add_argument("--max-queue", type=int, default=1024, help="most requests in flight; more get 503")
    p.add_argument("--load-test", action="store_true",
                   help="serve on a free loopback port, run a bounded load test, print the figures and exit "
                        "(0 only when no request failed)")
    p.add_argument("--concurrency", type=int, default=8, help="load test: client threads")
    p.add_argument("--requests", type=int, default=400, help="load test: requests in all")
    p.add_argument("--rows", type=int, default=1, help="load test: rows per request")
    p.add_argument("--format", choices=("json", "npy"), default="json", help="load test: request body format")
    p.add_argument("--json", metavar="OUT", help="load test: also write the figures to this JSON file")
    return p


def cmd_serve(args) -> int:
    """`kerastk serve`: serve until interrupted, or with --load-test run a bounded load test and exit."""
    if not args.max_body_mb > 0:
        print(f"kerastk serve: --max-body-mb must be > 0; received {args.max_body_mb}", file=sys.stderr)
        return 2
    app_kwargs = {"max_batch_rows": args.max_batch_rows, "batch_wait_ms": args.batch_wait_ms,
                  "batching": not args.no_batching, "max_queue": args.max_queue,
                  "max_body_bytes": max(1, int(args.max_body_mb * 2**20))}
    try:
        if not args.load_test:
            print(f"Serving {args.onnx} on http://{args.host}:{args.port} (POST /predict, GET /metadata, "
                  f"GET /health; batching {'off' if args.no_batching else 'on'}). Ctrl-C stops it.")
            serve(args.onnx, host=args.host, port=args.port, **app_kwargs)
            return 0
        body, content_type = sample_body(OnnxModel(args.onnx), _positive_int("--rows", args.rows), args.format)
        with running_server(args.onnx, **app_kwargs) as url:
            result = load_test(f"{url}/predict", body, content_type, concurrency=args.concurrency,
                               requests=args.requests)
            conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=10)
            conn.request("GET", "/health")
            result["server"] = json.loads(conn.getresponse().read())["stats"]
            conn.close()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"kerastk serve: {exc}", file=sys.stderr)
        return 2
    result.update({"model": str(args.onnx), "rows_per_request": args.rows, "format": args.format,
                   "batching": not args.no_batching})
    print(format_load_test(result))
    server = result["server"]
    print(f"server: {server['requests']} requests in {server['session_runs']} session runs "
          f"({server['merged_runs']} merged, largest {server['largest_run_requests']} requests)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(cmd_serve(add_serve_arguments(argparse.ArgumentParser(prog="python -m kerastk.deploy.serve"))
                       .parse_args()))
