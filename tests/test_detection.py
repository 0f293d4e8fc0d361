"""Single-stage detection: target assignment and decoding round-trip real scenes' boxes, NMS and mAP on hand
cases with known answers (a published worked example included), the YOLO loss against numpy, and the exported
detector (decoding in the graph) gives the same final boxes from ONNX as from Keras - under this process's
backend."""
import json

import keras
import numpy as np
import pytest

import kerastk
from kerastk.data.scenes import scenes
from kerastk.deploy.detection import (
    MAX_LOG_SCALE,
    boxes_from_labels,
    compare_detections,
    decode,
    decode_grid,
    encode_targets,
    kmeans_anchors,
    non_max_suppression,
    postprocess,
)
from kerastk.losses import YoloLoss, yolo_loss
from kerastk.metrics import (
    COCO_IOU_THRESHOLDS,
    average_precision,
    detection_metrics,
    interpolated_average_precision,
    mean_average_precision,
)
from kerastk.models.detection import DEFAULT_ANCHORS, detection_inference_model, model_anchors

SIZE = 64
ANCHORS = [(11.0, 11.0), (16.0, 16.0), (21.0, 21.0)]
GRID = (8, 8)


@pytest.fixture(scope="module")
def scene_data():
    x, _, labels, names = scenes(n_samples=40, image_size=SIZE, seed=3)
    return x / 255.0, labels, names


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def perfect_predictions(targets, confidence=12.0):
    """Raw logits that decode exactly to the encoded targets (what a perfect detector would output)."""
    raw = np.zeros_like(targets, dtype=np.float64)
    raw[..., 0:2] = _logit(targets[..., 0:2])
    raw[..., 2:4] = targets[..., 2:4]
    raw[..., 4] = np.where(targets[..., 4] > 0, confidence, -confidence)
    raw[..., 5:] = confidence * targets[..., 5:]
    return raw


# --- target assignment and decoding -------------------------------------------------------------------------


def test_encode_assigns_centre_cell_and_best_anchor():
    # a 14 x 18 box centred at (45, 21): cell column 5, row 2 of the 8-pixel grid; closest anchor 16 x 16
    labels = np.full((1, 3, 5), -1.0, dtype=np.float32)
    labels[0, 0] = [2, 38, 12, 52, 30]
    t = encode_targets(labels, GRID, ANCHORS, 3, SIZE)
    assert t.shape == (1, 8, 8, 3, 8)
    assert t[..., 4].sum() == 1 and t[0, 2, 5, 1, 4] == 1
    np.testing.assert_allclose(t[0, 2, 5, 1], [45 / 8 - 5, 21 / 8 - 2, np.log(14 / 16), np.log(18 / 16), 1, 0, 0, 1],
                               rtol=1e-6)
    # a second box wanting the same cell and anchor takes the next best anchor of that cell
    labels[0, 1] = [0, 39, 13, 53, 29]
    t = encode_targets(labels, GRID, ANCHORS, 3, SIZE)
    # (a 14 x 16 box: IoU 0.875 with 16 x 16, taken; then 0.54 with 11 x 11 before 0.51 with 21 x 21)
    assert t[0, 2, 5, :, 4].tolist() == [1, 1, 0] and t[0, 2, 5, 0, 5] == 1


def test_encode_decode_round_trip_on_scenes(scene_data):
    _, labels, _ = scene_data
    targets = encode_targets(labels, GRID, ANCHORS, 3, SIZE)
    truth = boxes_from_labels(labels)
    assert targets[..., 4].sum() == sum(len(b) for b, _ in truth)  # no box lost to a full cell here
    offsets = targets[targets[..., 4] > 0][:, :2]
    assert offsets.min() >= 0 and offsets.max() < 1
    detections = postprocess(perfect_predictions(targets), ANCHORS, SIZE, score_threshold=0.5)
    for (boxes, scores, classes), (true_boxes, true_classes) in zip(detections, truth):
        assert len(boxes) == len(true_boxes)
        order = np.lexsort((boxes[:, 1], boxes[:, 0], classes))
        true_order = np.lexsort((true_boxes[:, 1], true_boxes[:, 0], true_classes))
        np.testing.assert_array_equal(classes[order], true_classes[true_order])
        np.testing.assert_allclose(boxes[order], true_boxes[true_order], atol=1e-3)
        assert np.all(scores > 0.99)


