"""Graph fixes for exporter output that onnxruntime cannot run, applied before validation.

JAX route (jax2onnx): ``lax.reduce_window`` max pooling on an NHWC tensor is exported as an N-D ``MaxPool``
over a 6-D tensor (two leading Unsqueezes) with ``kernel_shape=[1, kh, kw, 1]``; onnxruntime's CPU MaxPool
supports 1 to 3 spatial axes only and fails at run time with "Unsupported pooling size". The fix rewrites
each such node as Squeeze -> Transpose to channels-first -> a true 2-D (or 1-D / 3-D) MaxPool -> Transpose back
-> Unsqueeze, which computes the same values (pads are ignored positions in both definitions).

TensorFlow route (tf2onnx): exact GELU (ConvNeXt, Transformers) becomes an ``Erfc`` node, which is not an ONNX
operator; it is rewritten as ``1 - Erf(x)`` (the definition of erfc), which onnxruntime runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def fix_channels_last_maxpool(model) -> int:
    """Rewrite channels-last N-D MaxPool nodes in place; returns how many were rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    new_nodes, fixed = [], 0
    axes_name = "kerastk_maxpool_fix_axes01"
    for node in graph.node:
        a = _attrs(node) if node.op_type == "MaxPool" else {}
        kernel = list(a.get("kernel_shape", []))
        strides = list(a.get("strides", [1] * len(kernel)))
        pads = list(a.get("pads", [0] * 2 * len(kernel)))
        dilations = list(a.get("dilations", [1] * len(kernel)))
        n = len(kernel)
        is_channels_last = (
            node.op_type == "MaxPool" and 3 <= n <= 5 and kernel[0] == 1 and kernel[-1] == 1
            and strides[0] == 1 and strides[-1] == 1 and dilations[0] == 1 and dilations[-1] == 1
            and pads[0] == pads[n - 1] == pads[n] == pads[2 * n - 1] == 0 and len(node.output) == 1
            and not a.get("ceil_mode") and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        )
        if not is_channels_last:
            new_nodes.append(node)
            continue
        fixed += 1
        tag = f"kerastk_maxpool_fix_{fixed}"
        rank = n  # the tensor being pooled: [N, spatial..., C] once the two leading unit axes are squeezed
        to_first = [0, rank - 1, *range(1, rank - 1)]
        to_last = [0, *range(2, rank), 1]
        new_nodes += [
            helper.make_node("Squeeze", [node.input[0], axes_name], [f"{tag}_nhwc"], name=f"{tag}_squeeze"),
            helper.make_node("Transpose", [f"{tag}_nhwc"], [f"{tag}_nchw"], perm=to_first, name=f"{tag}_to_nchw"),
            helper.make_node("MaxPool", [f"{tag}_nchw"], [f"{tag}_pooled"], name=f"{tag}_maxpool",
                             kernel_shape=kernel[1:-1], strides=strides[1:-1], dilations=dilations[1:-1],
                             pads=pads[1:n - 1] + pads[n + 1:2 * n - 1]),
            helper.make_node("Transpose", [f"{tag}_pooled"], [f"{tag}_pooled_nhwc"], perm=to_last,
                             name=f"{tag}_to_nhwc"),
            helper.make_node("Unsqueeze", [f"{tag}_pooled_nhwc", axes_name], [node.output[0]],
                             name=f"{tag}_unsqueeze"),
        ]
    if fixed:
        graph.initializer.append(numpy_helper.from_array(np.array([0, 1], dtype=np.int64), axes_name))
        del graph.node[:]
        graph.node.extend(new_nodes)
        onnx.checker.check_model(model)
    return fixed


def fix_erfc(model) -> int:
    """Rewrite every ``Erfc(x)`` node as ``Sub(1, Erf(x))`` in place; returns how many were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = [n for n in graph.node if n.op_type == "Erfc" and n.domain in ("", "ai.onnx")]
    if not nodes:
        return 0
    one = "kerastk_erfc_fix_one"
    graph.initializer.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), one))
    new_nodes = []
    for i, node in enumerate(graph.node):
        if node not in nodes:
            new_nodes.append(node)
            continue
        erf = f"kerastk_erfc_fix_{i}_erf"
        new_nodes += [helper.make_node("Erf", [node.input[0]], [erf], name=f"{erf}_node"),
                      helper.make_node("Sub", [one, erf], [node.output[0]], name=f"kerastk_erfc_fix_{i}_sub")]
    del graph.node[:]
    graph.node.extend(new_nodes)
    return len(nodes)


def fold_captured_constants(model, constants, expected_inputs=None) -> list[str]:
    """Turn graph inputs that are constants the exported function captured into initializers, in place.

    tf2onnx makes every non-variable tensor a TensorFlow graph captures (a ViT's position ids, a Swin attention
    mask, EfficientNet's normalisation statistics) a required graph input such as ``.../Less/x:0``. `constants`
    maps those names (the capture's placeholder, ``:0`` suffix optional) to their values. Any other input beyond
    the model's own `expected_inputs` (when given, a list of how many or which names are expected) is an error: a
    file that needs values no caller has. Returns the names folded."""
    from onnx import numpy_helper

    graph = model.graph
    initialized = {t.name for t in graph.initializer}
    constants = dict(constants or {})
    for name in list(constants):
        constants.setdefault(name.removesuffix(":0"), constants[name])
    folded, keep = [], []
    for value_info in graph.input:
        name = value_info.name
        if name in initialized:
            keep.append(value_info)
            continue
        value = constants.get(name, constants.get(name.removesuffix(":0")))
        if value is not None and (expected_inputs is None or name not in expected_inputs):
            graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            folded.append(name)
        else:
            keep.append(value_info)
    if folded:
        del graph.input[:]
        graph.input.extend(keep)
    if expected_inputs is not None:
        free = [v.name for v in graph.input if v.name not in initialized]
        if len(free) > len(expected_inputs):
            extra = [n for n in free if n not in expected_inputs][:5] or free[len(expected_inputs):][:5]
            raise ValueError(f"The exported graph needs {len(free)} inputs, the model has {len(expected_inputs)} "
                             f"({list(expected_inputs)}): {extra} are values the graph captured that the exporter "
                             f"turned into inputs and whose values are not known here.")
    return folded


def _uses_external_data(model) -> bool:
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in model.graph.initializer)


def apply_fixes(path, route: str, constants=None, expected_inputs=None) -> list[str]:
    """Apply the fixes that concern `route` to the ONNX file at `path`; returns what was done.

    Every route: weights an exporter wrote to a side file (jax2onnx's `<name>.onnx.data`) are folded back into
    the one .onnx file, so the validated file is self-contained and can be moved or copied alone; graph inputs
    that are captured constants (`constants`, by name) become initializers, and a graph with more inputs than
    `expected_inputs` (the model's input names) is refused (fold_captured_constants).
    """
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    model = onnx.load(str(path), load_external_data=False)
    done = []
    if _uses_external_data(model):
        load_external_data_for_model(model, str(Path(path).parent))
        done.append("folded external weight data into the .onnx file")
    folded = fold_captured_constants(model, constants, expected_inputs) if (constants or expected_inputs) else []
    if folded:
        done.append(f"folded {len(folded)} captured constant(s) the exporter made graph inputs into the file")
    count = fix_channels_last_maxpool(model) if route == "jax" else 0
    if count:
        done.append(f"rewrote {count} channels-last MaxPool node(s) as channels-first MaxPool")
    count = fix_erfc(model)
    if count:
        done.append(f"rewrote {count} Erfc node(s) as 1 - Erf")
    if done:
        onnx.save(model, str(path))
    return done
