"""Sinusoidal positional encoding (Vaswani et al. 2017, Attention is all you need, section 3.5).

Attention is blind to order, so the Transformer adds to each embedding x_t (dimension d) a fixed vector that
depends on its position t only:

    PE(t, 2i)     = sin(t / max_wavelength^(2i / d))
    PE(t, 2i + 1) = cos(t / max_wavelength^(2i / d))

Every dimension pair is a sinusoid of its own wavelength (2*pi up to 2*pi*max_wavelength), so PE(t + k) is a
linear function of PE(t) and the model can attend by relative position.

Export: positions come from a cumulative sum of ones over the time axis and cos(a) is written sin(a + pi/2),
so the graph has no table to slice, no ``arange`` of a Python length and one Sin op: the same ONNX file runs
at any sequence length.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from kerastk.layers.checks import check_bool, check_float


def sinusoidal_table(length: int, dim: int, max_wavelength: float = 10000.0) -> np.ndarray:
    """The encoding of positions 0..length-1 as a numpy (length, dim) array, written as the paper states it."""
    table = np.zeros((length, dim), dtype=np.float64)
    position = np.arange(length)[:, None]
    for j in range(dim):
        angle = position[:, 0] / max_wavelength ** (2 * (j // 2) / dim)
        table[:, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    return table


@keras.saving.register_keras_serializable(package="kerastk")
class PositionalEncoding(keras.layers.Layer):
    """Add the sinusoidal position encoding to a sequence of embeddings: ``inputs * scale + PE[:T]``.

    Args:
        max_wavelength: the base of the geometric progression of wavelengths (10,000 in the paper).
        scale_inputs: multiply the inputs by sqrt(d) first, as the paper does with its embeddings (whose
            entries are small next to the encoding's unit amplitude).

    Input shape: (batch, T, d) with any T (None allowed) and a known d. Output shape: the same.
    """

    def __init__(self, max_wavelength=10000.0, scale_inputs=False, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = check_float("max_wavelength", max_wavelength, minimum=1.0, minimum_inclusive=False)
        check_bool("scale_inputs", scale_inputs)
        self.scale_inputs = scale_inputs

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError("PositionalEncoding needs inputs of shape (batch, time, features) with a known number "
                             f"of features; received input shape {tuple(input_shape)}.")
        self.dim = int(input_shape[-1])
        self.built = True

    def _frequencies(self, dtype):
        # 1 / max_wavelength^(2i/d) for feature j (i = j // 2) and the phase that turns sin into cos at odd j
        j = np.arange(self.dim)
        freq = 1.0 / self.max_wavelength ** (2 * (j // 2) / self.dim)
        phase = np.where(j % 2 == 1, math.pi / 2, 0.0)
        return ops.convert_to_tensor(freq, dtype=dtype), ops.convert_to_tensor(phase, dtype=dtype)

    def call(self, inputs):
        freq, phase = self._frequencies(inputs.dtype)
        # positions 0, 1, ..., T-1 as a (batch, T, 1) tensor, from the inputs' own (dynamic) shape
        position = ops.cumsum(ops.ones_like(inputs[:, :, :1]), axis=1) - 1.0
        encoding = ops.sin(position * freq + phase)
        if self.scale_inputs:
            inputs = inputs * math.sqrt(self.dim)
        return inputs + encoding

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength, "scale_inputs": self.scale_inputs}
