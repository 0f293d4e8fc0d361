"""The two ends of a YOLO-style detection head (Redmon & Farhadi 2017, YOLO9000).

:class:`AnchorGrid` is the training model's last layer: it reshapes the head's (B, S_h, S_w, A * (5 + C))
convolution output into (B, S_h, S_w, A, 5 + C) raw predictions and records the anchors and the image size
they refer to, so a saved model carries what decoding needs. :class:`DecodeGrid` turns those raw predictions
into boxes and class scores inside the graph - the same arithmetic as the numpy
``kerastk.deploy.detection.decode_grid`` - so an exported inference model outputs decoded boxes:

    raw[..., 0:2] = tx, ty   cx = (col + sigmoid(tx)) * image_w / S_w       (and cy with rows)
    raw[..., 2:4] = tw, th   w = anchor_w * exp(clip(tw, -m, m))            (m = max_log_scale)
    raw[..., 4]   = to       p(object) = sigmoid(to)
    raw[..., 5:]  = class logits, p(class | object) = softmax
    decoded = [x1, y1, x2, y2 (pixels, clipped to the image), p(object) * p(class | object) for each class]
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kerastk.layers.checks import check_float, check_int


def _anchor_list(anchors):
    from kerastk.core.boxes import check_anchors

    a = check_anchors(anchors)
    return [[float(w), float(h)] for w, h in a]


def _size_pair(image_size):
    pair = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(pair) != 2:
        raise ValueError(f"`image_size` must be (height, width) in pixels; received image_size={image_size!r}.")
    return [check_int("image_size", v) for v in pair]


@keras.saving.register_keras_serializable(package="kerastk")
class AnchorGrid(keras.layers.Layer):
    """Reshape (B, S_h, S_w, A * (5 + C)) to (B, S_h, S_w, A, 5 + C) raw detections; carries the anchors.

    Args:
        anchors: A (width, height) pairs in pixels.
        num_classes: C.
        image_size: (height, width) of the input image in pixels.
    """

    def __init__(self, anchors, num_classes, image_size, **kwargs):
        super().__init__(**kwargs)
        self.anchors = _anchor_list(anchors)
        self.num_classes = check_int("num_classes", num_classes)
        self.image_size = _size_pair(image_size)

    @property
    def depth(self):
        return 5 + self.num_classes

    def build(self, input_shape):
        channels = input_shape[-1]
        if len(input_shape) != 4 or channels != len(self.anchors) * self.depth:
            raise ValueError(f"AnchorGrid expects (batch, S_h, S_w, {len(self.anchors)} * {self.depth}) inputs "
                             f"(anchors x (5 + num_classes)); received {tuple(input_shape)}.")
        self.built = True

    def call(self, inputs):
        s = ops.shape(inputs)
        return ops.reshape(inputs, (s[0], s[1], s[2], len(self.anchors), self.depth))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], len(self.anchors), self.depth)

    def get_config(self):
        return {**super().get_config(), "anchors": self.anchors, "num_classes": self.num_classes,
                "image_size": self.image_size}


@keras.saving.register_keras_serializable(package="kerastk")
class DecodeGrid(keras.layers.Layer):
    """Raw grid predictions (B, S_h, S_w, A, 5 + C) -> (B, S_h * S_w * A, 4 + C): boxes x1, y1, x2, y2 in
    pixels (clipped to the image) and per-class scores p(object) * p(class | object), in (row, col, anchor)
    order. No weights.

    Args:
        anchors: A (width, height) pairs in pixels (those the targets were encoded with).
        image_size: (height, width) in pixels.
        max_log_scale: tw, th are clipped to +-max_log_scale before exp (as kerastk.deploy.detection does).
    """

    def __init__(self, anchors, image_size, max_log_scale=4.0, **kwargs):
        super().__init__(**kwargs)
        self.anchors = _anchor_list(anchors)
        self.image_size = _size_pair(image_size)
        self.max_log_scale = check_float("max_log_scale", max_log_scale, minimum=0.0, minimum_inclusive=False)

    def build(self, input_shape):
        if len(input_shape) != 5 or input_shape[3] != len(self.anchors) or input_shape[4] is None \
                or input_shape[4] < 6 or None in input_shape[1:3]:
            raise ValueError(f"DecodeGrid expects raw predictions (batch, S_h, S_w, {len(self.anchors)}, 5 + C) "
                             f"with a fixed grid; received {tuple(input_shape)}.")
        self.built = True

    def call(self, inputs):
        _, sh, sw, na, depth = inputs.shape
        height, width = self.image_size
        dtype = inputs.dtype
        # cell origins and anchor sizes as constants broadcast over (B, S_h, S_w, A)
        rows, cols = np.meshgrid(np.arange(sh), np.arange(sw), indexing="ij")
        col = ops.convert_to_tensor(cols[None, :, :, None].astype("float32"), dtype=dtype)
        row = ops.convert_to_tensor(rows[None, :, :, None].astype("float32"), dtype=dtype)
        anchors = np.asarray(self.anchors, dtype="float32")
        anchor_w = ops.convert_to_tensor(anchors[:, 0], dtype=dtype)
        anchor_h = ops.convert_to_tensor(anchors[:, 1], dtype=dtype)
        m = self.max_log_scale
        cx = (col + ops.sigmoid(inputs[..., 0])) * (width / sw)
        cy = (row + ops.sigmoid(inputs[..., 1])) * (height / sh)
        w = anchor_w * ops.exp(ops.clip(inputs[..., 2], -m, m))
        h = anchor_h * ops.exp(ops.clip(inputs[..., 3], -m, m))
        boxes = ops.stack([ops.clip(cx - 0.5 * w, 0.0, float(width)), ops.clip(cy - 0.5 * h, 0.0, float(height)),
                           ops.clip(cx + 0.5 * w, 0.0, float(width)), ops.clip(cy + 0.5 * h, 0.0, float(height))],
                          axis=-1)
        scores = ops.sigmoid(inputs[..., 4:5]) * ops.softmax(inputs[..., 5:], axis=-1)
        decoded = ops.concatenate([boxes, scores], axis=-1)
        return ops.reshape(decoded, (ops.shape(inputs)[0], sh * sw * na, depth - 1))

    def compute_output_shape(self, input_shape):
        _, sh, sw, na, depth = input_shape
        return (input_shape[0], sh * sw * na, depth - 1)

    def get_config(self):
        return {**super().get_config(), "anchors": self.anchors, "image_size": self.image_size,
                "max_log_scale": self.max_log_scale}
