"""The model card format: ``card.json`` beside an ONNX file - everything a deployment needs to know about it.

:class:`ModelCard` is the one place that knows the card's fields and their defaults (the decision threshold of
a multi-label model, the run folder's data file), reads and writes the file, maps outputs to labels and records
a quantisation. It is a dict (the JSON object, in the order written) with typed accessors, so a card read back
is exactly the file. The writer that fills a card from an export is kerastk.deploy.card.write_card; the runner,
`kerastk export`, `kerastk quantize`, OnnxModel and `kerastk serve` all go through this class.

    card = ModelCard.read("export/mnist_lenet5/card.json")
    card.task, card.class_names, card.decision_threshold, card.preprocessing
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from kerastk.core.files import write_json
from kerastk.core.rundir import QUANTIZATION_DATA, card_path_for

#: A multi-label model's attributes are "on" above this probability unless its card says otherwise.
DEFAULT_DECISION_THRESHOLD = 0.5
#: The fields every export rewrites; a run folder's card keeps its other fields when its model is re-exported.
EXPORT_FIELDS = ("file", "sha256", "created", "versions", "inputs", "outputs", "backend", "route", "opset",
                 "export_seconds", "parity", "export_attempts", "optimize", "graph", "quantized")
#: What a card with one of these fields says about it, kept when a quantised copy gets its own card.
QUANTIZED_SUMMARY = ("file", "size_ratio", "accuracy_drop_points", "argmax_agreement", "latency_batch1_ms",
                     "speedup", "target", "created")


class ModelCard(dict):
    """A model card: the JSON object (a dict) with its fields' types and defaults."""

    @classmethod
    def read(cls, path) -> ModelCard:
        """The card at `path`: FileNotFoundError when there is none, ValueError when it is not a JSON object."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No model card at {str(path)!r}.")
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"Model card {str(path)!r} is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"Model card {str(path)!r} must hold a JSON object; received a "
                             f"{type(loaded).__name__}.")
        return cls(loaded)

    @classmethod
    def beside(cls, onnx_path) -> ModelCard:
        """The card of an ONNX file (kerastk.core.rundir.card_path_for), or an empty card when it has none."""
        path = card_path_for(onnx_path)
        return cls.read(path) if path.is_file() else cls()

    def write(self, path) -> Path:
        """Write the card (atomically; numpy values as JSON numbers and lists)."""
        return write_json(path, dict(self))

    # --- fields ----------------------------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self.get("name")

    @property
    def task(self) -> str | None:
        return self.get("task")

    @property
    def class_names(self) -> list | None:
        return self.get("class_names")

    @property
    def preprocessing(self) -> dict | None:
        value = self.get("preprocessing")
        return value if isinstance(value, dict) else None

    @property
    def decision_threshold(self) -> float:
        value = self.get("decision_threshold")
        return DEFAULT_DECISION_THRESHOLD if value is None else float(value)

    @property
    def sha256(self) -> str | None:
        return self.get("sha256")

    @property
    def quantization_data(self) -> str:
        """The run folder's file of calibration rows and test split (kerastk.core.rundir)."""
        return self.get("quantization_data") or QUANTIZATION_DATA

    @property
    def metrics(self) -> dict:
        return self.get("metrics") or {}

    # --- what the fields mean ----------------------------------------------------------------------------------

    def labels(self, y: np.ndarray):
        """Class names for the rows of a first output `y` (batch, classes): the argmax's name, or for a
        multi-label model the names above the decision threshold; None when the card names no classes or they
        do not fit `y`."""
        names = self.class_names
        if not names or y.ndim != 2:
            return None
        if self.task == "multilabel":
            if y.shape[-1] != len(names):
                return None
            return [[names[j] for j in np.flatnonzero(row)] for row in y > self.decision_threshold]
        idx = np.argmax(y, axis=-1) if y.shape[-1] > 1 else (y[:, 0] > 0.5).astype(int)
        if idx.size and int(idx.max()) >= len(names):
            return None
        return [names[int(i)] for i in idx]

    def kept_on_reexport(self) -> dict:
        """The fields a re-export keeps (training figures, dataset, tokens ...): all but EXPORT_FIELDS."""
        return {k: v for k, v in self.items() if k not in EXPORT_FIELDS}

    # --- quantisation ----------------------------------------------------------------------------------------

    def quantized_card(self, *, file: str, sha256: str, io_spec: dict, summary: dict, reference: str) -> ModelCard:
        """The card of a quantised copy of this card's file: this card's fields, the copy's file, hash and
        inputs/outputs, its quantisation summary and test-split metrics, and parity "undecided" (the copy is
        compared with the float32 file, not proven equal to Keras)."""
        card = ModelCard(copy.deepcopy(dict(self)))
        card.pop("quantized", None)
        card.update({"file": file, "sha256": sha256, **io_spec, "quantization": summary,
                     "metrics": {**self.metrics, "onnx": summary.get("metrics_quantized")},
                     "parity": {"reference": reference, "max_abs_diff": summary.get("max_abs_diff"),
                                "argmax_agreement": summary.get("argmax_agreement"), "passed": None,
                                "verdict": "undecided",
                                "message": f"{summary['mode']} file compared with the float32 file on the test "
                                           "split"}})
        return card

    def record_quantized(self, mode: str, summary: dict) -> None:
        """Note a quantised copy in this (the float32 file's) card, under "quantized": {mode: ...}."""
        self.setdefault("quantized", {})[mode] = {k: summary[k] for k in QUANTIZED_SUMMARY}
