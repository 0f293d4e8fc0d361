"""Prove an ONNX file equal to its Keras model in onnxruntime, on real inputs, at two batch sizes."""
from __future__ import annotations

import dataclasses

import numpy as np

from kerastk.deploy.feeds import (  # noqa: F401  (sample_inputs, keras_outputs: public here too)
    _shorter, _take_batch, as_arrays, keras_outputs, sample_inputs, variable_length_inputs)

DEFAULT_ATOL = 1e-4
DEFAULT_BATCH_SIZES = (1, 8)


@dataclasses.dataclass
class ValidationReport:
    """Parity figures between a Keras model and its ONNX export."""

    path: str
    passed: bool
    max_abs_diff: float
    # fraction of rows whose argmax agrees (None for one-unit outputs); rows whose two best Keras scores are
    # within 2 * atol (ties: outputs that agree within atol may order them either way) are left out and counted
    # in `argmax_ties` - e.g. a few of the two million voxels of an untrained 3-D U-Net at batch 8
    argmax_agreement: float | None
    batch_sizes: tuple
    atol: float
    message: str = ""
    sequence_lengths: tuple = ()  # time-axis lengths checked when the model accepts variable-length sequences
    argmax_ties: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        agree = "n/a" if self.argmax_agreement is None else f"{100 * self.argmax_agreement:.2f}%"
        verdict = "PASSED" if self.passed else "FAILED"
        text = (f"{verdict}: max abs diff {self.max_abs_diff:.3g} (atol {self.atol:g}), argmax agreement {agree}, "
                f"batch sizes {list(self.batch_sizes)}")
        if self.sequence_lengths:
            text += f", sequence lengths {list(self.sequence_lengths)}"
        if self.argmax_ties:
            text += f" ({self.argmax_ties} tied rows left out of the agreement)"
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
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


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
                         f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''} (a layer from a "
                         f"package that is not imported, or a file from an incompatible Keras version?)") from None


def validate_onnx(path, model, inputs=None, atol: float = DEFAULT_ATOL,
                  batch_sizes=DEFAULT_BATCH_SIZES) -> ValidationReport:
    """Run `path` in onnxruntime and `model` in Keras on the same inputs and compare every output.

    Args:
        path: the ONNX file.
        model: a keras.Model or a path to a `.keras` file.
        inputs: real inputs (an array, or a list/dict for several inputs); random ones fitting the model's
            input specs when None. Rows are repeated when fewer than the largest batch size are given.
        atol: the largest absolute difference allowed (1e-4 for float32 by default).
        batch_sizes: batch sizes to check; two distinct sizes prove the batch axis is dynamic.

    Returns:
        A ValidationReport; `passed` needs max abs diff <= atol and 100% argmax agreement. Never raises for
        a mismatch: a file onnxruntime cannot load or run gives passed=False with the error as message.
    """
    import onnx

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_keras(model)
    arrays = as_arrays(inputs) if inputs is not None else sample_inputs(model, max(batch_sizes))
    batch_sizes = tuple(int(b) for b in batch_sizes)
    variable = variable_length_inputs(model)
    # (rows, inputs) pairs to compare: each batch size, then - for variable-length sequence models - a second
    # sequence length, which a graph that baked the example's length in cannot run
    checks = [(n, _take_batch(arrays, n)) for n in batch_sizes]
    if variable:
        checks.append((2, _shorter(_take_batch(arrays, 2), variable)))
    lengths = tuple(sorted({int(c[1][i].shape[1]) for c in checks for i in variable}, reverse=True))
    worst, agree_num, agree_den, ties = 0.0, 0, 0, 0
    try:
        onnx.checker.check_model(str(path))
        session = make_session(path)
        for n, batch in checks:
            expected = keras_outputs(model, batch)
            got = onnx_outputs(session, batch)
            if len(got) != len(expected):
                raise ValueError(f"ONNX gives {len(got)} outputs, Keras {len(expected)}.")
            for e, g in zip(expected, got):
                if e.shape != g.shape:
                    raise ValueError(f"output shape differs at batch {n}: Keras {e.shape}, ONNX {g.shape}")
                diff = float(np.max(np.abs(e.astype(np.float64) - g.astype(np.float64)), initial=0.0))
                worst = max(worst, diff) if np.isfinite(diff) else float("inf")  # NaN never passes
                if e.ndim >= 2 and e.shape[-1] > 1:
                    top2 = np.sort(e, axis=-1)[..., -2:]
                    decisive = (top2[..., 1] - top2[..., 0]) > 2 * atol
                    ties += int(np.sum(~decisive))
                    agree_num += int(np.sum((np.argmax(e, -1) == np.argmax(g, -1))[decisive]))
                    agree_den += int(np.sum(decisive))
    except Exception as exc:  # onnxruntime refused or failed the file: a failed validation, with the reason
        return ValidationReport(str(path), False, float("inf"), None, batch_sizes, atol,
                                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}", lengths)
    agreement = agree_num / agree_den if agree_den else None
    passed = bool(np.isfinite(worst) and worst <= atol and (agreement is None or agreement == 1.0))
    return ValidationReport(str(path), passed, worst, agreement, batch_sizes, atol, "", lengths, ties)
