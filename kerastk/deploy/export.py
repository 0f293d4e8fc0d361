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
import sys
import tempfile
import time
import warnings
from pathlib import Path

from kerastk.core.errors import ExporterFailure, ExportError, RoundTripError, first_line  # noqa: F401 - public here
from kerastk.deploy.export_worker import export_in_subprocess  # noqa: F401 - public here too
from kerastk.deploy.feeds import input_names, output_names
from kerastk.deploy.metadata import finalize_graph
from kerastk.deploy.parity import DEFAULT_RTOL, UNDECIDED
from kerastk.deploy.validate import DEFAULT_ATOL, DEFAULT_BATCH_SIZES, ParityCheck, ValidationReport

#: Fallback order after the active backend: TensorFlow's graphs are the cleanest (see ARCHITECTURE.md).
ROUTE_PREFERENCE = ("tensorflow", "torch", "jax")
#: The optimised export's order, whatever trained the model (kerastk bench registry-routes, batch 1): TensorFlow's
#: file is the fastest for 21 and within 1.1x of the fastest for 28 of the 33 registered models it exports; where
#: it fails (ResNeXt's grouped convolutions, VGG's tf2onnx memory) JAX's graphs beat torch's on 14 of the 25
#: models both export (ResNeXt-50: 52.9 ms against 68.8).
BEST_GRAPH_ORDER = ("tensorflow", "jax", "torch")


@dataclasses.dataclass
class ExportAttempt:
    """One route tried by export_onnx: how long it took, and either the exporter's error or the file's parity
    (with the graph fixes applied and, for a file that shipped or could have, its graph figures). Reads like the
    card's `export_attempts` entries too (`attempt["route"]`, `attempt.get("error")`): that view is to_dict()."""

    route: str
    seconds: float
    error: str | None = None  # "ExceptionType: first line" when the route's exporter failed
    graph_fixes: list | None = None  # kerastk.deploy.onnx_fixes rewrites applied to the exporter's file
    validation: ValidationReport | None = None
    graph: dict | None = None  # node / Transpose counts, bytes, batch-1 latency (a file that validated)

    def why_not(self) -> str:
        """The reason this route's file was not shipped, in one line."""
        return self.error or self.validation.message or "parity failed"

    def to_dict(self) -> dict:
        d = {"route": self.route, "seconds": self.seconds}
        if self.error is not None:
            d["error"] = self.error
        if self.graph_fixes is not None:
            d["graph_fixes"] = self.graph_fixes
        if self.validation is not None:
            d["validation"] = self.validation.to_dict()
        if self.graph is not None:
            d["graph"] = self.graph
        return d

    def __getitem__(self, key):
        return self.to_dict()[key]

    def get(self, key, default=None):
        return self.to_dict().get(key, default)

    def __contains__(self, key) -> bool:
        return key in self.to_dict()


@dataclasses.dataclass
class ExportResult:
    path: str
    backend: str  # the backend active in this process
    route: str  # the backend whose exporter produced the file
    seconds: float
    opset: int
    validation: ValidationReport
    attempts: list  # [ExportAttempt] in the order tried
    optimize: str = "off"  # "rule", "measure" or "off" (see export_onnx)
    graph: dict = dataclasses.field(default_factory=dict)  # node / Transpose counts, bytes, batch-1 latency

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["validation"] = self.validation.to_dict()
        d["attempts"] = [a.to_dict() for a in self.attempts]
        return d


def input_signature(model, signature=None):
    """Named InputSpecs with a dynamic batch axis, in the structure Model.export expects (a list of the
    positional arguments of the model's call): a functional model's input structure (a dict input keeps its keys
    as names), a Sequential model's input, a subclassed model's built shapes - or `signature` when given
    (kerastk.deploy.feeds.input_structure)."""
    from kerastk.deploy.feeds import input_structure, set_input_signature

    if signature is not None:
        set_input_signature(model, signature)
    return input_structure(model)


def clean_message(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text).strip()


