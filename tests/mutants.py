"""Mutants of an exported ONNX file: what a corrupted or wrongly converted file looks like (one weight tensor
scaled by 1%, a bias shifted, two output channels swapped). The validator must fail every one of them."""
from __future__ import annotations

import numpy as np

_MULTIPLIERS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "LSTM", "GRU", "RNN")
_PASS_THROUGH = ("Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze")


def _kernel_sources(model):
    """[(initializer name, consumer node, axis of the initializer that is the consumer's output channel)] for the
    weights a Conv, MatMul or Gemm multiplies by, followed back through Transpose / Reshape / Cast (jax2onnx
    transposes kernels in the graph), in the order the graph's nodes use them."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    found = []
    for node in model.graph.node:
        if node.op_type not in _MULTIPLIERS:
            continue
        for name in node.input[1:]:
            axis = 0 if node.op_type in ("Conv", "ConvTranspose") else -1
            while name not in inits and name in producer and producer[name].op_type in _PASS_THROUGH:
                step = producer[name]
                if step.op_type == "Transpose":
                    perm = next((list(helper.get_attribute_value(a)) for a in step.attribute if a.name == "perm"),
                                None)
                    if perm is not None:
                        axis = perm[axis]
                name = step.input[0]
            if name in inits and name not in [f[0] for f in found]:
                a = numpy_helper.to_array(inits[name])
                if a.dtype == np.float32 and a.ndim >= 2 and a.size >= 4:
                    found.append((name, node, axis))
    return found


def weight_tensors(model) -> list[str]:
    """Float initializers with at least 2 dimensions that a Conv, MatMul or Gemm multiplies by (kernels), in the
    order the graph's nodes first use them."""
    return [name for name, _, _ in _kernel_sources(model)]


def bias_of(model, node) -> str | None:
    """The float bias initializer that the layer `node` (a Conv, MatMul or Gemm) adds: a Conv's or Gemm's third
    input, or the initializer of the Add that consumes a MatMul's output. None when there is none (zero biases
    folded away)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    candidates = list(node.input[2:3]) if node.op_type in ("Conv", "ConvTranspose", "Gemm") else []
    if not candidates:
        candidates = [i for n in model.graph.node if n.op_type == "Add" and node.output[0] in n.input
                      for i in n.input if i != node.output[0]]
    for name in candidates:
        if name in inits and numpy_helper.to_array(inits[name]).dtype == np.float32:
            return name
    return None


def _replace(model, name, array):
    from onnx import numpy_helper

    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))
            return
    raise KeyError(name)


def _array(model, name):
    from onnx import numpy_helper

    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name).copy()


def mutants(path) -> dict:
    """{description: mutated ModelProto}: the first, middle and last kernels scaled by 1.01, the last layer's bias
    shifted (one element, by 1% of its largest magnitude or 1e-2; added when the file has none), and the last
    kernel's last two output channels swapped (the last axis of a MatMul weight, the first of a Conv kernel)."""
    import onnx

    base = onnx.load(str(path))
    kernels = weight_tensors(base)
    last, last_node, last_axis = _kernel_sources(base)[-1]
    bias = bias_of(base, last_node)
    out = {}
    picks = {"first": kernels[0], "middle": kernels[len(kernels) // 2], "last": kernels[-1]}
    for where, name in picks.items():
        m = onnx.ModelProto()
        m.CopyFrom(base)
        _replace(m, name, _array(m, name) * 1.01)
        out[f"{where} kernel x1.01 ({name})"] = m
    m = onnx.ModelProto()
    m.CopyFrom(base)
    if bias is not None:
        name = bias
        b = _array(m, name)
        b[-1] += max(1e-2 * float(np.abs(b).max()), 1e-2)
        _replace(m, name, b)
        out[f"last bias shifted ({name})"] = m
    else:  # zero biases folded away (an untrained model): the last layer gains one
        _add_bias(m, last_node.output[0], _array(m, last).shape[last_axis])
        out[f"bias of 1e-2 added to one output channel of the last layer ({last})"] = m
    name, axis = last, last_axis
    m = onnx.ModelProto()
    m.CopyFrom(base)
    w = np.swapaxes(_array(m, name), axis, -1)
    w[..., [-1, -2]] = w[..., [-2, -1]]
    w = np.swapaxes(w, axis, -1)
    _replace(m, name, w)
    out[f"last kernel: two output channels swapped ({name})"] = m
    return out


def write_mutants(path, folder) -> dict:
    """Write every mutant of `path` into `folder`; returns {description: file path}."""
    import onnx

    files = {}
    for i, (what, m) in enumerate(mutants(path).items()):
        p = f"{folder}/mutant_{i}.onnx"
        onnx.save(m, p)
        files[what] = p
    return files


def _add_bias(model, output_name, channels, shift=1e-2):
    """Insert `output + b` after the node that writes `output_name` (a Conv, MatMul or Gemm), b zero but `shift`
    at its last output channel (axis 1 of a Conv's NCHW output, the last axis of a MatMul's)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    index, node = next((i, n) for i, n in enumerate(graph.node) if n.output and n.output[0] == output_name)
    b = np.zeros(channels, np.float32)
    b[-1] = shift
    if node.op_type in ("Conv", "ConvTranspose"):
        rank = len(next(a for a in node.attribute if a.name == "kernel_shape").ints) if any(
            a.name == "kernel_shape" for a in node.attribute) else 2
        b = b.reshape(channels, *[1] * rank)
    old = node.output[0]
    node.output[0] = f"{old}_before_mutant_bias"
    graph.initializer.append(numpy_helper.from_array(b, "mutant_bias"))
    graph.node.insert(index + 1, helper.make_node("Add", [node.output[0], "mutant_bias"], [old],
                                                  name="mutant_bias_add"))
