"""Prove an ONNX file equal to its Keras model in a runtime, on real inputs, at two batch sizes.

Every graph output is compared by the criterion of :mod:`kerastk.deploy.parity` (a tolerance that follows the
values). Where an output ends in a softmax or a sigmoid, the *logits* before it are compared too: a softmax over
1000 classes of an untrained network is uniform to float32 precision (every value 1e-3), so its probabilities
cannot tell a corrupted file from the genuine one, while its logits still can. Outputs whose rows are all equal
prove nothing; a report in which nothing could decide is "undecided", never "passed".
"""
from __future__ import annotations

import dataclasses

import numpy as np

from kerastk.core.errors import first_line
from kerastk.deploy.feeds import (  # noqa: F401  (sample_inputs, keras_outputs: public here too)
    as_arrays,
    keras_outputs,
    output_names,
    sample_inputs,
    shorter_sequences,
    take_batch,
    variable_length_inputs,
)
from kerastk.deploy.parity import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    FAILED,
    PASSED,
    UNDECIDED,
    OutputParity,  # noqa: F401 - public here too
    argmax_counts,
    compare_tensor,
    criterion_text,
    overall_verdict,
)

DEFAULT_BATCH_SIZES = (1, 8)
#: Output activations whose inputs (the logits) are compared too; the ONNX op each exporter writes for them.
_SATURATING = {"softmax": "Softmax", "sigmoid": "Sigmoid"}


@dataclasses.dataclass
class ValidationReport:
    """Parity figures between a Keras model and its ONNX export (see kerastk.deploy.parity for the criterion)."""

    path: str
    passed: bool  # verdict == "passed"
    max_abs_diff: float  # over every graph output (logits not included)
    # fraction of decisive rows whose argmax agrees (None when no row is decisive or outputs have one unit); rows
    # whose two best Keras scores are closer than twice the tolerance are ties, counted in `argmax_ties`
    argmax_agreement: float | None
    batch_sizes: tuple
    atol: float
    message: str = ""
    sequence_lengths: tuple = ()  # time-axis lengths checked when the model accepts variable-length sequences
    argmax_ties: int = 0
    verdict: str = FAILED  # passed | failed | undecided
    rtol: float = DEFAULT_RTOL
    max_rel_diff: float = 0.0  # over every compared tensor, logits included
    criterion: str = ""
    runtime: str = "onnxruntime"
    outputs: list = dataclasses.field(default_factory=list)  # one OutputParity dict per compared tensor

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        agree = "n/a" if self.argmax_agreement is None else f"{100 * self.argmax_agreement:.2f}%"
        text = (f"{self.verdict.upper()}: max abs diff {self.max_abs_diff:.3g}, max rel diff "
                f"{self.max_rel_diff:.3g} ({self.criterion or 'criterion n/a'}), argmax agreement {agree}, "
                f"batch sizes {list(self.batch_sizes)}")
        if self.runtime != "onnxruntime":
            text += f", runtime {self.runtime}"
        if self.sequence_lengths:
            text += f", sequence lengths {list(self.sequence_lengths)}"
        if self.argmax_ties:
            text += f" ({self.argmax_ties} tied rows left out of the agreement)"
        undecided = [o["name"] for o in self.outputs if o["verdict"] == UNDECIDED]
        if self.verdict == UNDECIDED:
            text += " - nothing could decide: every compared output gives the same values for every input"
        elif undecided:
            text += f" (undecided alone: {', '.join(undecided)})"
        failed = [f"{o['kind']} {o['name']}" for o in self.outputs if o["verdict"] == FAILED]
        if failed:
            text += f" (failed: {', '.join(failed)})"
        return f"{text} - {self.message}" if self.message else text


