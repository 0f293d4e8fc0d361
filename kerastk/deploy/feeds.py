"""What a parity check feeds a model, and how Keras runs on it: inputs fitting a model's specs, rows taken to a
batch size, a shorter sequence length, and the Keras outputs flattened in the model's output order.

Input and output *names* (what the ONNX graph's inputs and outputs are called, and what a dict feed is keyed by)
come from :func:`input_names` / :func:`output_names`, so every route and the runtime agree on them.

A model's inputs are described by :func:`input_structure`: a structure of ``keras.InputSpec`` (batch axis None,
each named) in the form ``Model.export`` takes as its ``input_signature`` - a list of the positional arguments of
the model's ``call``. A functional model takes one argument, its input structure (a tensor, a list, or a dict
such as ``{"token_ids", "padding_mask"}``: its specs are named after the dict keys); a Sequential model one
tensor; a subclassed model (no ``model.inputs``) the shapes it was built with, or the ``input_signature`` given
to ``export_onnx`` (:func:`set_input_signature`). Every route writes the graph's inputs in the order of
``keras.tree.flatten`` of that structure (dict keys sorted) and its outputs in the order of
``keras.tree.flatten`` of the model's output structure (dict keys sorted), and arrays here are in those orders.
"""
from __future__ import annotations

import weakref

import numpy as np

#: input signatures given to export_onnx for models that carry none of their own (subclassed models)
SIGNATURES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def set_input_signature(model, signature) -> None:
    """Record the input signature a caller gave for `model` (normalised by :func:`input_structure`)."""
    SIGNATURES[model] = signature


def _spec(shape, dtype, name):
    import keras

    shape = tuple(shape)
    return keras.InputSpec(shape=(None, *shape[1:]) if shape else shape, dtype=str(dtype), name=name)


def _from_leaf(leaf, name):
    """A keras.InputSpec named `name` from an InputSpec, tf.TensorSpec, KerasTensor, array or shape tuple."""
    import keras

    if isinstance(leaf, (tuple, list)) and all(isinstance(d, (int, type(None))) for d in leaf):
        return _spec(leaf, "float32", name)
    shape = getattr(leaf, "shape", None)
    if shape is None:
        raise TypeError(f"Cannot read an input spec from {leaf!r}; expected a keras.InputSpec (shape and dtype).")
    shape = tuple(None if d is None else int(d) for d in (shape.as_list() if hasattr(shape, "as_list") else shape))
    dtype = getattr(leaf, "dtype", None) or "float32"
    dtype = getattr(dtype, "name", dtype)
    return _spec(shape, keras.backend.standardize_dtype(dtype), getattr(leaf, "name", None) or name)


def _name_leaves(structure, default):
    """Map every leaf to a named InputSpec: dict leaves are named after their key, others keep their own name
    (else `default`, numbered when there are several)."""
    if isinstance(structure, dict):
        return {k: _name_leaves(v, str(k)) if _is_nested(v) else _renamed(_from_leaf(v, str(k)), str(k))
                for k, v in structure.items()}
    if _is_nested(structure):
        many = len(structure) > 1
        return type(structure)(_name_leaves(v, f"{default}_{i}" if many else default)
                               for i, v in enumerate(structure))
    return _from_leaf(structure, default)


def _renamed(spec, name):
    return _spec(spec.shape, spec.dtype, name)


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(d, (int, type(None))) for d in value)


def _is_nested(value) -> bool:
    return isinstance(value, dict) or (isinstance(value, (tuple, list)) and not _is_shape(value))


def _call_argument_names(model) -> list[str]:
    import inspect

    try:
        params = inspect.signature(model.call).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name not in ("training", "mask")]


