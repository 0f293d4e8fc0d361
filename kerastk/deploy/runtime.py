"""OnnxModel: run an exported model and its card with numpy + onnxruntime only (no keras, no backend)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: onnxruntime type strings -> numpy dtype names.
ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def ort_dtype(type_string: str) -> str:
    return ORT_DTYPES.get(type_string, type_string)


def card_path_for(onnx_path) -> Path:
    """Where an ONNX file's card lives: `card.json` beside a run folder's `model.onnx`, else `<stem>.card.json`."""
    onnx_path = Path(onnx_path)
    return onnx_path.parent / ("card.json" if onnx_path.name == "model.onnx" else f"{onnx_path.stem}.card.json")


class OnnxModel:
    """An exported model ready to predict from numpy arrays.

        model = OnnxModel("export/mnist_lenet5/model.onnx")    # reads card.json beside it when present
        probs = model.predict(model.preprocess(raw_pixels))     # raw -> the preprocessing the model was trained on
        labels = model.predict_labels(model.preprocess(raw_pixels))

    Inputs are checked before onnxruntime sees them: a wrong rank, shape or dtype is a ValueError naming what
    was expected and what was received.
    """

    def __init__(self, path, card=None, providers=("CPUExecutionProvider",)):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"No ONNX model at {str(self.path)!r}.")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=list(providers))
        except Exception as exc:
            raise ValueError(f"{str(self.path)!r} is not a valid ONNX model onnxruntime can load: "
                             f"{str(exc).strip().splitlines()[0][:300]}") from None
        self.card = self._load_card(card)
        self.inputs = [(a.name, [d if isinstance(d, int) else None for d in a.shape], ort_dtype(a.type))
                       for a in self.session.get_inputs()]
        self.output_names = [a.name for a in self.session.get_outputs()]

    def _load_card(self, card):
        if isinstance(card, dict):
            return card
        card_path = Path(card) if card else card_path_for(self.path)
        if not card_path.is_file():
            if card:
                raise FileNotFoundError(f"No model card at {str(card_path)!r}.")
            return {}
        try:
            return json.loads(card_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"Model card {str(card_path)!r} is not valid JSON: {exc}") from None

    @property
    def class_names(self):
        return self.card.get("class_names")

    def preprocess(self, x) -> np.ndarray:
        """Apply the preprocessing recorded in the card (e.g. pixels / 255, or standardisation)."""
        from kerastk.data import apply_preprocessing

        return apply_preprocessing(x, self.card.get("preprocessing", {"type": "none"}))

    def _check(self, arrays):
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.path.name} takes {len(self.inputs)} input(s) "
                             f"({', '.join(n for n, _, _ in self.inputs)}); received {len(arrays)}.")
        feed = {}
        for (name, shape, dtype), a in zip(self.inputs, arrays):
            if not isinstance(a, np.ndarray):
                raise ValueError(f"Input {name!r} must be a numpy array; received {type(a).__name__}.")
            expected = "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
            if a.ndim != len(shape):
                raise ValueError(f"Input {name!r} must have rank {len(shape)}, shape {expected}; "
                                 f"received rank {a.ndim}, shape {a.shape}.")
            if any(d is not None and d != s for d, s in zip(shape, a.shape)):
                raise ValueError(f"Input {name!r} must have shape {expected}; received {a.shape}.")
            if a.dtype != np.dtype(dtype):
                raise ValueError(f"Input {name!r} must have dtype {dtype}; received {a.dtype} "
                                 f"(convert with x.astype(np.{dtype})).")
            feed[name] = a
        return feed

    def predict(self, x):
        """Outputs for `x` (an array, or a list of arrays for several inputs): one array, or a list of them."""
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        outputs = self.session.run(None, self._check(arrays))
        return outputs[0] if len(outputs) == 1 else outputs

    def predict_labels(self, x) -> list:
        """Argmax of the first output, mapped to the card's class names when it has them; for a multi-label
        model (card task "multilabel") the list of attributes above the card's threshold for each row."""
        y = self.predict(x)
        y = y[0] if isinstance(y, list) else y
        names = self.class_names
        if self.card.get("task") == "multilabel":
            on = y > self.card.get("decision_threshold", 0.5)
            return [[names[j] if names else j for j in np.flatnonzero(row)] for row in on]
        idx = np.argmax(y, axis=-1) if y.shape[-1] > 1 else (y[..., 0] > 0.5).astype(int)
        return [names[i] if names else int(i) for i in np.ravel(idx)]

    def __repr__(self):
        ins = ", ".join(f"{n}{tuple(s)}:{d}" for n, s, d in self.inputs)
        return f"OnnxModel({str(self.path)!r}, inputs=[{ins}], route={self.card.get('route')!r})"
