"""Mutants of an exported ONNX file: what a corrupted or wrongly converted file looks like (one weight tensor
scaled by 1%, a bias shifted, two output channels swapped). The validator must fail every one of them."""
from __future__ import annotations

import numpy as np


def weight_tensors(model) -> list[str]:
    """Float initializers with at least 2 dimensions that a Conv, MatMul or Gemm multiplies by (kernels), in the
    order the graph's nodes first use them."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    order = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "LSTM", "GRU", "RNN"):
            continue
        for name in node.input[1:]:
            if name in inits and name not in order:
                a = numpy_helper.to_array(inits[name])
                if a.dtype == np.float32 and a.ndim >= 2 and a.size >= 4:
                    order.append(name)
    return order


def bias_tensors(model) -> list[str]:
    """Float 1-D initializers consumed by an Add, Conv or Gemm (biases and folded normalisation shifts)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type not in ("Add", "Conv", "Gemm", "ConvTranspose"):
            continue
        for name in node.input:
            if name in inits and name not in found:
                a = numpy_helper.to_array(inits[name])
                if a.dtype == np.float32 and a.ndim == 1 and a.size >= 2:
                    found.append(name)
    return found


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
    """{description: mutated ModelProto}: the first, middle and last kernels scaled by 1.01, the last bias shifted
    (one element, by 1% of the largest bias magnitude or 1e-2), and the last kernel's last two output channels
    swapped (the output channels lie on the last axis of a MatMul weight, the first of a Conv kernel)."""
    import onnx

    base = onnx.load(str(path))
    kernels = weight_tensors(base)
    biases = bias_tensors(base)
    out = {}
    picks = {"first": kernels[0], "middle": kernels[len(kernels) // 2], "last": kernels[-1]}
    for where, name in picks.items():
        m = onnx.ModelProto()
        m.CopyFrom(base)
        _replace(m, name, _array(m, name) * 1.01)
        out[f"{where} kernel x1.01 ({name})"] = m
    m = onnx.ModelProto()
    m.CopyFrom(base)
    if biases:
        name = biases[-1]
        b = _array(m, name)
        b[-1] += max(1e-2 * float(np.abs(b).max()), 1e-2)
        _replace(m, name, b)
        out[f"last bias shifted ({name})"] = m
    else:  # zero biases folded away (an untrained model): the last layer gains one
        _add_bias(m, kernels[-1])
        out[f"bias of 1e-2 added to one output channel of the last layer ({kernels[-1]})"] = m
    name = kernels[-1]
    m = onnx.ModelProto()
    m.CopyFrom(base)
    w = _array(m, name)
    consumer = next(n for n in m.graph.node if name in n.input)
    axis = 0 if consumer.op_type in ("Conv", "ConvTranspose") else -1
    w = np.swapaxes(w, axis, -1) if axis == 0 else w
    w[..., [-1, -2]] = w[..., [-2, -1]]
    w = np.swapaxes(w, axis, -1) if axis == 0 else w
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


def _add_bias(model, kernel_name, shift=1e-2):
    """Insert `output + b` after the node that multiplies by `kernel_name`, b zero but `shift` at one channel
    (axis 1 of a Conv's NCHW output, the last axis of a MatMul's)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    index, node = next((i, n) for i, n in enumerate(graph.node) if kernel_name in n.input)
    w = _array(model, kernel_name)
    conv = node.op_type in ("Conv", "ConvTranspose")
    channels = w.shape[0] if node.op_type == "Conv" else (w.shape[1] if conv else w.shape[-1])
    b = np.zeros(channels, np.float32)
    b[-1] = shift
    if conv:
        b = b.reshape(channels, *[1] * (len(w.shape) - 2))
    old = node.output[0]
    node.output[0] = f"{old}_before_mutant_bias"
    graph.initializer.append(numpy_helper.from_array(b, "mutant_bias"))
    graph.node.insert(index + 1, helper.make_node("Add", [node.output[0], "mutant_bias"], [old],
                                                  name="mutant_bias_add"))
