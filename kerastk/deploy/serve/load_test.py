"""The HTTP load-test client of `kerastk serve --load-test`: N client threads, latency percentiles."""
import http.client
import io
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np

from kerastk.deploy.runtime import OnnxModel
from kerastk.deploy.serve.requests import positive_int


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
    concurrency = positive_int("concurrency", concurrency)
    requests = positive_int("requests", requests)
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