def test_decode_layout_and_clipping():
    raw = np.zeros((1, 2, 2, 1, 6))
    raw[0, 1, 0, 0, 0:4] = [0.0, 0.0, np.log(2.0), 50.0]  # centre of cell (row 1, col 0); h clipped at e^4
    boxes, scores, classes = decode(raw, [(10, 10)], (40, 40))
    assert boxes.shape == (1, 4, 4)
    # (row, col, anchor) order: index 2 is row 1, col 0 -> centre (10, 30), w 20, h 10 * e^4 clipped to the image
    np.testing.assert_allclose(boxes[0, 2], [0, 0, 20, 40])
    np.testing.assert_allclose(scores, 0.5)  # sigmoid(0) * softmax of a single class
    assert MAX_LOG_SCALE == 4.0
    decoded = decode_grid(raw, [(10, 10)], 40)
    np.testing.assert_allclose(decode(decoded)[0], boxes)  # decoded input is taken as it is


def test_kmeans_anchors_fit_box_sizes():
    labels = np.full((40, 1, 5), -1.0)
    labels[:20, 0] = [0, 0, 0, 10, 10]
    labels[20:, 0] = [1, 0, 0, 30, 20]
    np.testing.assert_allclose(kmeans_anchors(labels, k=2), [[10, 10], [30, 20]])


# --- non-maximum suppression ---------------------------------------------------------------------------------


def test_nms_hand_cases():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # box 1 overlaps box 0 (IoU 9/11), box 3 is box 0 again
    assert non_max_suppression(boxes, scores, 0.5, class_aware=False).tolist() == [0, 2]
    # class-aware: box 1 is another class, so it stays
    assert non_max_suppression(boxes, scores, 0.5, classes=[0, 1, 0, 0]).tolist() == [0, 1, 2]
    # a loose IoU threshold keeps box 1 (9/11 = 0.818 is not > 0.85); an equal box is always suppressed
    assert non_max_suppression(boxes, scores, 0.85, class_aware=False).tolist() == [0, 1, 2]
    assert non_max_suppression(boxes, scores, 0.5, score_threshold=0.75, class_aware=False).tolist() == [0]
    assert non_max_suppression(boxes, scores, 0.5, max_detections=1, class_aware=False).tolist() == [0]
    # the ranking is by score, not by position
    assert non_max_suppression(boxes, scores[::-1].copy(), 0.5, class_aware=False).tolist() == [3, 2]
    assert non_max_suppression(np.zeros((0, 4)), np.zeros(0), class_aware=False).tolist() == []


def test_compare_detections_reports_differences():
    a = [(np.array([[0, 0, 10, 10], [5, 5, 9, 9.0]]), np.array([0.9, 0.8]), np.array([0, 1]))]
    swapped = [(a[0][0][::-1], a[0][1][::-1], a[0][2][::-1])]  # same boxes listed in another order
    assert compare_detections(a, swapped)["match"]
    moved = [(a[0][0] + [0, 0, 0, 1e-3], a[0][1], a[0][2])]
    same = compare_detections(a, moved)
    assert not same["match"] and same["max_box_diff"] == pytest.approx(1e-3)
    assert not compare_detections(a, [(a[0][0], a[0][1], np.array([0, 2]))])["same_classes"]
    assert not compare_detections(a, [(a[0][0][:1], a[0][1][:1], a[0][2][:1])])["same_counts"]


# --- mean average precision -------------------------------------------------------------------------------


def _gt(*images):
    return [(np.array(b, dtype=float).reshape(-1, 4), np.array(c, dtype=int)) for b, c in images]


def _det(*images):
    return [(np.array(b, dtype=float).reshape(-1, 4), np.array(s, dtype=float), np.array(c, dtype=int))
            for b, s, c in images]


A, B, C = [0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]


