"""LayerScale (Touvron et al. 2021, Going deeper with Image Transformers; used by ConvNeXt).

A learnable per-channel scale, initialised small (1e-6), multiplies a residual branch so that each block
starts close to the identity and deep stacks train stably.
"""
from __future__ import annotations

import keras

from kerastk.layers.checks import check_float


@keras.saving.register_keras_serializable(package="kerastk")
class LayerScale(keras.layers.Layer):
    """Multiply the last axis by a learnable vector ``gamma`` of shape (C,), initialised to ``init_value``.

    Args:
        init_value: initial value of every entry of gamma.

    Input shape: (batch, ..., C). Output shape: the same.
    """

    def __init__(self, init_value=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_value = check_float("init_value", init_value)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError("LayerScale needs a known number of channels on the last axis; "
                             f"received input shape {tuple(input_shape)}.")
        self.gamma = self.add_weight(name="gamma", shape=(int(input_shape[-1]),),
                                     initializer=keras.initializers.Constant(self.init_value))
        self.built = True

    def call(self, inputs):
        return inputs * self.gamma

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}
