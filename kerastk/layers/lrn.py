"""Local response normalisation across channels (Krizhevsky et al. 2012, AlexNet's "NORM" layers).

    b_c = a_c / (bias + alpha * sum_{c' = c - r}^{c + r} a_{c'}^2) ** beta

the sum running over the channels that exist (zero padding at the ends). ``alpha`` multiplies the plain sum, as
in ``tf.nn.local_response_normalization`` and the AlexNet paper (k=2, n=5 i.e. r=2, alpha=1e-4, beta=0.75);
Caffe's LRN divides alpha by n = 2r + 1 instead.

Built from keras.ops (pad the squared channels, add 2r + 1 shifted slices), so it runs and exports to ONNX on
every backend.
"""
from __future__ import annotations

import keras
from keras import ops

from kerastk.layers.checks import check_float, check_int


@keras.saving.register_keras_serializable(package="kerastk")
class LocalResponseNormalization(keras.layers.Layer):
    """Normalise each channel by the energy of its ``2 * depth_radius + 1`` neighbouring channels (last axis).

    Args:
        depth_radius: r, half-width of the channel window (>= 0).
        bias: k, added before the power (> 0 keeps the division safe).
        alpha: scale of the sum of squares.
        beta: exponent.

    Input shape: any rank >= 2, channels last. Output shape: the same.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = check_int("depth_radius", depth_radius, minimum=0)
        self.bias = check_float("bias", bias, minimum=0.0, minimum_inclusive=False)
        self.alpha = check_float("alpha", alpha, minimum=0.0)
        self.beta = check_float("beta", beta, minimum=0.0)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError("LocalResponseNormalization needs a known number of channels on the last axis; "
                             f"received input shape {tuple(input_shape)}.")
        self.built = True

    def call(self, inputs):
        channels = inputs.shape[-1]
        r = self.depth_radius
        squared = ops.square(inputs)
        if r:
            padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[r, r]])
            window_sum = padded[..., 0:channels]
            for i in range(1, 2 * r + 1):
                window_sum = window_sum + padded[..., i:i + channels]
        else:
            window_sum = squared
        # (bias + alpha * sum) ** -beta as exp(-beta * log(.)): the base is >= bias > 0, and jax2onnx (0.x)
        # cannot export a power of a tensor with a symbolic batch axis.
        return inputs * ops.exp(-self.beta * ops.log(self.bias + self.alpha * window_sum))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}
