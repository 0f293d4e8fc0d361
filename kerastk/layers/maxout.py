"""Maxout (Goodfellow et al. 2013, Maxout Networks): the max over groups of linear units.

A maxout unit takes the maximum of k affine pieces, so it learns a convex piecewise-linear activation. The
usual Keras form is a Dense (or Conv) layer with ``num_units * k`` outputs followed by this layer, which splits
those features into ``num_units`` contiguous groups of ``k`` and keeps each group's maximum.
"""
from __future__ import annotations

import keras
from keras import ops

from kerastk.layers.checks import check_int


@keras.saving.register_keras_serializable(package="kerastk")
class Maxout(keras.layers.Layer):
    """Max over ``num_units`` contiguous groups of the ``axis`` dimension.

    Args:
        num_units: number of outputs on ``axis``; the axis size C must be divisible by it (each group holds
            C // num_units features).
        axis: the feature axis (default: last).

    Input shape: any rank >= 2, with C features on ``axis``.
    Output shape: the same with ``num_units`` on ``axis``.
    """

    def __init__(self, num_units, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.num_units = check_int("num_units", num_units)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"`axis` must be an integer; received axis={axis!r}.")
        self.axis = axis

    def _axis_and_size(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"`axis`={self.axis} is not a feature axis of an input of rank {rank} "
                             f"(shape {tuple(input_shape)}; axis 0 is the batch).")
        axis = self.axis % rank
        size = input_shape[axis]
        if size is None:
            raise ValueError(f"Maxout needs a known size on axis {self.axis}; received shape {tuple(input_shape)}.")
        if size % self.num_units:
            raise ValueError(f"`num_units`={self.num_units} must divide the {size} features on axis "
                             f"{self.axis} (input shape {tuple(input_shape)}).")
        return axis, size

    def build(self, input_shape):
        self._axis_and_size(input_shape)
        self.built = True

    def call(self, inputs):
        static = tuple(inputs.shape)
        axis, size = self._axis_and_size(static)
        pieces = size // self.num_units
        # Reshape the axis into (num_units, pieces) and take the max over the pieces. Static sizes are used
        # where known (a clean ONNX Reshape); -1 stands for the one unknown axis (the batch), else the
        # dynamic shape is read.
        dims = list(static)
        unknown = [i for i, d in enumerate(dims) if d is None]
        if len(unknown) == 1:
            dims[unknown[0]] = -1
        elif unknown:
            dyn = ops.shape(inputs)
            dims = [dyn[i] if d is None else d for i, d in enumerate(dims)]
        new_shape = [*dims[:axis], self.num_units, pieces, *dims[axis + 1:]]
        return ops.max(ops.reshape(inputs, new_shape), axis=axis + 1)

    def compute_output_shape(self, input_shape):
        axis, _ = self._axis_and_size(input_shape)
        shape = list(input_shape)
        shape[axis] = self.num_units
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "num_units": self.num_units, "axis": self.axis}
