"""Export any functional Keras model to a validated ONNX file, from any backend.

Keras's own ``Model.export(format="onnx")`` is the exporter on every route (tf2onnx on TensorFlow, jax2onnx on
JAX, torch.onnx on torch). Each route fails on some models (see ARCHITECTURE.md), and weights in a ``.keras``
file are backend-independent, so when the active backend's file does not validate, kerastk re-loads the saved
model under another backend in a subprocess, exports there and validates that file against the *same* Keras
model in this process. The first file that validates is moved to the output path; nothing that failed is left
there.

With ``optimize=True`` (the default) the route is chosen for the graph it gives, not for the backend that
trained the model: TensorFlow's exporter first, then JAX's, then torch's (BEST_GRAPH_ORDER; TensorFlow's graphs
keep one Transpose where the JAX and torch routes keep dozens, and run fastest in onnxruntime), then
onnxruntime's offline basic optimisation.
``optimize="measure"`` exports through every installed route and ships the one onnxruntime runs fastest.
"""
from __future__ import annotations

import dataclasses
import errno
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
#: The optimised export's order, whatever trained the model (benchmarks/registry_routes.py, batch 1): TensorFlow's
#: file is the fastest for 21 and within 1.1x of the fastest for 28 of the 33 registered models it exports; where
#: it fails (ResNeXt's grouped convolutions, VGG's tf2onnx memory) JAX's graphs beat torch's on 14 of the 25
#: models both export (ResNeXt-50: 52.9 ms against 68.8).
BEST_GRAPH_ORDER = ("tensorflow", "jax", "torch")


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
    optimize: str = "off"  # "rule", "measure" or "off" (see export_onnx)
    graph: dict = dataclasses.field(default_factory=dict)  # node / Transpose counts, bytes, batch-1 latency

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
    if proc.returncode == _WORKER_WRITE_ERROR:  # the output could not be written: no other route can help
        failure = json.loads(proc.stdout.strip().splitlines()[-1])
        raise OSError(failure["errno"], failure["message"])
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(f"{route} export failed: {lines[-1] if lines else 'exit code ' + str(proc.returncode)}")
    return json.loads(proc.stdout.strip().splitlines()[-1]).get("fixes", [])


def _routes(requested, active, optimize=False):
    from kerastk.backend import BACKENDS, backend_available

    if requested in (None, "auto"):
        # optimize: the routes in the order of their graphs' speed, whatever trained the model; else the active
        # backend first (no subprocess), then the others
        order = BEST_GRAPH_ORDER if optimize else (active, *ROUTE_PREFERENCE)
        return list(dict.fromkeys(r for r in order if r == active or backend_available(r)))
    routes = [requested] if isinstance(requested, str) else list(requested)
    for r in routes:
        if r not in BACKENDS:
            raise ValueError(f"Unknown export route {r!r}; expected 'auto' or one of {list(BACKENDS)}.")
    return routes


def _opset_of(path) -> int:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)


def graph_stats(path) -> dict:
    """Node count, Transpose count and size of an ONNX file (what the route choice and the card report)."""
    import collections

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    return {"nodes": len(graph.node), "transposes": ops.get("Transpose", 0), "bytes": Path(path).stat().st_size}


def optimize_graph(src, dst) -> None:
    """onnxruntime's offline graph optimisation at the *basic* level: constant folding, redundant node and
    Transpose elimination, Conv+BatchNorm/Add/Mul fusion - rewrites that keep standard ONNX operators, so the file
    stays portable (the extended level would write onnxruntime-only fused operators; onnxruntime applies those
    itself when it loads the file). JAX- and torch-route graphs lose most of their nodes (e.g. MobileNet from JAX:
    534 nodes / 81 Transposes -> 88 / 2)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    if not Path(dst).is_file():
        raise RuntimeError("onnxruntime wrote no optimised model")


OPTIMIZE_MODES = (True, False, "rule", "measure")
_WORKER_WRITE_ERROR = 3  # exit status of the export worker when its output cannot be written
#: OSErrors that mean the output cannot be written at all (no other route can help): they reach the caller.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _check_output_folder(path: Path) -> None:
    """Fail before any export work when the output folder cannot be created or written."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise type(exc)(exc.errno, f"Cannot create the output folder {str(parent)!r} for {path.name}: "
                                   f"{exc.strerror or exc}; expected a writable directory.") from None
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"The export path {str(path)!r} is a directory; expected a file name "
                                              f"such as {str(path / 'model.onnx')!r}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"The output folder {str(parent)!r} is not writable; choose another "
                                            f"folder (--out / -o) or fix its permissions.")


