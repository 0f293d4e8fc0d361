"""DropConnect (Wan et al. 2013, Regularization of Neural Networks using DropConnect).

Dropout zeroes activations; DropConnect zeroes individual *weights*: while training, each call multiplies the
dense kernel by a fresh Bernoulli(1 - rate) mask (scaled by 1 / (1 - rate) so the expected kernel is unchanged).
At inference the full kernel is used (the paper's moment-matching inference is approximated by the mean, as
in common implementations).
"""
from __future__ import annotations

import math

import keras
from keras import ops

from kerastk.layers.checks import check_activation, check_bool, check_int, check_rate, check_seed


@keras.saving.register_keras_serializable(package="kerastk")
class DropConnectDense(keras.layers.Layer):
    """Dense layer whose kernel entries are dropped at random while training.

    Args:
        units: output features.
        rate: probability of dropping each kernel entry, in [0, 1).
        activation: activation applied to the output (None: linear).
        use_bias: add a bias vector (never dropped).
        kernel_initializer, bias_initializer: Keras initializers.
        seed: seed of the layer's SeedGenerator (None: random).

    Input shape: (batch, ..., in_features). Output shape: (batch, ..., units).
    Weights: ``kernel`` (in_features, units) and ``bias`` (units,).
    """

    def __init__(self, units, rate=0.5, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_int("units", units)
        self.rate = check_rate("rate", rate)
        self.activation = check_activation("activation", activation)
        check_bool("use_bias", use_bias)
        self.use_bias = use_bias
        try:
            self.kernel_initializer = keras.initializers.get(kernel_initializer)
        except (ValueError, TypeError):
            raise ValueError(f"`kernel_initializer`={kernel_initializer!r} is not a Keras initializer.") from None
        try:
            self.bias_initializer = keras.initializers.get(bias_initializer)
        except (ValueError, TypeError):
            raise ValueError(f"`bias_initializer`={bias_initializer!r} is not a Keras initializer.") from None
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError("DropConnectDense needs a known number of input features on the last axis; "
                             f"received input shape {tuple(input_shape)}.")
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
                     if self.use_bias else None)
        self.built = True

    def call(self, inputs, training=None):
        kernel = ops.convert_to_tensor(self.kernel)
        if training and self.rate > 0.0:
            kernel = keras.random.dropout(kernel, self.rate, seed=self.seed_generator)
        outputs = ops.matmul(inputs, kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def count_macs(self, input_shapes, output_shapes) -> int:
        """MACs for one sample: one kernel product per position of the output (as for Dense)."""
        return math.prod(output_shapes[0][1:-1]) * math.prod(self.kernel.shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "rate": self.rate,
                "activation": keras.activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer), "seed": self.seed}
