"""kerastk.viz: gradients against finite differences and numpy references, Grad-CAM on hand-made models whose
answer is known, saliency, feature-map and filter grids, clear errors - under the backend this process runs."""
import keras
import numpy as np
import pytest

import kerastk
from kerastk import viz
from kerastk.viz.gradients import gradients, value_and_gradients
from kerastk.viz.saliency import _resize_bilinear


def _set_weights(model, seed=0, scale=0.5):
    """Deterministic weights from numpy, so every backend computes the same numbers."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, scale, w.shape).astype("float32") for w in model.get_weights()])
    return model


def _tiny_models():
    """One conv + dense network three ways: raw logits, Dense(softmax), and Dense + Activation("softmax")."""
    inputs = keras.Input((6, 6, 2), name="image")
    h = keras.layers.Conv2D(3, 3, padding="same", activation="tanh", name="conv")(inputs)
    h = keras.layers.Flatten(name="flatten")(h)
    logits = keras.layers.Dense(4, name="logits")(h)
    logit_model = _set_weights(keras.Model(inputs, logits))
    dense_softmax = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="predictions")(h))
    dense_softmax.get_layer("predictions").set_weights(logit_model.get_layer("logits").get_weights())
    act_softmax = keras.Model(inputs, keras.layers.Activation("softmax", name="softmax")(logits))
    return logit_model, dense_softmax, act_softmax


def _finite_differences(logit_model, x, classes, eps=1e-2):
    """Central differences of the chosen logit, every input coordinate at once in one predict call."""
    n, d = len(x), x[0].size
    steps = np.eye(d, dtype=np.float32).reshape(d, *x.shape[1:]) * eps
    grads = np.zeros_like(x)
    for i in range(n):
        plus = logit_model.predict(x[i] + steps, verbose=0)[:, classes[i]].astype(np.float64)
        minus = logit_model.predict(x[i] - steps, verbose=0)[:, classes[i]].astype(np.float64)
        grads[i] = ((plus - minus) / (2 * eps)).reshape(x.shape[1:])
    return grads


def test_adapter_gradient_of_a_known_function():
    x = np.arange(-3, 3, dtype=np.float32).reshape(2, 3)
    c = keras.ops.convert_to_tensor(np.array([1.0, 2.0, -1.0], dtype="float32"))
    value, grad = value_and_gradients(lambda t: t * t * c, x)
    np.testing.assert_allclose(value, x * x * np.array([1.0, 2.0, -1.0]), rtol=1e-6)
    np.testing.assert_allclose(grad, 2 * x * np.array([1.0, 2.0, -1.0]), rtol=1e-6)
    # fn that ignores its input: zero gradient, not an error
    assert np.array_equal(gradients(lambda t: keras.ops.ones((2,)), x), np.zeros_like(x))


def test_input_gradients_match_finite_differences():
    logit_model, dense_softmax, act_softmax = _tiny_models()
    x = np.random.default_rng(1).normal(0, 1, (2, 6, 6, 2)).astype("float32")
    classes = np.array([2, 0])
    fd = _finite_differences(logit_model, x, classes)
    scale = np.abs(fd).max()
    assert scale > 0.1  # a gradient worth comparing
    for model in (logit_model, dense_softmax, act_softmax):  # the score is the logit in all three
        g = viz.input_gradients(model, x, class_index=classes)
        assert g.shape == x.shape and g.dtype == np.float32
        assert np.abs(g - fd).max() <= 2e-3 * scale, model.name
    # class_index None = the predicted class; an int = that class for every image
    predicted = np.argmax(dense_softmax.predict(x, verbose=0), axis=-1)
    np.testing.assert_allclose(viz.input_gradients(dense_softmax, x),
                               viz.input_gradients(dense_softmax, x, class_index=predicted), atol=1e-6)
    np.testing.assert_allclose(viz.input_gradients(dense_softmax, x, class_index=3)[1],
                               viz.input_gradients(dense_softmax, x[1:], class_index=[3])[0], atol=1e-6)


def test_saliency_map_shape_range_and_definition():
    _, model, _ = _tiny_models()
    x = np.random.default_rng(2).normal(0, 1, (3, 6, 6, 2)).astype("float32")
    sal = viz.saliency_map(model, x, class_index=1)
    assert sal.shape == (3, 6, 6) and sal.dtype == np.float32
    assert sal.min() >= 0.0 and np.allclose(sal.max(axis=(1, 2)), 1.0)
    g = np.abs(viz.input_gradients(model, x, class_index=1)).max(axis=-1)
    np.testing.assert_allclose(sal, g / g.max(axis=(1, 2), keepdims=True), atol=1e-6)


def test_grad_cam_equals_cam_for_a_global_average_pooling_head():
    """conv -> GAP -> Dense(softmax): d logit_c / d A_k = W[k, c] / (h w) everywhere, so Grad-CAM is the class
    activation map ReLU(sum_k W[k, c] A_k), normalised (Zhou et al. 2016 = Selvaraju et al. 2017 here)."""
    inputs = keras.Input((8, 8, 3), name="image")
    a = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="features")(inputs)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(a)
    model = _set_weights(keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(h)))
    x = np.random.default_rng(3).uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    assert viz.last_conv_layer(model) == "features"
    fmap = viz.feature_maps(model, x, "features")["features"]
    kernel = model.get_layer("predictions").get_weights()[0]
    for c in range(3):
        cam = viz.grad_cam(model, x, class_index=c)
        expected = np.maximum(np.einsum("nhwk,k->nhw", fmap, kernel[:, c]), 0)
        peak = expected.max(axis=(1, 2), keepdims=True)
        expected = np.where(peak > 0, expected / np.where(peak > 0, peak, 1), 0)
        assert cam.shape == (4, 8, 8)
        assert np.abs(cam - expected).max() <= 1e-5


def test_grad_cam_through_a_residual_bypass():
    """Grad-CAM at a layer a skip connection goes around: the bypass is held fixed (partial derivative).
    Block: A = relu(conv(x)); out = conv1x1(A) + x; GAP; Dense. d logit_c / d A = (V @ W[:, c]) / (h w)."""
    inputs = keras.Input((6, 6, 2), name="image")
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="inner")(inputs)
    b = keras.layers.Conv2D(2, 1, use_bias=False, name="project")(a)
    s = keras.layers.Add(name="add")([b, inputs])
    h = keras.layers.GlobalAveragePooling2D(name="gap")(s)
    model = _set_weights(keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(h)))
    x = np.random.default_rng(4).uniform(0, 1, (2, 6, 6, 2)).astype("float32")
    fmap = viz.feature_maps(model, x, ["inner"])["inner"]
    v = model.get_layer("project").get_weights()[0][0, 0]  # (4, 2)
    w = model.get_layer("predictions").get_weights()[0]  # (2, 3)
    cam = viz.grad_cam(model, x, class_index=2, layer_name="inner")
    expected = np.maximum(np.einsum("nhwk,k->nhw", fmap, v @ w[:, 2]), 0)
    expected /= expected.max(axis=(1, 2), keepdims=True)
    assert np.abs(cam - expected).max() <= 1e-5
    assert viz.last_conv_layer(model) == "add"


def _bright_square_detector():
    """A box-filter 'detector' whose class 0 is 'something bright' and class 1 its opposite."""
    inputs = keras.Input((32, 32, 1), name="image")
    a = keras.layers.Conv2D(1, 5, padding="same", activation="relu", name="detector")(inputs)
    a = keras.layers.MaxPooling2D(2, name="pool")(a)  # 16x16: Grad-CAM is upsampled back to 32x32
    h = keras.layers.GlobalAveragePooling2D(name="gap")(a)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="predictions")(h))
    model.get_layer("detector").set_weights([np.full((5, 5, 1, 1), 1 / 25, "float32"), np.zeros(1, "float32")])
    model.get_layer("predictions").set_weights([np.array([[1.0, -1.0]], "float32"), np.zeros(2, "float32")])
    return model


def test_grad_cam_peaks_where_the_hand_made_detector_fires():
    model = _bright_square_detector()
    x = np.zeros((2, 32, 32, 1), "float32")
    x[0, 20:27, 3:10] = 1.0  # a bright square low on the left
    x[1, 4:9, 22:30] = 1.0  # and one high on the right
    assert viz.last_conv_layer(model) == "pool"
    cam = viz.grad_cam(model, x)  # predicted class: 0, "bright"
    assert cam.shape == (2, 32, 32) and cam.min() >= 0 and np.allclose(cam.max(axis=(1, 2)), 1.0)
    for i, (r0, r1, c0, c1) in enumerate([(20, 27, 3, 10), (4, 9, 22, 30)]):
        r, c = np.unravel_index(np.argmax(cam[i]), cam[i].shape)
        assert r0 <= r < r1 and c0 <= c < c1, (i, r, c)
        inside = cam[i, r0:r1, c0:c1].sum() / cam[i].sum()
        assert inside > 0.5  # the heat sits on the square, not just its peak
    assert cam[0, :10, :].max() == 0  # nothing lights up far from the square
    # the other class has only negative evidence: ReLU leaves an all-zero map
    assert np.array_equal(viz.grad_cam(model, x, class_index=1), np.zeros((2, 32, 32), "float32"))
    # saliency: the gradient of the box filter is non-zero only within 2 + 1 px of the square's border
    sal = viz.saliency_map(model, x[:1], class_index=0)
    r, c = np.unravel_index(np.argmax(sal[0]), sal[0].shape)
    assert 16 <= r <= 30 and 0 <= c <= 13


def test_resize_matches_keras_bilinear():
    maps = np.random.default_rng(5).uniform(0, 1, (2, 4, 6)).astype("float32")
    ours = _resize_bilinear(maps, (12, 15))
    ref = keras.ops.convert_to_numpy(keras.ops.image.resize(maps[..., None], (12, 15), interpolation="bilinear",
                                                            antialias=False))[..., 0]
    assert np.abs(ours - ref).max() <= 1e-5


@pytest.mark.parametrize("name, kwargs, layer", [
    ("mnist_cnn", {}, "block2_pool"),
    ("lenet5", {}, "s4_pool"),
    ("resnet20", {"input_shape": (16, 16, 3)}, "conv4_block3_out"),
])
def test_registered_classifiers(name, kwargs, layer):
    keras.utils.set_random_seed(0)
    model = kerastk.create_model(name, num_classes=5, **kwargs)
    assert viz.last_conv_layer(model) == layer
    x = np.random.default_rng(6).uniform(0, 1, (3, *model.input_shape[1:])).astype("float32")
    cam = viz.grad_cam(model, x)
    sal = viz.saliency_map(model, x)
    for m in (cam, sal):
        assert m.shape == (3, *model.input_shape[1:3]) and m.dtype == np.float32
        assert np.all(np.isfinite(m)) and m.min() >= 0.0 and m.max() <= 1.0 + 1e-6
    assert np.allclose(sal.max(axis=(1, 2)), 1.0)


def test_last_conv_layer_of_an_imagenet_resnet():
    model = kerastk.create_model("resnet18", **kerastk.model_info("resnet18")["test_kwargs"])
    assert viz.last_conv_layer(model) == "conv5_block2_out"  # the last block's ReLU after the residual add


def test_overlay_heatmap():
    image = np.random.default_rng(7).uniform(0, 255, (16, 16, 3)).astype("float32")
    heat = np.zeros((8, 8), "float32")
    heat[2, 2] = 1.0
    out = viz.overlay_heatmap(image, heat, alpha=0.5)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(viz.overlay_heatmap(image, heat, alpha=0.0), image / 255.0, atol=1e-6)
    grey = viz.overlay_heatmap(np.ones((16, 16, 1), "float32"), np.zeros((16, 16)), alpha=1.0)
    np.testing.assert_allclose(grey[0, 0], [0.0, 0.0, 0.5], atol=0.01)  # jet(0) is dark blue
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay_heatmap(image, heat, alpha=1.5)
    with pytest.raises(ValueError, match="image"):
        viz.overlay_heatmap(np.zeros((4, 4, 2)), heat)
    with pytest.raises(ValueError, match="heatmap"):
        viz.overlay_heatmap(image, np.zeros((2, 4, 4)))


def test_feature_maps_and_pngs(tmp_path):
    import matplotlib.image

    keras.utils.set_random_seed(0)
    model = kerastk.create_model("resnet20", input_shape=(16, 16, 3), num_classes=5)
    x = np.random.default_rng(8).uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    maps = viz.feature_maps(model, x, ["conv1_relu", "conv4_block3_out"])
    assert maps["conv1_relu"].shape == (2, 16, 16, 16) and maps["conv4_block3_out"].shape == (2, 4, 4, 64)
    probe = keras.Model(model.input, model.get_layer("conv1_relu").output)
    np.testing.assert_allclose(maps["conv1_relu"], probe.predict(x, verbose=0), atol=1e-6)

    path = viz.plot_feature_maps(model, x[0], tmp_path / "maps.png", max_channels=8)
    assert path == tmp_path / "maps.png" and matplotlib.image.imread(path).shape[0] > 100
    path = viz.plot_filters(model, tmp_path / "filters.png")  # conv1_conv: 16 RGB 3x3 kernels
    assert matplotlib.image.imread(path).ndim == 3
    grey = kerastk.create_model("lenet5")
    assert viz.plot_filters(grey, tmp_path / "grey.png", layer_name="c3_conv").is_file()  # 6 input channels
    with pytest.raises(ValueError, match="Conv2D"):
        viz.plot_filters(grey, tmp_path / "bad.png", layer_name="s2_pool")
    with pytest.raises(ValueError, match="4-D"):
        viz.plot_feature_maps(grey, np.zeros((28, 28, 1)), tmp_path / "bad.png", layer_names=["f5_dense"])
    with pytest.raises(ValueError, match="no layer named"):
        viz.feature_maps(grey, np.zeros((1, 28, 28, 1)), ["c1_conf"])
    with pytest.raises(ValueError, match="shape"):
        viz.feature_maps(grey, np.zeros((1, 32, 32, 1)), ["c1_conv"])


def test_clear_errors_for_bad_input():
    model = _bright_square_detector()
    good = np.zeros((1, 32, 32, 1), "float32")
    with pytest.raises(ValueError, match=r"images\[None\]"):  # one image without its batch axis
        viz.grad_cam(model, good[0])
    with pytest.raises(ValueError, match="must have shape"):
        viz.saliency_map(model, np.zeros((1, 28, 28, 1)))
    with pytest.raises(ValueError, match="no layer named 'detectr'.*'detector'"):
        viz.grad_cam(model, good, layer_name="detectr")
    with pytest.raises(ValueError, match="4-D"):
        viz.grad_cam(model, good, layer_name="gap")
    with pytest.raises(ValueError, match="input layer"):
        viz.grad_cam(model, good, layer_name=model.layers[0].name)
    for bad in (2, -1, [0, 5]):
        with pytest.raises(ValueError, match=r"class_index.*\[0, 1\]"):
            viz.grad_cam(model, np.zeros((len(np.atleast_1d(bad)), 32, 32, 1)), class_index=bad)
    with pytest.raises(ValueError, match="one int per image"):
        viz.input_gradients(model, good, class_index=[0, 1])
    with pytest.raises(ValueError, match="class_index"):
        viz.input_gradients(model, good, class_index=0.5)
    headless = kerastk.create_model("lenet5", include_top=False)
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        viz.grad_cam(headless, np.zeros((1, 28, 28, 1)))
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match="image models"):
        viz.saliency_map(flat, np.zeros((1, 4)))
    with pytest.raises(ValueError, match="no layer with a 4-D"):
        viz.last_conv_layer(flat)


def test_compare_curves_draws_one_line_per_run(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kerastk.viz import compare_curves, save_figure

    fig, ax = plt.subplots()
    compare_curves(ax, {"a": {"val_accuracy": [0.5, 0.7]}, "b": {"val_accuracy": [0.4, 0.6, 0.9]}}, show_last=True)
    assert [line.get_label() for line in ax.get_lines()] == ["a (0.700)", "b (0.900)"]
    assert list(ax.get_lines()[1].get_xdata()) == [1, 2, 3] and ax.get_ylabel() == "val accuracy"
    png = save_figure(fig, tmp_path / "c.png")
    assert png.stat().st_size > 5_000 and not plt.get_fignums()