def _set_aside_export(path: Path) -> list[str]:
    """After a failed or interrupted export, an earlier file at `path` (and its card) must not look like this
    model's export; they may still be the only copy of a good export and its training figures, so they are
    renamed to `*.stale`, not deleted. Returns the new names."""
    from kerastk.deploy.runtime import card_path_for

    moved = []
    for p in (path, card_path_for(path)):
        if p.is_file():
            p.rename(p.with_name(p.name + ".stale"))  # replaces an older .stale (POSIX)
            moved.append(p.name + ".stale")
    return moved


def _export_route(model, r, active, candidate, opset, keras_path_holder, tmp):
    if r == active:
        return export_native(model, candidate, opset)
    if keras_path_holder[0] is None:
        keras_path_holder[0] = Path(tmp) / "model.keras"
        model.save(keras_path_holder[0])
    return export_in_subprocess(keras_path_holder[0], candidate, r, opset)


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def export_onnx(model_or_path, path, opset=None, *, route="auto", optimize=True, inputs=None, atol=DEFAULT_ATOL,
                batch_sizes=DEFAULT_BATCH_SIZES, verbose=False) -> ExportResult:
    """Export a Keras model (or a `.keras` file) to ONNX and prove it equal in onnxruntime.

    Args:
        model_or_path: a functional keras.Model, or a path to a `.keras` file.
        path: the output `.onnx` path.
        opset: ONNX opset (None: each exporter's default).
        route: "auto", a backend name, or a list of them (tried in order until one validates).
        optimize: the best graph, whatever backend trained the model. True / "rule": route "auto" tries the
            routes in BEST_GRAPH_ORDER (TensorFlow, JAX, torch: the order of their graphs' speed in onnxruntime,
            benchmarks/registry_routes.py; `kerastk bench --routes` for one model), then onnxruntime's offline
            basic optimisation (:func:`optimize_graph`), kept when it still validates.
            "measure": every installed route is exported, optimised, validated and timed at batch 1; the
            fastest ships. False: the active backend's exporter first, the file as the exporter wrote it.
        inputs: real inputs used for validation (random inputs fitting the model when None).
        atol: validation tolerance (max abs diff over every output).
        batch_sizes: batch sizes validated (two distinct sizes prove the batch axis is dynamic).

    Returns:
        ExportResult with the route used, seconds, opset, the ValidationReport and `graph` (node / Transpose
        counts before and after optimisation, bytes, batch-1 onnxruntime latency of the shipped file).

    Raises:
        ExportError when no route gives a file that validates; OSError when the output cannot be written (folder
        missing rights, disk full); nothing is left at `path` after any failure or interruption, and a stale file
        (and card) from an earlier export there is removed.
    """
    import keras

    import kerastk.layers  # noqa: F401  (registers custom layers for loading)
    from kerastk.backend import active_backend

    if optimize not in OPTIMIZE_MODES:
        raise ValueError(f"optimize must be True, False, 'rule' or 'measure'; received {optimize!r}.")
    start = time.perf_counter()
    keras_path = None
    if isinstance(model_or_path, (str, os.PathLike)):
        keras_path = Path(model_or_path)
        if not keras_path.is_file():
            raise FileNotFoundError(f"No Keras model at {str(keras_path)!r} (expected a .keras file).")
        from kerastk.deploy.validate import load_keras

        model = load_keras(keras_path)
    else:
        model = model_or_path
    if not isinstance(model, keras.Model):
        raise TypeError(f"export_onnx needs a keras.Model or a .keras path; received {type(model).__name__}.")

    path = Path(path)
    _check_output_folder(path)
    active = active_backend()
    measure = optimize == "measure"
    routes = _routes(route, active, optimize=bool(optimize))
    if measure and route in (None, "auto"):
        from kerastk.backend import BACKENDS, backend_available

        routes = [r for r in BACKENDS if r == active or backend_available(r)]
    attempts, shipped = [], []
    try:
        # Candidates are written beside the output (same file system), so the final move is an atomic rename.
        with tempfile.TemporaryDirectory(prefix=".kerastk-export-", dir=path.parent) as tmp:
            holder = [keras_path]
            for r in routes:
                candidate = Path(tmp) / f"{r}.onnx"
                t0 = time.perf_counter()
                try:
                    fixes = _export_route(model, r, active, candidate, opset, holder, tmp)
                except OSError as exc:
                    if exc.errno in _WRITE_ERRNOS:
                        raise OSError(exc.errno, f"Writing the {r} export for {str(path)!r} failed: "
                                                 f"{exc.strerror or exc}. Nothing was left at {str(path)!r}; free "
                                                 f"space or choose another output folder.") from exc
                    attempts.append(_failed(r, t0, exc, verbose))
                    continue
                except Exception as exc:
                    attempts.append(_failed(r, t0, exc, verbose))
                    continue
                report = validate_onnx(candidate, model, inputs=inputs, atol=atol, batch_sizes=batch_sizes)
                attempt = {"route": r, "seconds": round(time.perf_counter() - t0, 2), "graph_fixes": fixes,
                           "validation": report.to_dict()}
                attempts.append(attempt)
                if verbose:
                    print(f"[kerastk.export] route {r}: {report}", file=sys.stderr)
                if not report.passed:
                    continue
                graph = {"exported": graph_stats(candidate)}
                if optimize:
                    candidate, report = _optimized(candidate, model, report, graph, inputs, atol, batch_sizes)
                graph.update(graph_stats(candidate))
                graph["latency_ms_batch1"] = _batch1_latency(candidate, inputs, graph)
                attempt["graph"] = graph
                shipped.append((graph["latency_ms_batch1"] or float("inf"), r, candidate, report, graph))
                if not measure:
                    break
            if shipped:
                _, r, candidate, report, graph = min(shipped, key=lambda s: s[0])
                opset_used = _opset_of(candidate)
                try:
                    os.replace(candidate, path)
                except OSError as exc:
                    raise OSError(exc.errno, f"Moving the validated export into place at {str(path)!r} failed: "
                                             f"{exc.strerror or exc}. Nothing was left at {str(path)!r}; free "
                                             f"space or choose another output folder.") from exc
                report.path = str(path)
                return ExportResult(str(path), active, r, round(time.perf_counter() - start, 2), opset_used,
                                    report, attempts, "measure" if measure else ("rule" if optimize else "off"),
                                    graph)
    except BaseException:
        _set_aside_export(path)  # interrupted, disk full...: no file may look like this model's export
        raise
    moved = _set_aside_export(path)  # a file from an earlier run must not look like this model's export
    summary = "; ".join(
        f"{a['route']}: {a.get('error') or ValidationReport(**a['validation'])}" for a in attempts
    )
    aside = f" The earlier export was renamed {', '.join(moved)}." if moved else ""
    raise ExportError(f"No export route produced an ONNX file that validates ({summary}).{aside}", attempts)