def onnx_outputs(session, arrays) -> list[np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(arrays):
        raise ValueError(f"The ONNX model has {len(names)} inputs ({names}); received {len(arrays)} arrays.")
    return session.run(None, dict(zip(names, arrays)))


def make_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # failures reach the caller as exceptions; no duplicate console lines
    source = path if isinstance(path, bytes) else str(path)  # a file, or a serialised model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _unregistered_classes(path) -> list[str]:
    """Names of the non-Keras classes a `.keras` file's config.json refers to that this process cannot resolve."""
    import json
    import zipfile

    import keras

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except Exception:
        return []
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node and "config" in node:
                name = node.get("registered_name") or node["class_name"]
                module = node.get("module") or ""
                if (isinstance(name, str) and not name.startswith("__") and not module.startswith("keras")
                        and keras.saving.get_registered_object(name) is None and name not in found):
                    found.append(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def load_keras(path):
    """Load a `.keras` file (compile=False, kerastk's layers registered) with a clear error for a missing file, a
    file that is not a Keras archive, or one that names layers this installation does not know."""
    import zipfile
    from pathlib import Path

    import keras

    import kerastk.layers  # noqa: F401  (registers custom layers)

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No Keras model at {str(path)!r} (expected a .keras file).")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not a Keras 3 `.keras` archive (a zip with config.json and weights); "
                         f"save the model with model.save('model.keras').")
    with zipfile.ZipFile(path) as archive:
        missing = {"config.json", "model.weights.h5"} - set(archive.namelist())
    if missing:
        raise ValueError(f"{str(path)!r} is a zip but not a Keras 3 `.keras` archive: {sorted(missing)} missing; "
                         f"save the model with model.save('model.keras').")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:
        unknown = _unregistered_classes(path)
        if unknown:
            raise ValueError(f"{str(path)!r} uses class(es) not registered in this process: {', '.join(unknown)}; "
                             "import the module that defines them (decorated with "
                             "@keras.saving.register_keras_serializable) before loading, or pass "
                             "custom_objects to keras.saving.load_model.") from None
        raise ValueError(f"Keras cannot load {str(path)!r}: {type(exc).__name__}: "
                         f"{first_line(exc)} (a layer from a "
                         f"package that is not imported, or a file from an incompatible Keras version?)") from None


def _activation_name(layer) -> str | None:
    """'softmax' / 'sigmoid' when `layer` applies one last (a Dense/Conv activation, Activation, Softmax)."""
    import keras

    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", activation if isinstance(activation, str) else None)
    return name if name in _SATURATING else None


def logit_taps(model) -> list[tuple]:
    """(output index, layer, input tensor, activation) for every functional-model output that a softmax or
    sigmoid produces: what the logits are computed from. Empty for subclassed models."""
    taps = []
    try:
        outputs = list(model.outputs)
    except (AttributeError, ValueError):
        return taps
    for i, tensor in enumerate(outputs):
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        layer = history.operation
        activation = _activation_name(layer)
        node = layer._inbound_nodes[history.node_index] if getattr(layer, "_inbound_nodes", None) else None
        if activation is None or node is None or len(node.input_tensors) != 1:
            continue
        taps.append((i, layer, node.input_tensors[0], activation))
    return taps


def _keras_logits(layer, features):
    """The layer's output before its activation: its input for Activation/Softmax, else the layer called with a
    linear activation (the same weights)."""
    import keras

    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        return np.asarray(features)
    saved = layer.activation
    layer.activation = keras.activations.linear
    try:
        return np.asarray(keras.ops.convert_to_numpy(layer(features)))
    finally:
        layer.activation = saved


class _KerasSide:
    """Keras's outputs and, where the model has logit taps, the logits (one predict per batch)."""

    def __init__(self, model):
        import keras

        self.model, self.taps, self.probe = model, logit_taps(model), None
        if self.taps:
            try:
                self.probe = keras.Model(model.inputs, [*model.outputs, *[t[2] for t in self.taps]])
            except Exception:  # a graph Keras cannot cut there: outputs only
                self.taps = []

    def run(self, batch):
        if self.probe is None:
            return keras_outputs(self.model, batch), []
        values = keras_outputs(self.probe, batch)
        n = len(values) - len(self.taps)
        logits = [_keras_logits(layer, f) for (_, layer, _, _), f in zip(self.taps, values[n:])]
        return values[:n], logits


def _graph_with_logits(path, taps):
    """The ONNX model (bytes) with the inputs of the Softmax / Sigmoid nodes that produce tapped outputs added as
    graph outputs, and for each tap the logits' position among the graph outputs (None where the graph computes
    the activation some other way)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    positions, added = [], {}
    for out_index, _, _, activation in taps:
        position = None
        if out_index < len(graph.output):
            node = producer.get(graph.output[out_index].name)
            while node is not None and node.op_type == "Identity":
                node = producer.get(node.input[0])
            if node is not None and node.op_type == _SATURATING[activation] and node.input[0] in producer:
                name = node.input[0]
                if name not in added:
                    elem = graph.output[out_index].type.tensor_type.elem_type
                    graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
                    added[name] = len(graph.output) - 1
                position = added[name]
        positions.append(position)
    return (model.SerializeToString() if added else None), positions


def _session(path, runtime, model_bytes, tmp):
    if runtime == "openvino":
        from kerastk.deploy.openvino import make_session as openvino_session

        if model_bytes is not None:
            path = f"{tmp}/with_logits.onnx"
            with open(path, "wb") as f:
                f.write(model_bytes)
        return openvino_session(path)
    return make_session(model_bytes if model_bytes is not None else path)


def _check_runtime(runtime):
    """A ValueError for an unknown runtime, RuntimeNotInstalled (an ImportError naming the extra) for one that is
    not installed - before any work."""
    from kerastk.deploy.openvino import require_runtime

    require_runtime(runtime)


class ParityCheck:
    """The Keras side of a parity check, computed once: inputs, batch sizes, sequence lengths, Keras outputs and
    logits. ``check(path)`` compares one ONNX file against them (an export validates a candidate and its
    optimised copy; a mutation test validates many files) - see :func:`validate_onnx` for the arguments."""

    def __init__(self, model, inputs=None, atol: float = DEFAULT_ATOL, batch_sizes=DEFAULT_BATCH_SIZES, *,
                 rtol: float = DEFAULT_RTOL):
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            model = load_keras(model)
        self.model, self.atol, self.rtol = model, atol, rtol
        self.batch_sizes = tuple(int(b) for b in batch_sizes)
        arrays = as_arrays(inputs, model) if inputs is not None else sample_inputs(model, max(self.batch_sizes))
        variable = variable_length_inputs(model)
        # (rows, inputs) pairs to compare: each batch size, then - for variable-length sequence models - a second
        # sequence length, which a graph that baked the example's length in cannot run
        self.checks = [(n, take_batch(arrays, n)) for n in self.batch_sizes]
        if variable:
            self.checks.append((2, shorter_sequences(take_batch(arrays, 2), variable)))
        self.lengths = tuple(sorted({int(c[1][i].shape[1]) for c in self.checks for i in variable}, reverse=True))
        try:
            self.names = output_names(model)
        except Exception:
            self.names = []
        self._keras = None  # [(outputs, logits)] per check, computed at the first check

    def _name(self, index):
        return self.names[index] if index < len(self.names) else f"output_{index}"

    def _keras_values(self):
        """Keras's side of every check. The batch-size checks' inputs are prefixes of the largest one's rows
        (kerastk.deploy.feeds.take_batch), and inference treats rows independently, so Keras runs once on the
        largest batch and each smaller check takes its first rows (one compilation or trace instead of one per
        batch size); the shorter-sequence check runs on its own."""
        if self._keras is None:
            side = _KerasSide(self.model)
            self.taps = side.taps
            n_sizes = len(self.batch_sizes)
            largest = max(range(n_sizes), key=lambda i: self.checks[i][0])
            outputs, logits = side.run(self.checks[largest][1])
            self._keras = [([o[:n] if np.ndim(o) else o for o in outputs], [lg[:n] for lg in logits])
                           for n, _ in self.checks[:n_sizes]]
            self._keras += [side.run(batch) for _, batch in self.checks[n_sizes:]]
        return self._keras

    def _failed(self, path, runtime, exc) -> ValidationReport:
        return ValidationReport(str(path), False, float("inf"), None, self.batch_sizes, self.atol,
                                f"{type(exc).__name__}: {first_line(exc)}", self.lengths,
                                verdict=FAILED, rtol=self.rtol, max_rel_diff=float("inf"),
                                criterion=criterion_text("float32", self.rtol, self.atol), runtime=runtime)

    def check(self, path, runtime: str = "onnxruntime") -> ValidationReport:
        import tempfile

        import onnx

        _check_runtime(runtime)
        rtol, atol = self.rtol, self.atol
        agree_num = agree_den = ties = 0
        try:
            onnx.checker.check_model(str(path))
            keras_values = self._keras_values()
            model_bytes, positions = _graph_with_logits(path, self.taps) if self.taps else (None, [])
            n_added = sum(p is not None for p in dict.fromkeys(positions))
            with tempfile.TemporaryDirectory(prefix="kerastk-validate-") as tmp:
                session = _session(path, runtime, model_bytes, tmp)
                del model_bytes
                got_all = []
                for (n, batch), (expected, _) in zip(self.checks, keras_values):
                    got = onnx_outputs(session, batch)
                    if len(got) - n_added != len(expected):
                        raise ValueError(f"ONNX gives {len(got) - n_added} outputs, Keras {len(expected)}.")
                    for e, g in zip(expected, got):
                        if e.shape != g.shape:
                            raise ValueError(f"output shape differs at batch {n}: Keras {e.shape}, ONNX {g.shape}")
                        a, d, t = argmax_counts(e, g, rtol, atol)
                        agree_num, agree_den, ties = agree_num + a, agree_den + d, ties + t
                    got_all.append(got)
        except ImportError:
            raise
        except Exception as exc:  # the runtime refused or failed the file: a failed validation, with the reason
            return self._failed(path, runtime, exc)
        results = [compare_tensor(self._name(j), "output", [k[0][j] for k in keras_values],
                                  [g[j] for g in got_all], rtol, atol) for j in range(len(keras_values[0][0]))]
        for j, (out_index, _, _, _) in enumerate(self.taps):
            expected = [k[1][j] for k in keras_values]
            if positions[j] is None or any(g[positions[j]].shape != e.shape for e, g in zip(expected, got_all)):
                continue  # the graph computes this activation some other way: its output alone is compared
            results.append(compare_tensor(self._name(out_index), "logits", expected,
                                          [g[positions[j]] for g in got_all], rtol, atol))
        agreement = agree_num / agree_den if agree_den else None
        verdict = overall_verdict(results, agreement)
        worst_abs = max((r.max_abs_diff for r in results if r.kind == "output"), default=0.0)
        worst_rel = max((r.max_rel_diff for r in results), default=0.0)
        return ValidationReport(str(path), verdict == PASSED, worst_abs, agreement, self.batch_sizes, atol, "",
                                self.lengths, ties, verdict=verdict, rtol=rtol, max_rel_diff=worst_rel,
                                criterion=criterion_text("float32", rtol, atol), runtime=runtime,
                                outputs=[dataclasses.asdict(r) for r in results])


def validate_onnx(path, model, inputs=None, atol: float = DEFAULT_ATOL, batch_sizes=DEFAULT_BATCH_SIZES, *,
                  rtol: float = DEFAULT_RTOL, runtime: str = "onnxruntime") -> ValidationReport:
    """Run `path` in a runtime and `model` in Keras on the same inputs and compare every output.

    Args:
        path: the ONNX file.
        model: a keras.Model or a path to a `.keras` file.
        inputs: real inputs (an array, or a list/dict for several inputs); random ones fitting the model's
            input specs when None. Rows are repeated when fewer than the largest batch size are given.
        atol, rtol: the criterion |runtime - keras| <= atol + rtol * (|keras| + std(keras)), element by element
            (kerastk.deploy.parity; atol 0 and rtol 1e-3 by default). Where an output ends in a softmax or a
            sigmoid, its logits are compared as well.
        batch_sizes: batch sizes to check; two distinct sizes prove the batch axis is dynamic.
        runtime: "onnxruntime" or "openvino" (the `openvino` extra, fp32 precision).

    Returns:
        A ValidationReport: verdict "passed" (every compared tensor within the criterion, at least one of them
        decisive, 100% argmax agreement on decisive rows), "failed", or "undecided" (nothing differed, but no
        compared tensor depends on the input). `passed` is verdict == "passed"; `outputs` has each tensor's
        name, shape, max abs / relative diff, criterion and verdict. Never raises for a mismatch: a file the
        runtime cannot load or run gives "failed" with the error as message. Raises ValueError for an unknown
        runtime and ImportError (naming the extra) for one that is not installed.
    """
    _check_runtime(runtime)
    return ParityCheck(model, inputs, atol, batch_sizes, rtol=rtol).check(path, runtime)
