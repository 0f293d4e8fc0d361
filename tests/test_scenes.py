"""Scenes for segmentation and detection (kerastk.data.scenes), segmentation metrics, and run(evaluate_fn=)."""
import numpy as np
import pytest

from kerastk import data as kdata
from kerastk.data.generators import shapes
from kerastk.data.scenes import box_iou, scenes
from kerastk.metrics import segmentation_metrics, task_metrics


def test_masks_and_boxes_describe_the_same_shapes():
    images, masks, boxes, names = scenes(n_samples=40, image_size=48, seed=1)
    assert images.shape == (40, 48, 48, 3) and masks.shape == (40, 48, 48) and boxes.shape == (40, 4, 5)
    assert names == ["circle", "square", "triangle"] and 0 <= images.min() and images.max() <= 255
    counts = (boxes[..., 0] >= 0).sum(axis=1)
    assert counts.min() >= 1 and counts.max() == 4 and len(set(counts)) >= 3  # 1 to 4 objects, varied
    for i in range(40):
        real = boxes[i][boxes[i, :, 0] >= 0]
        assert np.all(boxes[i, len(real):, 0] == -1), "padding rows come last"
        for kind, x1, y1, x2, y2 in real:
            assert 0 <= x1 < x2 <= 48 and 0 <= y1 < y2 <= 48
            inside = masks[i, int(y1):int(y2), int(x1):int(x2)]
            # the object's class is visible inside its box (at most partly occluded); nothing of it outside
            assert np.mean(inside == kind + 1) > 0.2
        labelled = set(np.unique(masks[i])) - {0}
        assert labelled <= {int(k) + 1 for k in real[:, 0]}
        if len(real) > 1:
            iou = box_iou(real[:, 1:], real[:, 1:])
            assert iou[~np.eye(len(real), dtype=bool)].max() <= 0.25 + 1e-6


def test_scene_sizes_vary_and_seed_is_deterministic():
    a = scenes(n_samples=30, image_size=64, seed=2)
    b = scenes(n_samples=30, image_size=64, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[2], b[2])
    real = a[2][a[2][..., 0] >= 0]
    widths = real[:, 3] - real[:, 1]
    assert widths.min() < 12 and widths.max() > 20, "scale variation: small and large shapes"


def test_segmentation_and_detection_datasets():
    seg = kdata.load("segmentation", seed=0, n_samples=200, image_size=32)
    det = kdata.load("detection", seed=0, n_samples=200, image_size=32)
    assert seg.task == "segmentation" and det.task == "detection"
    assert seg.class_names == ["background", "circle", "square", "triangle"] and det.num_classes == 3
    assert seg.y_train.shape == (len(seg.x_train), 32, 32) and len(seg.x_test) == 30 and seg.y_train.dtype == np.int64
    assert det.y_train.shape == (len(det.x_train), 4, 5) and det.y_train.dtype == np.float32
    np.testing.assert_array_equal(seg.x_test, det.x_test)  # the same scenes, two kinds of labels
    assert 0.0 <= seg.x_train.min() and seg.x_train.max() <= 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 16}, "image_size"), ({"classes": ("circle", "blob")}, "classes"),
    ({"max_objects": 0}, "max_objects"), ({"scale": (0.3, 0.1)}, "scale"), ({"max_overlap": 1.5}, "max_overlap")])
def test_bad_scene_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        scenes(n_samples=2, **kwargs)


def test_box_iou_hand_values():
    iou = box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    np.testing.assert_allclose(iou, [[1 / 7, 1.0, 0.0]])


def test_shapes_boxes_enclose_the_shape():
    x, y, _, boxes = shapes(n_samples=20, image_size=32, seed=0, noise=0.0, return_boxes=True)
    np.testing.assert_array_equal(x, shapes(n_samples=20, image_size=32, seed=0, noise=0.0)[0])
    for img, (x1, y1, x2, y2) in zip(x, boxes):
        background = img[0, 0] if not (x1 == 0 and y1 == 0) else img[-1, -1]
        differs = np.any(np.abs(img - background) > 1, axis=-1)
        rows, cols = np.nonzero(differs)
        assert rows.min() >= y1 and rows.max() < y2 and cols.min() >= x1 and cols.max() < x2


def test_segmentation_metrics_hand_values():
    truth = np.array([[0, 0, 1, 1], [0, 0, 2, 2]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 2, 0]])
    m = segmentation_metrics(truth[None], pred[None], num_classes=3)
    # class 0: tp 3, fp 1, fn 1 -> 3/5; class 1: tp 2, fp 1, fn 0 -> 2/3; class 2: tp 1, fp 0, fn 1 -> 1/2
    np.testing.assert_allclose(m["iou"], [0.6, 0.6667, 0.5], atol=1e-4)
    np.testing.assert_allclose(m["dice"], [0.75, 0.8, 0.6667], atol=1e-4)
    assert m["mean_iou"] == pytest.approx((0.6 + 2 / 3 + 0.5) / 3)
    assert m["pixel_accuracy"] == pytest.approx(6 / 8)
    scores = np.eye(3)[pred[None]]  # one-hot scores give the same answer as masks; 3-D masks work too
    assert task_metrics("segmentation", truth[None], scores)["mean_iou"] == pytest.approx(m["mean_iou"])
    assert segmentation_metrics(truth[None, None], pred[None, None], 3)["mean_iou"] == pytest.approx(m["mean_iou"])


def test_segmentation_metrics_ignore_absent_classes_and_reject_bad_shapes():
    m = segmentation_metrics(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2, 4)))
    assert m["mean_iou"] == 1.0 and np.isnan(m["iou"][3])
    with pytest.raises(ValueError, match="do not match"):
        segmentation_metrics(np.zeros((1, 2, 2), int), np.zeros((1, 3, 3, 4)))


def test_run_evaluate_fn_scores_keras_and_onnx(tmp_path):
    import keras

    import kerastk
    from kerastk.training import run, smoke_subset

    data = smoke_subset(kdata.load("blobs", seed=0), n_train=200, n_eval=60)
    keras.utils.set_random_seed(0)
    model = kerastk.create_model("mlp", input_shape=(2,), num_classes=3, depth=1, width=8)
    seen = []

    def evaluate(pred):
        seen.append(pred.shape)
        return {"mean_top_score": float(np.mean(np.max(pred, axis=1)))}

    result = run(model, data, "custom", loss="sparse_categorical_crossentropy", epochs=1, batch_size=32,
                 out=tmp_path, verbose=0, evaluate_fn=evaluate)
    assert seen == [(60, 3), (60, 3)]
    assert result.onnx_metrics["mean_top_score"] == pytest.approx(result.test_metrics["mean_top_score"], abs=1e-5)
    assert "loss" in result.test_metrics and "accuracy" not in result.onnx_metrics