def _failed(r, t0, exc, verbose) -> dict:
    msg = _first_line(exc)
    if verbose:
        print(f"[kerastk.export] route {r}: export failed ({msg})", file=sys.stderr)
    return {"route": r, "seconds": round(time.perf_counter() - t0, 2), "error": f"{type(exc).__name__}: {msg}"}


def _batch1_latency(path, inputs, graph):
    """Median batch-1 onnxruntime latency (ms) of `path` on the first validation row; None (the reason in
    `graph`) when it cannot be measured - the file has validated, so that never fails the export."""
    from kerastk.deploy.timing import ort_latency
    from kerastk.deploy.feeds import as_arrays

    try:
        rows = as_arrays(inputs) if inputs is not None else None
        return ort_latency(path, 1, inputs=rows, warmup=2, repeats=15, max_seconds=3)["median_ms"]
    except Exception as exc:
        graph["latency_error"] = f"{type(exc).__name__}: {_first_line(exc)}"
        return None


def _optimized(candidate, model, report, graph, inputs, atol, batch_sizes):
    """The offline-optimised file when it still validates, else the exporter's file (the reason in `graph`)."""
    optimized = candidate.with_name(candidate.stem + ".opt.onnx")
    try:
        optimize_graph(candidate, optimized)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:
            raise
        graph["optimizer"] = f"skipped: {type(exc).__name__}: {_first_line(exc)}"
        return candidate, report
    except Exception as exc:
        graph["optimizer"] = f"skipped: {type(exc).__name__}: {_first_line(exc)}"
        return candidate, report
    opt_report = validate_onnx(optimized, model, inputs=inputs, atol=atol, batch_sizes=batch_sizes)
    if not opt_report.passed:
        graph["optimizer"] = f"not used (optimised file failed validation: {opt_report})"
        return candidate, report
    graph["optimizer"] = f"onnxruntime {_ort_version()} offline, basic level"
    return optimized, opt_report


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


def main_worker(argv=None) -> int:
    """Entry point of `python -m kerastk.deploy._worker SRC.keras OUT.onnx [--opset N]`."""
    import argparse

    parser = argparse.ArgumentParser(description="Export a .keras file with the active backend's exporter.")
    parser.add_argument("keras_path")
    parser.add_argument("onnx_path")
    parser.add_argument("--opset", type=int, default=None)
    args = parser.parse_args(argv)
    import keras

    from kerastk.deploy.validate import load_keras

    model = load_keras(args.keras_path)
    try:
        fixes = export_native(model, args.onnx_path, args.opset)
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        print(json.dumps({"errno": exc.errno, "message": exc.strerror or str(exc)}))
        return _WORKER_WRITE_ERROR
    print(json.dumps({"route": keras.backend.backend(), "path": args.onnx_path, "fixes": fixes}))
    return 0
