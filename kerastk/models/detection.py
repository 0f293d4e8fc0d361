"""Single-stage object detection: a YOLO-style grid head on a registered CNN backbone.

    model = kerastk.create_model("tiny_yolo", input_shape=(64, 64, 3), num_classes=3)
    anchors = kerastk.models.detection.model_anchors(model)            # (width, height) pixels, per cell
    y = kerastk.deploy.detection.encode_targets(labels, model.output_shape[1:3], anchors, 3, (64, 64))
    model.compile("adam", loss=kerastk.losses.YoloLoss())
    model.fit(x, y)                                                      # raw (n, S, S, A, 5 + C) predictions
    infer = detection_inference_model(model)                             # + in-graph decoding
    detections = kerastk.deploy.detection.postprocess(infer.predict(x))  # NMS -> boxes, scores, classes

The image is divided into an S_h x S_w grid, one cell per pixel of the backbone's feature map at `stride`
(64 x 64 images at stride 8: an 8 x 8 grid of 8-pixel cells). Each cell predicts A boxes, one per anchor size:
centre offsets in the cell (sigmoid), log-size relative to the anchor, an objectness logit and C class logits
(YOLOv2's parametrisation, Redmon & Farhadi 2017; see kerastk.deploy.detection). A box is the responsibility of
the cell holding its centre and of the anchor whose shape fits it best.

The training model's output is the raw grid (n, S_h, S_w, A, 5 + C), one plain tensor trained with
:class:`kerastk.losses.YoloLoss` against :func:`kerastk.deploy.detection.encode_targets`; its last layer
(:class:`kerastk.layers.AnchorGrid`) records the anchors, so a saved model carries what decoding needs.
:func:`detection_inference_model` appends the decoding (:class:`kerastk.layers.DecodeGrid`): its output -
and its ONNX file's - is (n, S_h * S_w * A, 4 + C) boxes in pixels and per-class scores; non-maximum
suppression runs in numpy (kerastk.deploy.detection.postprocess) on either.
"""
from __future__ import annotations

import math

import keras
import numpy as np

from kerastk.layers import AnchorGrid, DecodeGrid
from kerastk.models._common import check_input_shape, check_int
from kerastk.models.catalog import register_model

#: Default anchors as fractions of the image side: k-means (1 - IoU distance, YOLOv2) of the boxes of
#: kerastk.data.load("detection") gives 11, 16 and 21 pixels at 64 x 64.
DEFAULT_ANCHORS = ((0.17, 0.17), (0.25, 0.25), (0.33, 0.33))
#: Objectness bias at initialisation: p(object) = sigmoid(-4.6) = 1 % (Lin et al. 2017's prior), so the many
#: empty cells do not swamp the first steps with a large no-object loss.
OBJECTNESS_PRIOR = 0.01


def default_anchors(input_shape) -> list:
    """DEFAULT_ANCHORS scaled to an input (height, width, ...): [(width, height)] in pixels."""
    h, w = input_shape[0], input_shape[1]
    return [(round(fw * w, 2), round(fh * h, 2)) for fw, fh in DEFAULT_ANCHORS]