def exporter_message(exc) -> str:
    """What went wrong in an exporter, in one line: the layer a Keras error names and the exporter's own message
    (Keras wraps a layer's error as "Exception encountered when calling X.call()", JAX chains a note about its
    removed frames, torch dumps its graph in a chained error: none of those says what failed)."""
    import re

    seen, e = set(), exc
    while e is not None and id(e) not in seen:  # the first exception in the chain with a message of its own
        seen.add(id(e))
        text = clean_message(str(e))
        layer = None
        m = re.search(r"Exception encountered when calling (?:layer )?'?([\w.]+?)'?(?:\.call)?\(\)", text)
        if m:
            layer = m.group(1)
            text = text[m.end():].split("Arguments received by", 1)[0].strip(" .\n")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "internal frames" not in ln
                 and not ln.startswith("The preceding stack trace") and not set(ln.strip()) <= set("-=")]
        if lines:
            where = f"in layer {layer}: " if layer else ""
            text = " ".join(lines[:3])
            text = re.sub(r", scope: \S+", "", text)  # torch: the module path of every node
            text = re.sub(r"\S*site-packages/", "", text)
            return f"{where}{type(e).__name__}: {text[:400]}"
        e = e.__cause__ or e.__context__
    return type(exc).__name__


def export_native(model, path, opset=None, signature=None) -> list[str]:
    """Export with the active backend's exporter (Keras's Model.export), dynamic batch axis, then apply the
    graph fixes that backend's output needs (kerastk.deploy.onnx_fixes). Returns the fixes applied.

    On TensorFlow the concrete function Keras builds is converted here (as Model.export does) so that the
    constants its graph captures (position ids, attention masks, normalisation statistics - tf2onnx makes them
    graph inputs) are folded into the file as initializers."""
    import gc
    import warnings

    import keras

    from kerastk.deploy.feeds import ensure_built, input_names
    from kerastk.deploy.onnx_fixes import apply_fixes
    from kerastk.deploy.tf2onnx_convert import convert_tensorflow

    sig = input_signature(model, signature)
    ensure_built(model)
    constants = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if keras.backend.backend() == "tensorflow":
                constants = convert_tensorflow(model, path, sig, opset)
            elif keras.backend.backend() == "torch":
                _export_torch(model, path, sig, opset)
            else:
                model.export(str(path), format="onnx", input_signature=sig, opset_version=opset, verbose=False)
    except OSError:
        raise
    except Exception as exc:
        raise ExporterFailure(f"{keras.backend.backend()} exporter: {exporter_message(exc)}") from exc
    gc.collect()  # the converters leave graph copies in reference cycles until the next collection
    return apply_fixes(path, keras.backend.backend(), constants=constants, expected_inputs=input_names(model))


def _export_torch(model, path, sig, opset) -> None:
    """Keras's torch ONNX export with the variables' gradients off: a subclassed model re-loaded from `.keras`
    registers its variables on the model rather than on the layers that read them, and torch's tracer refuses
    "a Tensor that requires grad as a constant" there (the values are the same; ONNX stores them as
    initializers either way)."""
    params = [v.value for v in model.variables if getattr(v.value, "requires_grad", False)]
    for p in params:
        p.requires_grad_(False)
    try:
        model.export(str(path), format="onnx", input_signature=sig, opset_version=opset, verbose=False)
    finally:
        for p in params:
            p.requires_grad_(True)


def signature_json(model) -> str | None:
    """The input signature given for a model without one of its own, as JSON for the export worker."""
    import keras

    from kerastk.deploy.feeds import SIGNATURES, input_structure

    if model not in SIGNATURES:
        return None
    return json.dumps(keras.tree.map_structure(
        lambda s: {"__spec__": [list(s.shape), str(s.dtype), s.name]}, input_structure(model)))


def signature_from_json(text):
    import keras

    def hook(d):
        if "__spec__" in d:
            shape, dtype, name = d["__spec__"]
            return keras.InputSpec(shape=tuple(shape), dtype=dtype, name=name)
        return d

    return json.loads(text, object_hook=hook)


def user_modules(model) -> list[tuple[str, str | None]]:
    """(module, file) of every non-Keras class in the model (the model's own class, its custom layers): what a
    subprocess must import before it can load the model's `.keras` file. `__main__` comes with the script path."""
    import inspect

    from kerastk.deploy.feeds import all_layers

    found = {}
    for obj in (model, *all_layers(model)):
        cls = type(obj)
        module = cls.__module__
        if module.split(".")[0] in ("keras", "tensorflow", "tf_keras", "builtins", "kerastk") or module in found:
            continue
        try:
            file = inspect.getsourcefile(cls) or getattr(sys.modules.get(module), "__file__", None)
        except (TypeError, OSError):
            file = getattr(sys.modules.get(module), "__file__", None)
        found[module] = str(Path(file).resolve()) if file else None
    return list(found.items())


