"""OnnxModel: run an exported model and its card with numpy + onnxruntime only (no keras, no backend)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from kerastk.core.card import ModelCard
from kerastk.core.errors import first_line
from kerastk.core.files import sha256
from kerastk.core.preprocessing import apply_preprocessing
from kerastk.core.rundir import card_path_for  # noqa: F401 - public here too
from kerastk.deploy import metadata

#: onnxruntime type strings -> numpy dtype names.
ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def ort_dtype(type_string: str) -> str:
    return ORT_DTYPES.get(type_string, type_string)


class OnnxModel:
    """An exported model ready to predict from numpy arrays.

        model = OnnxModel("export/mnist_lenet5/model.onnx")    # reads card.json beside it when present
        probs = model.predict(model.preprocess(raw_pixels))     # raw -> the preprocessing the model was trained on
        labels = model.predict_labels(model.preprocess(raw_pixels))
        model.predict({"image": pixels})                        # or a dict keyed by input names

    Without a card beside it, the essentials kerastk embedded in the file's metadata (task, class names,
    preprocessing, decision threshold: kerastk.deploy.metadata) are used; with one, the card wins, and a card
    that disagrees with the metadata gets a warning naming the fields. `info` is what is used (metadata
    overlaid by the card), `card` the card alone ({} without one), `metadata` the file's essentials.

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
                             f"{first_line(exc)}") from None
        self.card = self._load_card(card)
        self.inputs = [(a.name, [d if isinstance(d, int) else None for d in a.shape], ort_dtype(a.type))
                       for a in self.session.get_inputs()]
        self.output_names = [a.name for a in self.session.get_outputs()]
        self._check_card()
        self.metadata = self._read_metadata()
        self.info = ModelCard({**metadata.as_card(self.metadata), **self.card})
        self._compare_card()

    def _read_metadata(self) -> dict:
        """The kerastk essentials in the file's metadata_props (onnxruntime has read them with the graph)."""
        try:
            props = self.session.get_modelmeta().custom_metadata_map
        except Exception:
            return {}
        return metadata.decode(props)

    def _compare_card(self):
        """The card wins over the metadata; fields where they disagree are named in a warning."""
        differing = metadata.differences(self.card, self.metadata)
        if differing:
            where = f"The card {str(self.card_path)!r}" if self.card_path else "The card given"
            detail = "; ".join(f"{k}: card {_short(metadata.essentials(self.card).get(k))}, file "
                               f"{_short(self.metadata.get(k))}" for k in differing)
            warnings.warn(f"{where} and the metadata embedded in {self.path.name} differ in "
                          f"{', '.join(differing)} ({detail}); the card is used.", UserWarning, stacklevel=3)

    def _load_card(self, card) -> ModelCard:
        self.card_path = None
        if isinstance(card, dict):
            return ModelCard(card)
        card_path = Path(card) if card else card_path_for(self.path)
        if not card_path.is_file() and not card:
            return ModelCard()
        loaded = ModelCard.read(card_path)
        self.card_path = card_path
        return loaded

    def _check_card(self):
        """A card that describes another file (a re-export left the old card, or a card copied beside the wrong
        model) would give wrong preprocessing and labels: its sha256 and inputs must match this file."""
        if not self.card:
            return
        where = f"{str(self.card_path)!r}" if self.card_path else "the card given"
        expected = self.card.get("sha256")
        if expected:
            actual = sha256(self.path)
            if actual != expected:
                raise ValueError(f"{where} describes a different file (sha256 {expected[:12]}...) than "
                                 f"{str(self.path)!r} (sha256 {actual[:12]}...); re-export the model to write "
                                 f"a matching card, or pass card=... (a dict, or the right card's path).")
        if "inputs" in self.card:
            recorded = [(i.get("name"), list(i.get("shape", [])), i.get("dtype")) for i in self.card["inputs"]]
            actual = [(n, list(s), d) for n, s, d in self.inputs]
            if recorded != actual:
                raise ValueError(f"{where} records inputs {recorded} but {self.path.name} takes {actual}; "
                                 f"re-export the model to write a matching card, or pass card=...")

    @property
    def class_names(self):
        return self.info.get("class_names")

    @property
    def task(self):
        return self.info.get("task")

    def preprocess(self, x) -> np.ndarray:
        """Apply the preprocessing recorded in the card, else in the file's metadata (e.g. pixels / 255, or
        standardisation).

        Raises ValueError when neither records it (a bare ONNX file without a card): the raw inputs would
        otherwise reach the model unscaled and give confident wrong answers."""
        if not isinstance(self.info.get("preprocessing"), dict):
            what = "a card without 'preprocessing'" if self.card else (
                f"no card (looked for {str(card_path_for(self.path))!r})")
            raise ValueError(f"{self.path.name} has {what} and no kerastk metadata recording it, so the "
                             "preprocessing it was trained with is unknown; pass card=... (the card.json written "
                             "at export) or preprocess the inputs yourself and call predict().")
        return apply_preprocessing(x, self.info["preprocessing"])

    def check_arrays(self, arrays) -> dict:
        """The arrays as onnxruntime's feed {input name: array}, each checked once against the graph's inputs: count,
        rank, shape, dtype, empty batch, NaN / inf (ValueError naming what was expected and what was received)."""
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
                raise ValueError(f"Input {name!r} must have shape {expected}; received {a.shape}."
                                 + _shape_hint(shape, a.shape))
            if a.dtype != np.dtype(dtype):
                raise ValueError(f"Input {name!r} must have dtype {dtype}; received {a.dtype} "
                                 f"(convert with x.astype(np.{dtype})).")
            if a.ndim and a.shape[0] == 0:
                raise ValueError(f"Input {name!r} is an empty batch, shape {a.shape}; expected at least one row.")
            if np.issubdtype(a.dtype, np.floating):
                finite = np.isfinite(a)
                if not finite.all():
                    bad = int(a.size - np.count_nonzero(finite))
                    raise ValueError(f"Input {name!r} has {bad:,} NaN or infinite values (of {a.size:,}); expected "
                                     "finite numbers (fill or drop the missing values first).")
            feed[name] = a
        return feed

    def arrays(self, x) -> list:
        """`x` as a list in the order of the graph's inputs: an array, a list of arrays, or a dict keyed by
        input names (ValueError naming the missing and unknown keys)."""
        if isinstance(x, dict):
            names = [n for n, _, _ in self.inputs]
            missing = [n for n in names if n not in x]
            unknown = [k for k in x if k not in names]
            if missing or unknown:
                parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
                raise ValueError(f"{self.path.name} takes inputs {names}; the dict given has "
                                 f"{' and '.join(parts)} key(s).")
            return [x[n] for n in names]
        return list(x) if isinstance(x, (list, tuple)) else [x]

    def predict(self, x):
        """Outputs for `x` (an array, a list of arrays for several inputs, or a dict of arrays keyed by input
        names): one array, or a list of them."""
        outputs = self.session.run(None, self.check_arrays(self.arrays(x)))
        return outputs[0] if len(outputs) == 1 else outputs

    def predict_labels(self, x) -> list:
        """Argmax of the first output, mapped to the class names (card, else file metadata) when there are
        some; for a multi-label model (task "multilabel") the list of attributes above the decision threshold
        for each row."""
        y = self.predict(x)
        y = y[0] if isinstance(y, list) else y
        names = self.class_names
        if self.info.get("task") == "multilabel":
            on = y > self.info.decision_threshold
            return [[names[j] if names else j for j in np.flatnonzero(row)] for row in on]
        idx = np.argmax(y, axis=-1) if y.shape[-1] > 1 else (y[..., 0] > 0.5).astype(int)
        return [names[i] if names else int(i) for i in np.ravel(idx)]

    def __repr__(self):
        ins = ", ".join(f"{n}{tuple(s)}:{d}" for n, s, d in self.inputs)
        return f"OnnxModel({str(self.path)!r}, inputs=[{ins}], route={self.info.get('route')!r})"


def _short(value, limit=80) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shape_hint(expected, received) -> str:
    """Why a shape may be wrong, when it is a common mistake: a fixed batch axis, or channels-first data fed to a
    channels-last model (Keras's default)."""
    if expected and expected[0] is not None and tuple(expected[1:]) == tuple(received[1:]):
        return (f" The file has a fixed batch size of {expected[0]}: feed {expected[0]} row(s) at a time, or "
                "re-export with kerastk (its files take any batch size).")
    if len(expected) >= 3 and None not in expected[1:]:
        channels_last = tuple(expected[1:])
        channels_first = (channels_last[-1], *channels_last[:-1])
        if tuple(received[1:]) == channels_first:
            return (f" The model takes channels-last inputs (batch, ..., channels={channels_last[-1]}); these look "
                    f"channels-first: use np.moveaxis(x, 1, -1).")
    return ""