def input_structure(model) -> list:
    """The model's input signature: a list (one entry per positional argument of `call`) of named
    keras.InputSpec structures with a dynamic batch axis - what Model.export's `input_signature` takes."""
    import keras

    given = SIGNATURES.get(model)
    if given is not None:
        if isinstance(given, (list, tuple)) and not _is_shape(given):
            args = list(given)
        else:
            args = [given]
        names = _call_argument_names(model) or ["inputs"]
        return [_name_leaves(a, names[i] if i < len(names) else f"input_{i}") for i, a in enumerate(args)]
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(model, keras.Sequential) or struct is None:
        try:
            tensors = model.inputs
        except (AttributeError, ValueError):
            tensors = None
        if tensors and isinstance(model, keras.Sequential):
            return [_from_leaf(tensors[0], tensors[0].name)]
    if struct is not None:
        return [_name_leaves(struct, "inputs")]
    # a subclassed model: the shapes it was built with (Keras records them at the first call)
    shapes = getattr(model, "_build_shapes_dict", None)
    if not shapes:
        raise ValueError(f"{type(model).__name__} is a subclassed model that has never been called, so its input "
                         f"shapes are unknown; call it once on a batch, or pass input_signature="
                         f"keras.InputSpec(shape=(None, ...), dtype=...) to export_onnx.")
    dtype = getattr(model, "input_dtype", None) or "float32"
    names = _call_argument_names(model)
    out = []
    for i, (key, value) in enumerate(shapes.items()):
        name = names[i] if i < len(names) else key.removesuffix("_shape")
        out.append(_name_leaves(_with_dtype(value, dtype), name))
    return out


def _with_dtype(value, dtype):
    if _is_shape(value):
        return _spec(value, dtype, None)
    if isinstance(value, dict):
        return {k: _with_dtype(v, dtype) for k, v in value.items()}
    return type(value)(_with_dtype(v, dtype) for v in value)


def input_specs(model) -> list:
    """The flat list of named InputSpecs, in the order of the ONNX graph's inputs."""
    import keras

    return keras.tree.flatten(input_structure(model))


def input_names(model) -> list[str]:
    """The model's input names in the order of its ONNX graph inputs (the flattened Keras input structure; a
    dict input's names are its keys, sorted as keras.tree.flatten sorts them)."""
    return [s.name for s in input_specs(model)]


def output_names(model) -> list[str]:
    """The model's output names in the order of its ONNX graph outputs (the flattened Keras output structure; a
    dict output's names are its keys, sorted as keras.tree.flatten sorts them)."""
    import keras

    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict):
        return [".".join(map(str, p)) for p, _ in _flatten_with_path(struct)]
    if struct is not None and not isinstance(struct, (list, tuple)):
        return list(model.output_names)
    try:
        names = list(model.output_names) if struct is not None or hasattr(model, "_functional") else []
    except (AttributeError, ValueError):
        names = []
    if names:
        return names
    if isinstance(model, keras.Sequential) and model.layers:
        return [model.layers[-1].name]  # one output, the last layer's (as a functional model names it)
    # a subclassed model: its outputs are computed symbolically from its input specs; a dict's keys, else
    # output_0, output_1...
    outputs = _subclassed_outputs(model)
    if isinstance(outputs, dict):
        return [".".join(map(str, p)) for p, _ in _flatten_with_path(outputs)]
    n = len(keras.tree.flatten(outputs))
    return ["output_0"] if n == 1 else [f"output_{i}" for i in range(n)]


def _flatten_with_path(struct):
    import keras

    return keras.tree.flatten_with_path(struct)


def _subclassed_outputs(model):
    """The output structure of a subclassed model (computed symbolically from its input specs)."""
    import keras

    specs = input_structure(model)
    args = keras.tree.map_structure(lambda s: keras.KerasTensor((1, *s.shape[1:]), dtype=s.dtype), specs)
    return model.compute_output_spec(*args)


def _input_specs(model):
    return [(tuple(s.shape), str(s.dtype)) for s in input_specs(model)]


def _token_range(model) -> int:
    """Ids below the smallest Embedding vocabulary in the model (every id is then valid), at least 2."""
    import keras

    sizes = [layer.input_dim for layer in all_layers(model) if isinstance(layer, keras.layers.Embedding)]
    return max(2, min(sizes)) if sizes else 2