def import_user_modules(modules) -> dict:
    """Import each (module, file) of :func:`user_modules` (a `__main__` script under another name, its
    `if __name__ == "__main__"` block not run); returns the Keras classes they define, by name, for
    custom_objects."""
    import importlib
    import importlib.util
    import inspect

    import keras

    objects = {}
    for module, file in modules:
        mod = sys.modules.get(module) if module != "__main__" else None
        if mod is None and module != "__main__":
            if file:  # the folder the package lives in, so `tests.test_any_model` imports from anywhere
                root = Path(file).parent
                for _ in module.split(".")[1:]:
                    root = root.parent
                if str(root) not in sys.path:
                    sys.path.insert(0, str(root))
            try:
                mod = importlib.import_module(module)
            except Exception as exc:
                raise ImportError(f"Cannot import {module!r} (which defines the model's classes) in the export "
                                  f"subprocess: {type(exc).__name__}: {clean_message(str(exc))[:300]}") from exc
        elif mod is None:
            if not file:
                raise ImportError("The model's classes are defined in __main__ with no script file (an interactive "
                                  "session); define them in a module to export through another backend.")
            spec = importlib.util.spec_from_file_location("__kerastk_user_main__", file)
            mod = importlib.util.module_from_spec(spec)
            sys.modules["__kerastk_user_main__"] = mod
            spec.loader.exec_module(mod)
        for name, value in vars(mod).items():
            if inspect.isclass(value) and issubclass(value, (keras.layers.Layer, keras.Model)) \
                    and value.__module__ in (module, getattr(mod, "__name__", module)):
                objects[name] = value
    return objects


def check_round_trip(model, keras_path, modules=()) -> None:
    """Load `keras_path` back in this process and compare every variable with the model's (path, shape, values);
    raise RoundTripError naming the first that differs."""
    import keras
    import numpy as np

    from kerastk.deploy.validate import load_keras

    try:
        with keras.saving.custom_object_scope(import_user_modules(modules)):
            reloaded = load_keras(keras_path)
    except Exception as exc:
        raise RoundTripError(f"the model cannot be re-loaded from its .keras file ({clean_message(str(exc))[:300]})") \
            from exc
    before, after = model.weights, reloaded.weights
    if len(before) != len(after):
        raise RoundTripError(f"the re-loaded model has {len(after)} variables, the model {len(before)}")
    for a, b in zip(before, after):
        va, vb = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        if va.shape != vb.shape:
            raise RoundTripError(f"variable {a.path!r} has shape {tuple(va.shape)} in the model, "
                                 f"{tuple(vb.shape)} ({b.path!r}) once re-loaded")
        if not np.array_equal(va, vb, equal_nan=True):
            worst = float(np.max(np.abs(va.astype(np.float64) - vb.astype(np.float64)), initial=0.0))
            raise RoundTripError(f"variable {a.path!r} differs once re-loaded (max abs diff {worst:.3g})")


def route_order(requested, active, optimize=False):
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
#: OSErrors that mean the output cannot be written at all (no other route can help): they reach the caller.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


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


def _export_route(model, r, active, candidate, opset, keras_path_holder, tmp, signature=None):
    """Export through route `r`: in this process for the active backend, else from a saved `.keras` copy in a
    subprocess - once that copy is proven to round-trip (every variable equal once re-loaded); a model that does
    not can only take the in-process route, and every subprocess route fails with the reason."""
    if r == active:
        return export_native(model, candidate, opset) if signature is None else \
            export_native(model, candidate, opset, signature=signature)
    modules = user_modules(model)
    if len(keras_path_holder) < 2:
        keras_path_holder.append(None)  # the round-trip failure, once checked
    if keras_path_holder[0] is None:
        keras_path_holder[0] = Path(tmp) / "model.keras"
        try:
            model.save(keras_path_holder[0])
            check_round_trip(model, keras_path_holder[0], modules)
        except OSError:
            raise
        except Exception as exc:
            reason = clean_message(str(exc)) if isinstance(exc, RoundTripError) else \
                f"saving it failed ({type(exc).__name__}: {clean_message(str(exc))[:300]})"
            keras_path_holder[1] = reason
    if keras_path_holder[1]:
        raise RoundTripError(f"the model does not round-trip through .keras: {keras_path_holder[1]}; the {r} route "
                             f"re-loads a saved copy, so only the in-process route ({active}) can export it")
    return export_in_subprocess(keras_path_holder[0], candidate, r, opset, modules=modules,
                                signature=signature_json(model))


