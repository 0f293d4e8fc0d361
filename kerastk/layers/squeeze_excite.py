"""Squeeze-and-excitation (Hu et al. 2018, Squeeze-and-Excitation Networks).

Squeeze: global average pooling summarises each channel of a feature map. Excite: a bottleneck of two dense
layers (C -> C / reduction -> C) turns the summary into one gate per channel in (0, 1), which rescales the input.
The block costs 2 * C^2 / reduction weights and lets the network reweight channels from global context.
"""
from __future__ import annotations

import keras
from keras import ops

from kerastk.layers.checks import check_activation, check_int


@keras.saving.register_keras_serializable(package="kerastk")
class SqueezeExcite(keras.layers.Layer):
    """Channel attention for channels-last feature maps of rank 3 (1-D maps) or 4 (2-D maps) and above.

    Args:
        reduction: bottleneck ratio r; the hidden layer has max(min_units, C // r) units.
        min_units: smallest bottleneck width.
        activation: activation of the bottleneck layer (paper: ReLU).
        gate: activation of the expansion layer (paper: sigmoid).

    Input shape: (batch, *spatial, C). Output shape: the same.
    Weights: ``squeeze`` Dense(C -> units) and ``excite`` Dense(units -> C), both with biases.
    """

    def __init__(self, reduction=16, min_units=1, activation="relu", gate="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.reduction = check_int("reduction", reduction)
        self.min_units = check_int("min_units", min_units)
        self.activation = check_activation("activation", activation)
        self.gate = check_activation("gate", gate)
        self.squeeze = None
        self.excite = None

    def _channels(self, input_shape):
        if len(input_shape) < 3 or input_shape[-1] is None:
            raise ValueError("SqueezeExcite needs a channels-last feature map (batch, *spatial, channels) of "
                             f"rank >= 3 with known channels; received input shape {tuple(input_shape)}.")
        return int(input_shape[-1])

    def units_for(self, channels: int) -> int:
        """Width of the bottleneck for ``channels`` input channels."""
        return max(self.min_units, channels // self.reduction)

    def build(self, input_shape):
        channels = self._channels(input_shape)
        units = self.units_for(channels)
        pooled = (input_shape[0], *([1] * (len(input_shape) - 2)), channels)
        self.squeeze = keras.layers.Dense(units, activation=self.activation, name="squeeze", dtype=self.dtype_policy)
        self.squeeze.build(pooled)
        self.excite = keras.layers.Dense(channels, activation=self.gate, name="excite", dtype=self.dtype_policy)
        self.excite.build((*pooled[:-1], units))
        self.built = True

    def call(self, inputs):
        spatial_axes = tuple(range(1, len(inputs.shape) - 1))
        summary = ops.mean(inputs, axis=spatial_axes, keepdims=True)  # (batch, 1, ..., 1, C)
        return inputs * self.excite(self.squeeze(summary))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def count_macs(self, input_shapes, output_shapes) -> int:
        """MACs of the two dense layers for one sample (pooling and the rescale are not counted)."""
        channels = self._channels(input_shapes[0])
        units = self.units_for(channels)
        return channels * units + units * channels

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction, "min_units": self.min_units,
                "activation": keras.activations.serialize(self.activation),
                "gate": keras.activations.serialize(self.gate)}
