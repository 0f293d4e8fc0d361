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

The package's files: ``requests`` (parsing and checking a request, encoding a reply), ``batching`` (the batcher
and the counters), ``app`` (the FastAPI app and the servers), ``load_test`` (the HTTP load-test client). The
command's arguments are kerastk.cli's.
"""
from kerastk.deploy.serve.app import CARD_FIELDS, create_app, running_server, serve
from kerastk.deploy.serve.load_test import format_load_test, load_test, sample_body
from kerastk.deploy.serve.requests import CONTENT_TYPES, RequestError

__all__ = ["create_app", "serve", "running_server", "load_test", "format_load_test", "sample_body", "RequestError",
           "CONTENT_TYPES", "CARD_FIELDS"]
