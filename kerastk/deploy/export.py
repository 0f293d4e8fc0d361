"""Export any functional Keras model to a validated ONNX file, from any backend.

Keras's own ``Model.export(format="onnx")`` is the exporter on every route (tf2onnx on TensorFlow, jax2onnx on
JAX, torch.onnx on torch). Each route fails on some models (see ARCHITECTURE.md), and weights in a ``.keras``
file are backend-independent, so when the active backend's file does not validate, kerastk re-loads the saved
model under another backend in a subprocess, exports there and validates that file against the *same* Keras
model in this process. The first file that validates is moved to the output path; nothing that failed is left
there.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kerastk.deploy.validate import DEFAULT_ATOL, DEFAULT_BATCH_SIZES, ValidationReport, validate_onnx

#: Fallback order after the active backend: TensorFlow's graphs are the cleanest (see ARCHITECTURE.md).
ROUTE_PREFERENCE = ("tensorflow", "torch", "jax")


class ExportError(RuntimeError):
    """No route produced an ONNX file that validates; `attempts` holds each route's figures."""

    def __init__(self, message, attempts):
        super().__init__(message)
        self.attempts = attempts


@dataclasses.dataclass
class ExportResult:
    path: str
    backend: str  # the backend active in this process
    route: str  # the backend whose exporter produced the file
    seconds: float
    opset: int
    validation: ValidationReport
    attempts: list  # [{route, seconds, error or validation figures}] in the order tried

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["validation"] = self.validation.to_dict()
        return d


def input_signature(model):
    """InputSpecs with a dynamic batch axis, in the structure Model.export expects for functional models."""
    import keras

    specs = [keras.InputSpec(shape=(None, *t.shape[1:]), dtype=t.dtype, name=t.name) for t in model.inputs]
    return specs if len(specs) == 1 else [specs]


def export_native(model, path, opset=None) -> list[str]:
    """Export with the active backend's exporter (Keras's Model.export), dynamic batch axis, then apply the
    graph fixes that backend's output needs (kerastk.deploy.onnx_fixes). Returns the fixes applied."""
    import warnings

    import keras

    from kerastk.deploy.onnx_fixes import apply_fixes

    import gc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(str(path), format="onnx", input_signature=input_signature(model), opset_version=opset,
                     verbose=False)
    gc.collect()  # tf2onnx leaves ~10 GB of graph copies for a ResNet-152 until the next collection
    return apply_fixes(path, keras.backend.backend())


def export_in_subprocess(keras_path, path, route, opset=None, timeout=1800) -> list[str]:
    """Re-load a `.keras` file under KERAS_BACKEND=route in a fresh process and export it there."""
    env = dict(os.environ, KERAS_BACKEND=route)
    cmd = [sys.executable, "-m", "kerastk.deploy._worker", str(keras_path), str(path)]
    if opset is not None:
        cmd += ["--opset", str(opset)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(f"{route} export failed: {lines[-1] if lines else 'exit code ' + str(proc.returncode)}")
    return json.loads(proc.stdout.strip().splitlines()[-1]).get("fixes", [])


def _routes(requested, active):
    from kerastk.backend import BACKENDS, backend_available

    if requested in (None, "auto"):
        order = [active] + [r for r in ROUTE_PREFERENCE if r != active]
        return [r for r in order if r == active or backend_available(r)]
    routes = [requested] if isinstance(requested, str) else list(requested)
    for r in routes:
        if r not in BACKENDS:
            raise ValueError(f"Unknown export route {r!r}; expected 'auto' or one of {list(BACKENDS)}.")
    return routes


def _opset_of(path) -> int:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)


