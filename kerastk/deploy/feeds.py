"""What a parity check feeds a model, and how Keras runs on it: inputs fitting a model's specs, rows taken to a
batch size, a shorter sequence length, and the Keras outputs flattened in the model's output order.

Input and output *names* (what the ONNX graph's inputs and outputs are called, and what a dict feed is keyed by)
come from :func:`input_names` / :func:`output_names`, so every route and the runtime agree on them.
"""
from __future__ import annotations

import numpy as np


def input_names(model) -> list[str]:
    """The model's input names in the order of its ONNX graph inputs (the flattened Keras input structure)."""
    return [t.name for t in model.inputs]


def output_names(model) -> list[str]:
    """The model's output names in the order of its ONNX graph outputs (the flattened Keras output structure)."""
    return list(model.output_names)


def _input_specs(model):
    return [(tuple(t.shape), str(t.dtype)) for t in model.inputs]


def _token_range(model) -> int:
    """Ids below the smallest Embedding vocabulary in the model (every id is then valid), at least 2."""
    import keras

    sizes = [layer.input_dim for layer in _all_layers(model) if isinstance(layer, keras.layers.Embedding)]
    return max(2, min(sizes)) if sizes else 2


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def sample_inputs(model, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Random inputs that fit a model's input specs (normal floats; integer token ids any Embedding accepts)."""
    rng = np.random.default_rng(seed)
    arrays = []
    high = _token_range(model) if any("int" in dtype for _, dtype in _input_specs(model)) else 2
    for shape, dtype in _input_specs(model):
        full = (batch_size, *[d if d is not None else 8 for d in shape[1:]])
        if "int" in dtype:
            arrays.append(rng.integers(0, high, size=full).astype(dtype))
        else:
            arrays.append(rng.standard_normal(full).astype(dtype))
    return arrays


def variable_length_inputs(model) -> list[int]:
    """Indices of the inputs with a variable time axis: shape (batch, None) or (batch, None, features)."""
    return [i for i, t in enumerate(model.inputs) if len(t.shape) in (2, 3) and t.shape[1] is None]


def _shorter(arrays, which):
    """The same rows with the variable time axis of the inputs `which` cut to about two thirds."""
    return [a[:, :max(1, a.shape[1] - max(1, a.shape[1] // 3))] if i in which else a for i, a in enumerate(arrays)]


def as_arrays(inputs) -> list[np.ndarray]:
    if isinstance(inputs, dict):
        return [np.asarray(v) for v in inputs.values()]
    if isinstance(inputs, (list, tuple)):
        return [np.asarray(v) for v in inputs]
    return [np.asarray(inputs)]


def _take_batch(arrays, n):
    """First n rows of each input, repeating rows when fewer than n are given."""
    out = []
    for a in arrays:
        idx = np.arange(n) % len(a)
        out.append(a[idx])
    return out


def keras_outputs(model, arrays) -> list[np.ndarray]:
    import keras

    feed = arrays[0] if len(arrays) == 1 else arrays
    y = model.predict_on_batch(feed)
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(y)]