def test_map_perfect_duplicate_and_missed():
    truth = _gt(([A, B], [0, 0]), ([C], [1]))
    perfect = _det(([A, B], [0.9, 0.8], [0, 0]), ([C], [0.7], [1]))
    assert mean_average_precision(perfect, truth) == 1.0
    assert detection_metrics(perfect, truth)["map50_95"] == 1.0
    # a second detection of A ranked above B is a false positive: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    duplicate = _det(([A, A, B], [0.9, 0.85, 0.8], [0, 0, 0]), ([C], [0.7], [1]))
    assert average_precision(duplicate, truth, 0) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # missing B: recall stops at 1/2
    missed = _det(([A], [0.9], [0]), ([C], [0.7], [1]))
    assert average_precision(missed, truth, 0) == pytest.approx(0.5)
    assert mean_average_precision(missed, truth) == pytest.approx(0.75)  # classes 0 (0.5) and 1 (1.0)
    # the wrong class is no match; a class without ground truth is left out of the mean
    wrong = _det(([A, B], [0.9, 0.8], [0, 0]), ([C], [0.7], [2]))
    assert average_precision(wrong, truth, 1) == 0.0
    assert np.isnan(average_precision(wrong, truth, 2))
    assert mean_average_precision(wrong, truth) == pytest.approx(0.5)


def test_map_interpolation_worked_example():
    # ranking TP, FP, TP, FP, TP over 4 true boxes: precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/4 .. 3/4;
    # the interpolated curve is 1 up to 1/4, 2/3 up to 1/2, 3/5 up to 3/4
    recall = np.array([1, 1, 2, 2, 3]) / 4
    precision = np.array([1, 1, 2, 2, 3]) / np.arange(1, 6)
    assert interpolated_average_precision(recall, precision) == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 5))


def test_map_published_example():
    """Padilla et al.'s worked example (github.com/rafaelpadilla/Object-Detection-Metrics): 7 images, 15 people,
    24 detections, IoU threshold 0.3, all-point AP 24.57 %. Its boxes are (left, top, width, height) with
    inclusive pixel corners (area (w + 1) (h + 1)), i.e. x1, y1, x1 + w + 1, y1 + h + 1 here."""
    gt = ["25 16 38 56;129 123 41 62", "123 11 43 55;38 132 59 45", "16 14 35 48;123 30 49 44;99 139 47 47",
          "53 42 40 52;154 43 31 34", "59 31 44 51;48 128 34 52", "36 89 52 76;62 58 44 67", "28 31 55 63;58 67 50 58"]
    det = [".88 5 67 31 48;.70 119 111 40 67;.80 124 9 49 67", ".71 64 111 64 58;.54 26 140 60 47;.74 19 18 43 35",
           ".18 109 15 77 39;.67 86 63 46 45;.38 160 62 36 53;.91 105 131 47 47;.44 18 148 40 44",
           ".35 83 28 28 26;.78 28 68 42 67;.45 87 89 25 39;.14 10 155 60 26",
           ".62 50 38 28 46;.44 95 11 53 28;.95 29 131 72 29;.23 29 163 72 29",
           ".45 43 48 74 38;.84 17 155 29 35;.43 95 110 25 42", ".48 16 20 101 88;.95 33 116 37 49"]

    def rows(text):
        return np.array([[float(v) for v in r.split()] for r in text.split(";")])

    def corners(a):
        return np.c_[a[:, 0], a[:, 1], a[:, 0] + a[:, 2] + 1, a[:, 1] + a[:, 3] + 1]

    truth = [(corners(rows(g)), np.zeros(len(rows(g)), int)) for g in gt]
    detections = [(corners(rows(d)[:, 1:]), rows(d)[:, 0], np.zeros(len(rows(d)), int)) for d in det]
    assert sum(len(b) for b, _ in truth) == 15 and sum(len(s) for _, s, _ in detections) == 24
    assert average_precision(detections, truth, 0, iou_threshold=0.3) == pytest.approx(0.2457, abs=5e-5)


def test_map_over_iou_thresholds():
    truth = _gt(([[0, 0, 10, 10]], [0]),)
    det = _det(([[0, 0, 10, 7.2]], [0.9], [0]),)  # IoU 0.72: a match at 0.5 .. 0.7, not at 0.75 .. 0.95
    assert COCO_IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert mean_average_precision(det, truth, 0.7) == 1.0 and mean_average_precision(det, truth, 0.75) == 0.0
    assert mean_average_precision(det, truth, COCO_IOU_THRESHOLDS) == pytest.approx(0.5)
    metrics = detection_metrics(det, truth, class_names=["thing"])
    assert metrics["map50"] == 1.0 and metrics["map50_95"] == pytest.approx(0.5)
    assert metrics["ap50"] == {"thing": 1.0} and metrics["detections"] == 1