def export_onnx(model_or_path, path, opset=None, *, route="auto", inputs=None, atol=DEFAULT_ATOL,
                batch_sizes=DEFAULT_BATCH_SIZES, verbose=False) -> ExportResult:
    """Export a Keras model (or a `.keras` file) to ONNX and prove it equal in onnxruntime.

    Args:
        model_or_path: a functional keras.Model, or a path to a `.keras` file.
        path: the output `.onnx` path.
        opset: ONNX opset (None: each exporter's default).
        route: "auto" (active backend first, then the others installed), a backend name, or a list of them.
        inputs: real inputs used for validation (random inputs fitting the model when None).
        atol: validation tolerance (max abs diff over every output).
        batch_sizes: batch sizes validated (two distinct sizes prove the batch axis is dynamic).

    Returns:
        ExportResult with the route used, seconds, opset and the ValidationReport.

    Raises:
        ExportError when no route gives a file that validates; nothing is left at `path`.
    """
    import keras

    import kerastk.layers  # noqa: F401  (registers custom layers for loading)
    from kerastk.backend import active_backend

    start = time.perf_counter()
    keras_path = None
    if isinstance(model_or_path, (str, os.PathLike)):
        keras_path = Path(model_or_path)
        if not keras_path.is_file():
            raise FileNotFoundError(f"No Keras model at {str(keras_path)!r} (expected a .keras file).")
        model = keras.saving.load_model(keras_path, compile=False)
    else:
        model = model_or_path
    if not isinstance(model, keras.Model):
        raise TypeError(f"export_onnx needs a keras.Model or a .keras path; received {type(model).__name__}.")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    active = active_backend()
    attempts = []
    # Candidates are written beside the output (same file system), so the final move is an atomic rename.
    with tempfile.TemporaryDirectory(prefix=".kerastk-export-", dir=path.parent) as tmp:
        for r in _routes(route, active):
            candidate = Path(tmp) / f"{r}.onnx"
            t0 = time.perf_counter()
            try:
                if r == active:
                    fixes = export_native(model, candidate, opset)
                else:
                    if keras_path is None:
                        keras_path = Path(tmp) / "model.keras"
                        model.save(keras_path)
                    fixes = export_in_subprocess(keras_path, candidate, r, opset)
            except Exception as exc:
                msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                attempts.append({"route": r, "seconds": round(time.perf_counter() - t0, 2),
                                 "error": f"{type(exc).__name__}: {msg}"})
                if verbose:
                    print(f"[kerastk.export] route {r}: export failed ({msg})", file=sys.stderr)
                continue
            report = validate_onnx(candidate, model, inputs=inputs, atol=atol, batch_sizes=batch_sizes)
            attempts.append({"route": r, "seconds": round(time.perf_counter() - t0, 2), "graph_fixes": fixes,
                             "validation": report.to_dict()})
            if verbose:
                print(f"[kerastk.export] route {r}: {report}", file=sys.stderr)
            if report.passed:
                opset_used = _opset_of(candidate)
                os.replace(candidate, path)
                report.path = str(path)
                return ExportResult(str(path), active, r, round(time.perf_counter() - start, 2), opset_used,
                                    report, attempts)
    if path.exists():  # a stale file from an earlier run must not look like this model's export
        path.unlink()
    summary = "; ".join(
        f"{a['route']}: {a.get('error') or ValidationReport(**a['validation'])}" for a in attempts
    )
    raise ExportError(f"No export route produced an ONNX file that validates ({summary}).", attempts)


def main_worker(argv=None) -> int:
    """Entry point of `python -m kerastk.deploy._worker SRC.keras OUT.onnx [--opset N]`."""
    import argparse

    parser = argparse.ArgumentParser(description="Export a .keras file with the active backend's exporter.")
    parser.add_argument("keras_path")
    parser.add_argument("onnx_path")
    parser.add_argument("--opset", type=int, default=None)
    args = parser.parse_args(argv)
    import keras

    import kerastk.layers  # noqa: F401

    model = keras.saving.load_model(args.keras_path, compile=False)
    fixes = export_native(model, args.onnx_path, args.opset)
    print(json.dumps({"route": keras.backend.backend(), "path": args.onnx_path, "fixes": fixes}))
    return 0