def backbone_features(backbone, input_shape, stride, backbone_kwargs=None, name="backbone"):
    """A registered network cut at its deepest feature map of a power-of-two stride <= `stride`.

    The backbone is built with ``include_top=False, pooling=None``; among its layers with a 4-D output whose
    size is the input's divided by a power of two, the deepest one of the largest stride not above `stride`
    is taken (mobilenet at stride 8: ``block5_pw_relu``). Layers after it are not part of the model.

    Returns:
        (features model, its stride) - the stride may be below `stride` (tiny_yolo then adds stride-2 convs).
    """
    from kerastk.models.catalog import create_model, list_models

    if not isinstance(backbone, str) or backbone not in list_models():
        raise ValueError(f"`backbone` must be a registered model name (kerastk.list_models()); "
                         f"received backbone={backbone!r}.")
    kwargs = dict(backbone_kwargs or {})
    try:
        net = create_model(backbone, input_shape=input_shape, include_top=False, pooling=None, **kwargs)
    except TypeError as exc:
        raise ValueError(f"`backbone`={backbone!r} must accept input_shape, include_top and pooling "
                         f"(a CNN classifier) and `backbone_kwargs`={kwargs!r}: {exc}") from None
    h, w = input_shape[0], input_shape[1]
    best, best_stride = None, 0
    for layer in net.layers:
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is None or len(shape) != 4 or not shape[1] or not shape[2]:
            continue
        s = h // shape[1]
        if s * shape[1] != h or s * shape[2] != w or s & (s - 1) or s > stride:
            continue
        if s >= best_stride:
            best, best_stride = layer, s
    if best is None or best_stride == 1 and stride > 1 and best is net.layers[0]:
        raise ValueError(f"backbone {backbone!r} has no feature map at a power-of-two stride <= {stride} for "
                         f"input_shape={tuple(input_shape)} (a 'valid'-padded network does not divide the image "
                         "into whole cells); use e.g. backbone='mobilenet' or 'resnet20'.")
    return keras.Model(net.input, best.output, name=name), best_stride


@register_model(family="detection", paper="Redmon & Farhadi 2017, YOLO9000: Better, Faster, Stronger (grid "
                "head, anchors, sigmoid offsets); Redmon et al. 2016, You Only Look Once",
                default_input_shape=(64, 64, 3), preprocessing="pixels / 255",
                reference_params=None, reference_macs=None,
                reference_source="no published configuration: a small single-stage head on a kerastk backbone",
                test_kwargs=dict(input_shape=(32, 32, 3), num_classes=2, anchors=((8, 8), (16, 16)),
                                 backbone_kwargs={"alpha": 0.25}, head_filters=8, head_convs=1))