# --- the YOLO loss ---------------------------------------------------------------------------------------------


def numpy_yolo_loss(t, p, box=5.0, obj=1.0, noobj=0.5, cls=1.0):
    t, p = t.astype(np.float64), p.astype(np.float64)
    m = t[..., 4]
    sig = 1 / (1 + np.exp(-p))
    xy = ((sig[..., :2] - t[..., :2]) ** 2).sum(-1)
    wh = ((p[..., 2:4] - t[..., 2:4]) ** 2).sum(-1)
    q = sig[..., 4]
    bce = -(m * np.log(q) + (1 - m) * np.log(1 - q))
    logits = p[..., 5:]
    log_softmax = logits - logits.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    ce = -(t[..., 5:] * log_softmax).sum(-1)
    per = box * m * (xy + wh) + obj * m * bce + noobj * (1 - m) * bce + cls * m * ce
    return per.reshape(len(t), -1).sum(1)


def test_yolo_loss_matches_numpy(scene_data):
    _, labels, _ = scene_data
    targets = encode_targets(labels[:6], GRID, ANCHORS, 3, SIZE)
    raw = np.random.default_rng(0).normal(0, 2, targets.shape).astype("float32")
    got = keras.ops.convert_to_numpy(yolo_loss(targets, raw))
    np.testing.assert_allclose(got, numpy_yolo_loss(targets, raw), rtol=1e-5)
    weights = dict(box_weight=2.0, object_weight=3.0, noobject_weight=0.1, class_weight=0.7)
    loss = YoloLoss(**weights)
    expected = numpy_yolo_loss(targets, raw, 2.0, 3.0, 0.1, 0.7).mean()
    assert float(keras.ops.convert_to_numpy(loss(targets, raw))) == pytest.approx(expected, rel=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, YoloLoss) and restored.get_config() == loss.get_config()
    # perfect logits cost almost nothing
    assert float(np.max(keras.ops.convert_to_numpy(yolo_loss(targets, perfect_predictions(targets, 20.0))))) < 1e-4


# --- the model and its export ------------------------------------------------------------------------------------


def small_detector():
    return kerastk.create_model("tiny_yolo", input_shape=(SIZE, SIZE, 3), num_classes=3, anchors=ANCHORS,
                                backbone_kwargs={"alpha": 0.25}, head_filters=16, head_convs=1)


def test_tiny_yolo_shapes_and_defaults():
    model = kerastk.create_model("tiny_yolo", backbone_kwargs={"alpha": 0.25}, head_filters=8, head_convs=1)
    assert model.output_shape == (None, 8, 8, 3, 8)  # 64 x 64 input, stride 8, 3 default anchors, 5 + 3
    assert model_anchors(model) == [(round(f * SIZE, 2), round(f * SIZE, 2)) for f, _ in DEFAULT_ANCHORS]
    assert model.get_layer("backbone").layers[-1].name == "block5_pw_relu"  # MobileNet's last stride-8 map
    resnet = kerastk.create_model("tiny_yolo", input_shape=(32, 32, 3), backbone="resnet20", head_convs=0,
                                  head_filters=8)
    assert resnet.output_shape == (None, 4, 4, 3, 8)  # stride-4 backbone + one stride-2 conv
    assert resnet.get_layer("head_down1_conv").strides == (2, 2)


