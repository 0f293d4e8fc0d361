"""The export worker: a process that re-loads `.keras` files under another backend and exports them there.

Routes other than the active backend's run in a subprocess (the backend is fixed once keras is imported). One
worker per route is started on first use and kept for the next export - importing TensorFlow and tf2onnx costs
seconds, a run of several exports (a recipe's comparisons, a test session) pays it once. Each request is one JSON
line on the worker's stdin, each reply one JSON line on its own channel (the exporters' prints go to stderr).
A worker that dies (killed for memory, a crash) fails that export only, with the last line it wrote to stderr;
the next export starts a fresh one. At most one worker per route is alive: it is replaced after MAX_JOBS exports
(graphs held by the exporters add up) or when the environment it was started with changed, and it exits when
this process closes its stdin or exits.

    python -m kerastk.deploy._worker      # the worker's side (reads requests until its stdin closes)
"""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kerastk.core.errors import ExporterFailure

#: A reply's status when the output cannot be written (disk full, read-only): no other route can help.
WRITE_ERROR = 3
#: Exports per worker before it is replaced by a fresh one.
MAX_JOBS = 20

_WORKERS: dict = {}
_LOCK = threading.Lock()


class _Worker:
    def __init__(self, route: str, env: dict):
        self.route = route
        self.cmd = [sys.executable, "-m", "kerastk.deploy._worker"]
        fd, name = tempfile.mkstemp(prefix="kerastk-export-worker-", suffix=".log")
        os.close(fd)
        self.log = open(name, "ab+")  # append mode: truncating it between jobs never leaves a hole
        os.unlink(name)
        self.proc = subprocess.Popen(self.cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, close_fds=True)
        self.jobs = 0
        self.lock = threading.Lock()
        self.env_key = env_key(env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, wait: float = 5.0) -> None:
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.proc.wait(timeout=wait)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.log.close()

    def _stderr_tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        lines = [ln for ln in self.log.read().decode(errors="replace").strip().splitlines()
                 if ln.strip() and "removed its internal frames" not in ln]
        return lines[-1] if lines else ""

    def request(self, job: dict, timeout: float) -> dict:
        """Send one job, wait for its reply (TimeoutExpired after `timeout` s, the worker killed)."""
        self.log.seek(0)
        self.log.truncate()
        self.jobs += 1
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # died before reading: the reply loop below reports how
        fd, buffer, deadline = self.proc.stdout.fileno(), b"", time.monotonic() + timeout
        while not buffer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                self.proc.wait()
                raise subprocess.TimeoutExpired(self.cmd, timeout)
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the worker died
                code = self.proc.wait()
                tail = self._stderr_tail()
                raise RuntimeError(f"{self.route} export failed: {tail or 'the export process ended with code ' + str(code)}")
            buffer += chunk
        return json.loads(buffer.decode())


#: Environment variables that change while a process runs without changing what an export does (pytest names
#: the current test in one): they do not make a new worker.
VOLATILE_ENV = ("PYTEST_CURRENT_TEST",)


def env_key(env: dict) -> tuple:
    """What of an environment decides an export (everything but VOLATILE_ENV)."""
    return tuple(sorted((k, v) for k, v in env.items() if k not in VOLATILE_ENV))


def _worker(route: str, env: dict) -> _Worker:
    """The route's worker: at most one per route is alive; it is replaced when it died, did MAX_JOBS exports, or
    was started with another environment (thread settings, KERASTK_* variables ...)."""
    with _LOCK:
        worker = _WORKERS.get(route)
        if worker is not None and (not worker.alive() or worker.jobs >= MAX_JOBS or worker.env_key != env_key(env)):
            worker.close()
            worker = None
        if worker is None:
            worker = _WORKERS[route] = _Worker(route, env)
        return worker


@atexit.register
def close_workers() -> None:
    """Stop every export worker this process started (they also stop by themselves when it exits)."""
    with _LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.close()


def export_in_subprocess(keras_path, path, route, opset=None, timeout=1800, modules=(), signature=None) \
        -> list[str]:
    """Re-load a `.keras` file under KERAS_BACKEND=route in the export worker and export it there; `modules`
    ((module, file) pairs) are imported first so the model's own classes load, `signature` (JSON) is the input
    signature of a model that has none of its own. Returns the graph fixes applied."""
    worker = _worker(route, dict(os.environ, KERAS_BACKEND=route))
    job = {"keras_path": str(Path(keras_path).absolute()), "onnx_path": str(Path(path).absolute()), "opset": opset,
           "modules": [[m, f] for m, f in modules], "signature": signature}
    with worker.lock:
        reply = worker.request(job, timeout)
    if reply["status"] == WRITE_ERROR:
        raise OSError(reply["errno"], reply["message"])
    if reply["status"] != 0:
        raise ExporterFailure(f"{route} route: {reply['error']}")
    return reply.get("fixes", [])