def tiny_yolo(input_shape=(64, 64, 3), num_classes=3, anchors=None, backbone="mobilenet", backbone_kwargs=None,
              stride=8, head_filters=128, head_convs=2, bn_momentum=0.9):
    """YOLO-style single-stage detector: a registered CNN backbone cut at `stride`, a small convolutional head,
    raw (n, S_h, S_w, A, 5 + C) grid predictions.

    Args:
        input_shape: (height, width, channels); height and width divisible by `stride`.
        num_classes: C object classes (no background class: objectness says whether there is an object).
        anchors: A (width, height) box sizes in pixels per cell (None: DEFAULT_ANCHORS scaled to the input,
            3 anchors fitted to kerastk's shapes scenes). ``kerastk.deploy.detection.kmeans_anchors`` fits
            them to other data.
        backbone: registered model name built with include_top=False (default "mobilenet"; "resnet20" works
            too); cut at its deepest feature map of stride <= `stride`.
        backbone_kwargs: extra arguments for the backbone (e.g. {"alpha": 0.5} for mobilenet).
        stride: the grid cell size in pixels (a power of two): S_h = height / stride. When the backbone's
            deepest map is finer (resnet20: stride 4), 3x3 stride-2 convolutions make up the difference.
        head_filters: channels of the head's 3x3 convolutions (conv + BN + leaky ReLU 0.1, as YOLO).
        head_convs: number of those convolutions before the 1x1 prediction convolution.
        bn_momentum: momentum of every BatchNormalization layer, the backbone's included (Keras's 0.99 leaves
            the moving variance far from the batch variance for the first ~700 steps, so a short training
            evaluates badly; 0.9 settles in ~50 steps). None keeps each layer's own.

    Returns:
        keras.Model "tiny_yolo": image -> raw predictions (n, S_h, S_w, A, 5 + C) from an AnchorGrid layer
        named "detections" (which records the anchors; see :func:`model_anchors`).
    """
    shape = check_input_shape(input_shape, rank=3)
    check_int("num_classes", num_classes)
    check_int("stride", stride)
    if stride & (stride - 1):
        raise ValueError(f"`stride` must be a power of two (the grid cell size in pixels); received stride={stride!r}.")
    if shape[0] % stride or shape[1] % stride:
        raise ValueError(f"`input_shape` height and width must be divisible by stride={stride} (one grid cell per "
                         f"{stride} pixels); received input_shape={input_shape!r}.")
    anchors = default_anchors(shape) if anchors is None else anchors
    AnchorGrid(anchors, num_classes, shape[:2])  # validates anchors before any layer is built
    check_int("head_filters", head_filters)
    check_int("head_convs", head_convs, minimum=0)
    if bn_momentum is not None and (isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float))
                                    or not 0.0 <= bn_momentum < 1.0):
        raise ValueError(f"`bn_momentum` must be None or a number in [0, 1); received bn_momentum={bn_momentum!r}.")
    if backbone_kwargs is not None and not isinstance(backbone_kwargs, dict):
        raise ValueError(f"`backbone_kwargs` must be a dict or None; received backbone_kwargs={backbone_kwargs!r}.")

    # === Functional Model ===
    features, feature_stride = backbone_features(backbone, shape, stride, backbone_kwargs)
    inputs = keras.Input(shape, name="image")
    x = features(inputs)
    for i in range(int(round(math.log2(stride // feature_stride)))):
        x = keras.layers.Conv2D(head_filters, 3, strides=2, padding="same", use_bias=False,
                                name=f"head_down{i + 1}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"head_down{i + 1}_bn")(x)
        x = keras.layers.LeakyReLU(0.1, name=f"head_down{i + 1}_relu")(x)
    for i in range(head_convs):
        x = keras.layers.Conv2D(head_filters, 3, padding="same", use_bias=False, name=f"head{i + 1}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"head{i + 1}_bn")(x)
        x = keras.layers.LeakyReLU(0.1, name=f"head{i + 1}_relu")(x)
    grid = AnchorGrid(anchors, num_classes, shape[:2], name="detections")
    x = keras.layers.Conv2D(len(grid.anchors) * grid.depth, 1, name="head_predictions")(x)
    outputs = grid(x)
    model = keras.Model(inputs, outputs, name="tiny_yolo")

    if bn_momentum is not None:
        for layer in all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)

    # objectness prior: p(object) = 1 % at the start
    conv = model.get_layer("head_predictions")
    bias = np.zeros((len(grid.anchors), grid.depth), dtype="float32")
    bias[:, 4] = math.log(OBJECTNESS_PRIOR / (1.0 - OBJECTNESS_PRIOR))
    conv.bias.assign(bias.reshape(-1))
    return model


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def _anchor_grid(model) -> AnchorGrid:
    grids = [layer for layer in model.layers if isinstance(layer, AnchorGrid)]
    if len(grids) != 1 or model.outputs[0] is not grids[0].output:
        raise ValueError(f"{model.name!r} is not a grid detector: its output must come from one "
                         "kerastk.layers.AnchorGrid layer (build it with kerastk.create_model('tiny_yolo')).")
    return grids[0]


def model_anchors(model) -> list:
    """The anchors [(width, height)] in pixels that a detector built by :func:`tiny_yolo` predicts relative to."""
    return [tuple(a) for a in _anchor_grid(model).anchors]


def detection_inference_model(model, name=None):
    """The detector with its decoding in the graph: image -> (n, S_h * S_w * A, 4 + C) decoded boxes
    x1, y1, x2, y2 in pixels and per-class scores p(object) * p(class | object) (kerastk.layers.DecodeGrid).

    Shares the weights of `model` (a tiny_yolo). Exported to ONNX, the file gives decoded boxes; apply
    ``kerastk.deploy.detection.postprocess`` (numpy non-maximum suppression) to its output.
    """
    from kerastk.core.boxes import MAX_LOG_SCALE

    grid = _anchor_grid(model)
    decoded = DecodeGrid(grid.anchors, grid.image_size, max_log_scale=MAX_LOG_SCALE, name="decoded")(model.outputs[0])
    return keras.Model(model.input, decoded, name=name or f"{model.name}_decoded")
