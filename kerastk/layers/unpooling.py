"""Max unpooling with pooling indices (SegNet, Badrinarayanan et al. 2017), without storing indices.

SegNet's decoder upsamples a feature map by writing each value back to the position its encoder's max pool
took the maximum from, and zero everywhere else: sparse, edge-preserving upsampling with no weights. Frameworks
store those positions as "argmax indices"; ONNX exporters handle such index tensors poorly. The positions can be
recovered from the encoder's tensor *before* pooling instead, with ordinary element-wise ops:

    mask     = (pre_pool == nearest_upsample(max_pool(pre_pool)))   # True where a window's max sits
    unpooled = nearest_upsample(decoder_input) * mask

Ties (several equal maxima in a window - common after ReLU, where whole windows are 0) would copy the value
to each tied position; with ``first_max_only=True`` (default) only the first one in row-major order inside the
window keeps it, which is what an argmax (and SegNet's Caffe layer) gives.

Exported models: the position of a maximum jumps when two values of a window swap order. Keras and onnxruntime
round convolutions differently (~1e-6 of a channel's range), so in the rare window whose two largest values are
that close, an exported model can put the decoded value one pixel away from where Keras puts it. Exact ties
(zeros after ReLU) are computed identically on both sides and are harmless. Measured on the SegNet recipe's
model: in 2 of 11 --smoke runs (16 training steps; TensorFlow, JAX and torch routes) such a window moved
output probabilities over 128 test images by up to 0.009, the others matched within 2e-5; the fully trained
model's 300 test images differed by up to 5e-4 (mean IoU identical). Any
max-unpooling (PyTorch's MaxUnpool2d and its ONNX export included) has this property. A tolerance band that
shares the value between near-equal maxima makes the layer continuous, but here it needed 10% of a channel's
range before the differences stayed under 1e-4 - no longer unpooling by indices - so kerastk does not use one.
"""
from __future__ import annotations

import keras
from keras import ops

from kerastk.layers.checks import check_bool, check_int


@keras.saving.register_keras_serializable(package="kerastk")
class MaxUnpooling2D(keras.layers.Layer):
    """Place each value of a decoder tensor at the max position of the matching encoder pooling window.

    Called on ``[decoder_tensor, pre_pool_tensor]``:

    - ``decoder_tensor``: (batch, H // k, W // k, C), e.g. the encoder's pooled output after some decoding;
    - ``pre_pool_tensor``: (batch, H, W, C), the encoder tensor that ``MaxPooling2D(k, strides=k)`` pooled.

    Returns (batch, H, W, C): in every k x k window, the decoder value at the position of the window's
    maximum in ``pre_pool_tensor`` and 0 at the others. No weights; gradients flow to ``decoder_tensor``
    only (the positions are a constant mask), as with stored indices.

    Args:
        pool_size: k, the size and stride of the (square, non-overlapping) max pool being undone; H and W must be
            divisible by it.
        first_max_only: on ties keep only the first maximum of a window (row-major), as an argmax would;
            False marks every tied position.

    Channels-last only.
    """

    def __init__(self, pool_size=2, first_max_only=True, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = check_int("pool_size", pool_size, minimum=2)
        check_bool("first_max_only", first_max_only)
        self.first_max_only = first_max_only

    def _check_shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2 or \
                not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise ValueError("MaxUnpooling2D is called on [decoder_tensor, pre_pool_tensor]; "
                             f"received input shape {input_shape!r}.")
        small, big = (tuple(s) for s in input_shape)
        if len(small) != 4 or len(big) != 4:
            raise ValueError("MaxUnpooling2D needs two 4-D (batch, height, width, channels) tensors; "
                             f"received shapes {small} and {big}.")
        k = self.pool_size
        for axis, label in ((1, "height"), (2, "width")):
            if big[axis] is None:
                raise ValueError(f"MaxUnpooling2D needs a known {label}; received pre-pool shape {big}.")
            if big[axis] % k:
                raise ValueError(f"The pre-pool tensor's {label} ({big[axis]}) must be divisible by pool_size={k}; "
                                 f"received pre-pool shape {big}.")
            if small[axis] is not None and small[axis] * k != big[axis]:
                raise ValueError(f"The decoder tensor's {label} ({small[axis]}) must be the pre-pool {label} / "
                                 f"pool_size = {big[axis] // k}; received shapes {small} and {big}.")
        if small[3] is None or small[3] != big[3]:
            raise ValueError(f"Both tensors need the same number of channels; received shapes {small} and {big}.")
        return big

    def build(self, input_shape):
        self._check_shapes(input_shape)
        self.built = True

    def _upsample(self, x):
        """Nearest-neighbour upsampling by pool_size (each value copied into its k x k window)."""
        k = self.pool_size
        return ops.repeat(ops.repeat(x, k, axis=1), k, axis=2)

    def call(self, inputs):
        decoded, pre_pool = inputs
        k = self.pool_size
        _, h, w, c = self._check_shapes([tuple(decoded.shape), tuple(pre_pool.shape)])
        # Windows as their own axes: (batch, H/k, k, W/k, k, C). Static sizes keep the ONNX Reshape simple.
        windows = ops.reshape(pre_pool, (-1, h // k, k, w // k, k, c))
        peak = ops.max(windows, axis=(2, 4), keepdims=True)
        mask = ops.cast(ops.equal(windows, peak), decoded.dtype)
        if self.first_max_only:
            # maxima that come earlier in the window (row-major): those in earlier rows, then earlier in the row
            before_in_row = ops.cumsum(mask, axis=4) - mask
            row_counts = ops.sum(mask, axis=4, keepdims=True)
            rows_before = ops.cumsum(row_counts, axis=2) - row_counts
            mask = mask * ops.cast(ops.equal(before_in_row + rows_before, 0.0), decoded.dtype)
        mask = ops.reshape(mask, (-1, h, w, c))
        return self._upsample(decoded) * mask

    def compute_output_shape(self, input_shape):
        return self._check_shapes(input_shape)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "first_max_only": self.first_max_only}