def _first_line(exc) -> str:
    return first_line(exc, default=type(exc).__name__)


def export_onnx(model_or_path, path, opset=None, *, route="auto", optimize=True, inputs=None, atol=DEFAULT_ATOL,
                batch_sizes=DEFAULT_BATCH_SIZES, verbose=False, input_signature=None,
                rtol=DEFAULT_RTOL) -> ExportResult:
    """Export a Keras model (or a `.keras` file) to ONNX and prove it equal in onnxruntime.

    Args:
        model_or_path: a functional keras.Model, or a path to a `.keras` file.
        path: the output `.onnx` path.
        opset: ONNX opset (None: each exporter's default).
        route: "auto", a backend name, or a list of them (tried in order until one validates).
        optimize: the best graph, whatever backend trained the model. True / "rule": route "auto" tries the
            routes in BEST_GRAPH_ORDER (TensorFlow, JAX, torch: the order of their graphs' speed in onnxruntime,
            `kerastk bench registry-routes`; `kerastk bench --routes` for one model), then onnxruntime's offline
            basic optimisation (:func:`optimize_graph`), kept when it still validates.
            "measure": every installed route is exported, optimised, validated and timed at batch 1; the
            fastest ships. False: the active backend's exporter first, the file as the exporter wrote it.
        inputs: real inputs used for validation (random inputs fitting the model when None).
        atol: an absolute floor added to the validation criterion (kerastk.deploy.parity: 0 by default; the
            relative tolerance follows each output's values).
        batch_sizes: batch sizes validated (two distinct sizes prove the batch axis is dynamic).
        input_signature: the inputs of a model that records none of its own (a subclassed model built some other
            way than by calling it): a keras.InputSpec, a dict of them, or a list with one structure per
            positional argument of `call` (Model.export's form). None: the model's inputs, or for a subclassed
            model the shapes it was built with.

    Returns:
        ExportResult with the route used, seconds, opset, the ValidationReport and `graph` (node / Transpose
        counts before and after optimisation, bytes, batch-1 onnxruntime latency of the shipped file).

    Raises:
        ExportError when no route gives a file that validates (a file whose parity is undecided - nothing
        failed, but no output depends on the inputs checked - ships with a warning when no route passes);
        OSError when the output cannot be written (folder missing rights, disk full); nothing is left at `path`
        after any failure or interruption, and a stale file (and card) from an earlier export there is removed.
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

    if input_signature is not None:
        from kerastk.deploy.feeds import set_input_signature

        set_input_signature(model, input_signature)  # validation feeds follow it too
    path = Path(path)
    _check_output_folder(path)
    active = active_backend()
    measure = optimize == "measure"
    routes = route_order(route, active, optimize=bool(optimize))
    if measure and route in (None, "auto"):
        from kerastk.backend import BACKENDS, backend_available

        routes = [r for r in BACKENDS if r == active or backend_available(r)]
    attempts, shipped, undecided, check = [], [], [], None
    try:
        # Candidates are written beside the output (same file system), so the final move is an atomic rename.
        with tempfile.TemporaryDirectory(prefix=".kerastk-export-", dir=path.parent) as tmp:
            holder = [keras_path]
            for r in routes:
                candidate = Path(tmp) / f"{r}.onnx"
                t0 = time.perf_counter()
                try:
                    fixes = _export_route(model, r, active, candidate, opset, holder, tmp, input_signature)
                    # Keras's input/output names, used opset domains only, producer kerastk: the file validated
                    # below is the file shipped (kerastk.deploy.metadata)
                    finalize_graph(candidate, input_names(model), output_names(model))
                except OSError as exc:
                    if exc.errno in WRITE_ERRNOS:
                        raise OSError(exc.errno, f"Writing the {r} export for {str(path)!r} failed: "
                                                 f"{exc.strerror or exc}. Nothing was left at {str(path)!r}; free "
                                                 f"space or choose another output folder.") from exc
                    attempts.append(_failed(r, t0, exc, verbose))
                    continue
                except Exception as exc:
                    attempts.append(_failed(r, t0, exc, verbose))
                    continue
                if check is None:  # Keras's side once for every route and the optimised copies
                    check = ParityCheck(model, inputs, atol, batch_sizes, rtol=rtol)
                report = check.check(candidate)
                attempt = ExportAttempt(r, round(time.perf_counter() - t0, 2), graph_fixes=fixes,
                                        validation=report)
                attempts.append(attempt)
                if verbose:
                    print(f"[kerastk.export] route {r}: {report}", file=sys.stderr)
                if report.verdict == UNDECIDED:
                    undecided.append((r, candidate, report, attempt))  # another route may expose the logits
                    continue
                if not report.passed:
                    continue
                graph = {"exported": graph_stats(candidate)}
                if optimize:
                    candidate, report = _optimized(candidate, check, report, graph)
                graph.update(graph_stats(candidate))
                graph["latency_ms_batch1"] = _batch1_latency(candidate, inputs, graph)
                attempt.graph = graph
                shipped.append((graph["latency_ms_batch1"] or float("inf"), r, candidate, report, graph))
                if not measure:
                    break
            if not shipped and undecided:  # nothing failed, nothing could decide: shipped, and said so
                r, candidate, report, attempt = undecided[0]
                graph = {"exported": graph_stats(candidate), **graph_stats(candidate)}
                graph["latency_ms_batch1"] = _batch1_latency(candidate, inputs, graph)
                attempt.graph = graph
                shipped.append((0.0, r, candidate, report, graph))
                warnings.warn(f"The {r} export of {model.name!r} matches Keras, but its parity is UNDECIDED: every "
                              "compared output gives the same values for every input checked, so a file with other "
                              "weights would match as well (pass real inputs that exercise the model).",
                              stacklevel=2)
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
    summary = "; ".join(f"{a.route}: {a.error or a.validation}" for a in attempts)
    aside = f" The earlier export was renamed {', '.join(moved)}." if moved else ""
    raise ExportError(f"No export route produced an ONNX file that validates ({summary}).{aside}", attempts)


def _failed(r, t0, exc, verbose) -> ExportAttempt:
    msg = _first_line(exc)
    if verbose:
        print(f"[kerastk.export] route {r}: export failed ({msg})", file=sys.stderr)
    return ExportAttempt(r, round(time.perf_counter() - t0, 2), error=f"{type(exc).__name__}: {msg}")


def _batch1_latency(path, inputs, graph):
    """Median batch-1 onnxruntime latency (ms) of `path` on the first validation row; None (the reason in
    `graph`) when it cannot be measured - the file has validated, so that never fails the export."""
    from kerastk.deploy.feeds import as_arrays
    from kerastk.deploy.timing import ort_latency

    try:
        rows = as_arrays(inputs) if inputs is not None else None
        return ort_latency(path, 1, inputs=rows, warmup=2, repeats=15, max_seconds=3)["median_ms"]
    except Exception as exc:
        graph["latency_error"] = f"{type(exc).__name__}: {_first_line(exc)}"
        return None


def _optimized(candidate, check, report, graph):
    """The offline-optimised file when it still validates, else the exporter's file (the reason in `graph`)."""
    optimized = candidate.with_name(candidate.stem + ".opt.onnx")
    try:
        optimize_graph(candidate, optimized)
        finalize_graph(optimized, input_names(check.model), output_names(check.model))  # ORT re-adds opset domains
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise
        graph["optimizer"] = f"skipped: {type(exc).__name__}: {_first_line(exc)}"
        return candidate, report
    except Exception as exc:
        graph["optimizer"] = f"skipped: {type(exc).__name__}: {_first_line(exc)}"
        return candidate, report
    opt_report = check.check(optimized)
    if not opt_report.passed:
        graph["optimizer"] = f"not used (optimised file failed validation: {opt_report})"
        return candidate, report
    graph["optimizer"] = f"onnxruntime {_ort_version()} offline, basic level"
    return optimized, opt_report


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__
