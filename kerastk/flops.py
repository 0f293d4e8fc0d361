"""Multiply-accumulate counts (MACs, the "mult-adds" papers quote) for one sample of a Keras model.

Counted: convolutions (1-D/2-D/3-D, grouped, transposed), depthwise and separable convolutions, dense layers
(also applied per time step), and any layer that defines ``count_macs(input_shapes, output_shapes) -> int``
(kerastk's own layers with weights do). Normalisation, activations, pooling and element-wise additions are
not counted, as in the papers' figures. Recurrent layers (SimpleRNN, LSTM, GRU, also inside Bidirectional)
count their input and recurrent kernels once per time step. A variable (None) axis is counted as length 1, so
a variable-length sequence model's figure is per time step.
"""
from __future__ import annotations

import math


def _shape(t):
    return tuple(1 if d is None else d for d in t.shape)


def _node_shapes(layer):
    """(input shapes, output shapes) for each call of `layer` in the graph."""
    import keras

    for node in getattr(layer, "_inbound_nodes", []):
        ins = [_shape(t) for t in keras.tree.flatten(node.arguments.keras_tensors)]
        outs = [_shape(t) for t in keras.tree.flatten(node.outputs)]
        yield ins, outs


def _spatial(shape, data_format):
    """Spatial extent of a (batch, ..., channels) or (batch, channels, ...) shape."""
    return shape[1:-1] if data_format != "channels_first" else shape[2:]


def layer_macs(layer, in_shapes, out_shapes) -> int:
    """MACs of one call of `layer` for one sample."""
    import keras

    L = keras.layers
    if hasattr(layer, "count_macs"):
        return int(layer.count_macs(in_shapes, out_shapes))
    fmt = getattr(layer, "data_format", "channels_last")
    out = out_shapes[0]
    if isinstance(layer, L.SeparableConv1D | L.SeparableConv2D):
        kernels = math.prod(layer.depthwise_kernel.shape) + math.prod(layer.pointwise_kernel.shape)
        return math.prod(_spatial(out, fmt)) * kernels
    if isinstance(layer, L.DepthwiseConv1D | L.DepthwiseConv2D):
        return math.prod(_spatial(out, fmt)) * math.prod(layer.kernel.shape)
    if isinstance(layer, L.Conv1DTranspose | L.Conv2DTranspose | L.Conv3DTranspose):
        return math.prod(_spatial(in_shapes[0], fmt)) * math.prod(layer.kernel.shape)
    if isinstance(layer, L.Conv1D | L.Conv2D | L.Conv3D):
        # kernel is (*window, in_channels / groups, filters): grouped convolutions are counted by its size
        return math.prod(_spatial(out, fmt)) * math.prod(layer.kernel.shape)
    if isinstance(layer, L.Bidirectional):
        return sum(layer_macs(sub, in_shapes, out_shapes) for sub in (layer.forward_layer, layer.backward_layer))
    if isinstance(layer, L.RNN):
        cell = layer.cell
        steps = in_shapes[0][1] if len(in_shapes[0]) >= 3 else 1
        return steps * (math.prod(cell.kernel.shape) + math.prod(cell.recurrent_kernel.shape))
    if isinstance(layer, L.Dense):
        return math.prod(out[1:-1]) * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.Model):
        return count_flops(layer)
    return 0


def count_flops(model) -> int:
    """Multiply-accumulates of one forward pass for one sample (batch size 1)."""
    total = 0
    for layer in model.layers:
        for ins, outs in _node_shapes(layer):
            total += layer_macs(layer, ins, outs)
    return int(total)