def test_keras_and_onnx_give_the_same_final_boxes(scene_data, tmp_path):
    from kerastk.deploy import OnnxModel, export_onnx

    x, labels, _ = scene_data
    x = x.astype("float32")
    keras.utils.set_random_seed(0)
    model = small_detector()
    model.compile(keras.optimizers.Adam(5e-3), loss=YoloLoss())
    model.fit(x, encode_targets(labels, GRID, ANCHORS, 3, SIZE), epochs=8, batch_size=8, verbose=0)

    path = tmp_path / "detector.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert model_anchors(loaded) == ANCHORS

    detector = detection_inference_model(loaded)
    assert detector.output_shape == (None, 192, 7)
    raw = np.asarray(model.predict(x, verbose=0))
    decoded = np.asarray(detector.predict(x, verbose=0))
    np.testing.assert_allclose(decoded, decode_grid(raw, ANCHORS, SIZE), atol=1e-4)

    result = export_onnx(detector, tmp_path / "detector.onnx", inputs=x[:8])
    assert result.validation.passed and result.validation.batch_sizes == (1, 8)
    onnx_decoded = OnnxModel(tmp_path / "detector.onnx").predict(x)
    # a score threshold keeping about the 60 best anchors, in the widest gap between scores there (so a 1e-7
    # difference between the two paths cannot move a box across it)
    ranked = np.sort(decoded[..., 4:].max(-1).ravel())[::-1][40:100]
    gap = int(np.argmax(ranked[:-1] - ranked[1:]))
    threshold = float(ranked[gap] + ranked[gap + 1]) / 2
    keras_final = postprocess(raw, ANCHORS, SIZE, score_threshold=threshold)
    onnx_final = postprocess(onnx_decoded, score_threshold=threshold)
    same = compare_detections(keras_final, onnx_final)
    assert same["boxes"] >= 10, same
    assert same["match"] and same["max_box_diff"] <= 1e-4 and same["max_score_diff"] <= 1e-5, same
    json.dumps(same)  # plain types: it goes into the detector's card


def test_plot_detections(scene_data, tmp_path):
    from kerastk.viz import plot_detections

    x, labels, names = scene_data
    truth = boxes_from_labels(labels)
    dets = [(b, np.full(len(b), 0.9), c) for b, c in truth]
    path = plot_detections(x * 255.0, dets, tmp_path / "d.png", ground_truth=labels, class_names=names, n=4)
    assert path.is_file() and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="detections"):
        plot_detections(x, dets[:2], tmp_path / "e.png", n=4)


# --- bad arguments ---------------------------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="anchors"):
        kerastk.create_model("tiny_yolo", anchors=[(0, 5)])
    with pytest.raises(ValueError, match="no feature map at a power-of-two stride"):
        kerastk.create_model("tiny_yolo", backbone="mnist_cnn")
    with pytest.raises(ValueError, match="registered model name"):
        kerastk.create_model("tiny_yolo", backbone="yolo_backbone")
    with pytest.raises(ValueError, match="power of two"):
        kerastk.create_model("tiny_yolo", stride=6)
    with pytest.raises(ValueError, match="divisible by stride"):
        kerastk.create_model("tiny_yolo", input_shape=(60, 60, 3))
    with pytest.raises(ValueError, match="not a grid detector"):
        detection_inference_model(kerastk.create_model("mnist_cnn"))
    labels = np.array([[[1, 2, 2, 10, 10]]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(n, max_objects, 5\)"):
        encode_targets(labels[0], GRID, ANCHORS, 3, SIZE)
    with pytest.raises(ValueError, match="num_classes=1"):
        encode_targets(labels, GRID, ANCHORS, 1, SIZE)
    with pytest.raises(ValueError, match="x2 <= x1"):
        encode_targets(np.array([[[0, 9, 2, 3, 10]]]), GRID, ANCHORS, 3, SIZE)
    with pytest.raises(ValueError, match="grid"):
        encode_targets(labels, (8, 0), ANCHORS, 3, SIZE)
    raw = np.zeros((1, 8, 8, 3, 8))
    with pytest.raises(ValueError, match="2 anchors were given"):
        decode(raw, ANCHORS[:2], SIZE)
    with pytest.raises(ValueError, match="need `anchors`"):
        postprocess(raw)
    with pytest.raises(ValueError, match="iou_threshold"):
        non_max_suppression(np.zeros((1, 4)), np.ones(1), iou_threshold=1.5, class_aware=False)
    with pytest.raises(ValueError, match="needs `classes`"):
        non_max_suppression(np.zeros((1, 4)), np.ones(1))
    with pytest.raises(ValueError, match="one .boxes, scores, classes. triple per image"):
        mean_average_precision([], labels)
    with pytest.raises(ValueError, match="iou_threshold"):
        mean_average_precision([(np.zeros((0, 4)), [], [])], labels, iou_threshold=[])
    with pytest.raises(ValueError, match="iou_threshold"):
        average_precision([(np.zeros((0, 4)), [], [])], labels, 0, iou_threshold=50)
    with pytest.raises(ValueError, match="box_weight"):
        YoloLoss(box_weight=-1)