def all_layers(model):
    for layer in getattr(model, "layers", None) or getattr(model, "_layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def sample_inputs(model, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Random inputs that fit a model's input specs, in the order of the ONNX graph's inputs: normal floats;
    integer token ids any Embedding accepts; for an integer or boolean input named like a mask
    (``padding_mask``) ones followed by a random number of zeros (padding), at least one 1 per row."""
    rng = np.random.default_rng(seed)
    arrays = []
    specs = input_specs(model)
    high = _token_range(model) if any("int" in str(s.dtype) for s in specs) else 2
    for spec in specs:
        shape, dtype = tuple(spec.shape), str(spec.dtype)
        full = (batch_size, *[d if d is not None else 8 for d in shape[1:]])
        is_mask = "mask" in (spec.name or "").lower()
        if (is_mask and ("int" in dtype or dtype == "bool")) and len(full) >= 2:
            lengths = rng.integers(1, full[1] + 1, size=batch_size)
            mask = np.arange(full[1])[None, :] < lengths[:, None]
            arrays.append(np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(full) - 2)), full).astype(dtype))
        elif dtype == "bool":
            arrays.append(rng.integers(0, 2, size=full).astype(bool))
        elif "int" in dtype:
            arrays.append(rng.integers(0, high, size=full).astype(dtype))
        else:
            arrays.append(rng.standard_normal(full).astype(dtype))
    return arrays


def variable_length_inputs(model) -> list[int]:
    """Indices of the inputs with a variable time axis: shape (batch, None) or (batch, None, features)."""
    return [i for i, s in enumerate(input_specs(model)) if len(s.shape) in (2, 3) and s.shape[1] is None]


def shorter_sequences(arrays, which):
    """The same rows with the variable time axis of the inputs `which` cut to about two thirds."""
    return [a[:, :max(1, a.shape[1] - max(1, a.shape[1] // 3))] if i in which else a for i, a in enumerate(arrays)]


def as_arrays(inputs, model=None) -> list[np.ndarray]:
    """Arrays in the order of the ONNX graph's inputs. A dict is ordered by :func:`input_names` of `model` when
    given (its keys must be those names), else as keras.tree.flatten orders a dict (keys sorted) - the order every
    route writes a dict input in."""
    if isinstance(inputs, dict):
        if model is not None:
            names = input_names(model)
            if set(map(str, inputs)) == set(names):
                by_name = {str(k): v for k, v in inputs.items()}
                return [np.asarray(by_name[n]) for n in names]
            if len(inputs) != len(names):
                raise ValueError(f"The model has {len(names)} inputs {names}; received a dict of {len(inputs)} "
                                 f"({sorted(map(str, inputs))}).")
        import keras

        return [np.asarray(v) for v in keras.tree.flatten(inputs)]
    if isinstance(inputs, (list, tuple)):
        return [np.asarray(v) for v in inputs]
    return [np.asarray(inputs)]


def take_batch(arrays, n):
    """First n rows of each input, repeating rows when fewer than n are given."""
    out = []
    for a in arrays:
        idx = np.arange(n) % len(a)
        out.append(a[idx])
    return out


def ensure_built(model) -> None:
    """Create the variables of a model some of whose layers are not built yet (a subclassed model given
    `model.build(shape)` or only an input signature) by calling it once on a batch of sample inputs, so an
    exporter never traces variable creation (random initialisers) into the graph."""
    if all(getattr(layer, "built", True) for layer in all_layers(model)) and getattr(model, "built", False):
        return
    keras_outputs(model, sample_inputs(model, 1))


def keras_feed(model, arrays):
    """The positional arguments of the model's call for arrays in graph-input order: the arrays packed into the
    model's input structure (a dict keyed by input names for a dict-input model)."""
    import keras

    structure = input_structure(model)
    if len(keras.tree.flatten(structure)) != len(arrays):
        raise ValueError(f"The model has {len(keras.tree.flatten(structure))} inputs {input_names(model)}; "
                         f"received {len(arrays)} arrays.")
    return keras.tree.pack_sequence_as(structure, list(arrays))


def keras_outputs(model, arrays) -> list[np.ndarray]:
    """Keras's outputs for arrays in graph-input order, flattened in the order of the ONNX graph's outputs.

    One inference call: eager on TensorFlow and torch (tracing a tf.function for each new batch shape costs
    seconds on a deep network - DenseNet-121: 3.6 s against 0.6 s eager), the compiled predict step on JAX (its
    eager mode dispatches op by op: 34 s against one 10 s compilation)."""
    import keras

    args = keras_feed(model, arrays)
    if len(args) == 1 and keras.backend.backend() == "jax":
        y = model.predict_on_batch(args[0])
    else:
        y = model(*args, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in keras.tree.flatten(y)]
