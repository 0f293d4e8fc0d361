"""Segmentation: U-Net and SegNet shapes and parameter counts (the papers' configurations), max unpooling and
the soft Dice loss against numpy, bad arguments, a short learning check, and the overlay PNG - under the
backend this process runs."""
import keras
import numpy as np
import pytest

import kerastk
from kerastk.layers import MaxUnpooling2D
from kerastk.losses import DiceCrossEntropyLoss, DiceLoss, dice_cross_entropy, soft_dice_loss
from kerastk.models.unet import PAPER_CONFIG, PAPER_PARAMS, unet_output_size


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


# === numpy references ===

def unet_params_ref(cin, classes, depth, filters, batch_norm=False, upsampling="transpose"):
    """U-Net parameters counted layer by layer from the paper's Fig. 1 (BN: 4 per channel, no conv bias)."""
    bn = 4 if batch_norm else 0
    total, c = 0, cin
    for level in range(depth + 1):  # contracting path and bottleneck: two 3x3 convs per level
        f = filters * 2**level
        total += conv(3, c, f, not batch_norm) + conv(3, f, f, not batch_norm) + 2 * bn * f
        c = f
    for level in reversed(range(depth)):
        f = filters * 2**level
        total += conv(2 if upsampling == "transpose" else 1, c, f)  # up-conv halves the channels
        total += conv(3, 2 * f, f, not batch_norm) + conv(3, f, f, not batch_norm) + 2 * bn * f  # after concat
        c = f
    return total + conv(1, c, classes)


def max_unpool_ref(decoded, pre_pool, k=2, first_only=True):
    """Loops over every window: the decoded value at the window's argmax (or at every tied maximum)."""
    n, h, w, c = pre_pool.shape
    out = np.zeros_like(pre_pool)
    for b in range(n):
        for i in range(h // k):
            for j in range(w // k):
                for ch in range(c):
                    window = pre_pool[b, i * k:(i + 1) * k, j * k:(j + 1) * k, ch]
                    if first_only:
                        a = int(np.argmax(window))
                        out[b, i * k + a // k, j * k + a % k, ch] = decoded[b, i, j, ch]
                    else:
                        hit = window == window.max()
                        out[b, i * k:(i + 1) * k, j * k:(j + 1) * k, ch] = hit * decoded[b, i, j, ch]
    return out


def soft_dice_ref(masks, probs, smooth=1.0, ignore_background=False):
    """Per image: 1 - mean over classes of (2 sum(p g) + s) / (sum(p) + sum(g) + s), explicit loops."""
    n, classes = len(masks), probs.shape[-1]
    out = np.zeros(n)
    for b in range(n):
        scores = []
        for c in range(1 if ignore_background else 0, classes):
            g = (masks[b] == c).astype(np.float64)
            p = probs[b, ..., c].astype(np.float64)
            scores.append((2 * np.sum(p * g) + smooth) / (np.sum(p) + np.sum(g) + smooth))
        out[b] = 1 - np.mean(scores)
    return out


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _masks_and_probs(shape=(3, 8, 6), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    masks = rng.integers(0, classes, shape)
    masks[0] = np.where(masks[0] == 2, 0, masks[0])  # image 0 has no class 2: its Dice term is smooth-dominated
    probs = _softmax(rng.standard_normal((*shape, classes)) * 2).astype("float32")
    return masks, probs


# === U-Net ===

@pytest.mark.paper  # 31 M parameters at 572x572: graph construction only
def test_unet_paper_configuration():
    model = kerastk.create_model("unet", **PAPER_CONFIG)
    assert model.output_shape == (None, 388, 388, 2)
    assert model.count_params() == PAPER_PARAMS == 31_030_658 == unet_params_ref(1, 2, 4, 64)
    assert kerastk.model_info("unet")["reference_params"] == PAPER_PARAMS
    # the paper's feature-map sizes: 568 -> 280 -> 136 -> 64 -> 28 (bottleneck) -> 52 -> 100 -> 196 -> 388
    sizes = [model.get_layer(f"{n}_relu2").output.shape[1] for n in ("down1", "down2", "down3", "down4",
                                                                      "bottleneck", "up4", "up3", "up2", "up1")]
    assert sizes == [568, 280, 136, 64, 28, 52, 100, 196, 388]
    assert model.get_layer("up1_crop").output.shape[1:] == (392, 392, 64)  # 568 center-cropped to 392


def test_unet_output_size_rule():
    assert unet_output_size(572, 4, "valid") == 388
    assert unet_output_size(570, 4, "valid") is None
    assert unet_output_size(64, 3, "same") == 64 and unet_output_size(60, 3, "same") is None
    assert [s for s in range(150, 240) if unet_output_size(s, 4, "valid")] == [188, 204, 220, 236]


@pytest.mark.parametrize("kwargs", [  # few distinct layer shapes: JAX compiles an initializer for each
    dict(depth=2, filters=4),
    dict(depth=2, filters=4, batch_norm=True, upsampling="bilinear", dropout=0.3),
])
def test_unet_same_padding_shapes_and_parameters(kwargs):
    model = kerastk.create_model("unet", input_shape=(32, 24, 3), num_classes=5, **kwargs)
    assert model.output_shape == (None, 32, 24, 5)
    expected = unet_params_ref(3, 5, kwargs["depth"], kwargs["filters"], kwargs.get("batch_norm", False),
                               kwargs.get("upsampling", "transpose"))
    assert model.count_params() == expected
    assert ("bottleneck_dropout" in [layer.name for layer in model.layers]) == bool(kwargs.get("dropout"))
    probs = _np(model(np.random.default_rng(0).random((2, 32, 24, 3), dtype=np.float32)))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)  # a softmax per pixel


def test_unet_valid_padding_crops_the_skips():
    model = kerastk.create_model("unet", input_shape=(60, 76, 1), depth=2, filters=4, padding="valid")
    # height 60 -> 56 -> 28 -> 24 -> 12 -> 8 (bottleneck) -> 16 -> 12 -> 24 -> 20; width 76 -> ... -> 36
    assert model.output_shape == (None, 20, 36, 2)
    assert model.get_layer("up2_crop").output.shape[1:3] == (16, 24)
    assert model.get_layer("up1_crop").output.shape[1:3] == (24, 40)
    assert model.count_params() == unet_params_ref(1, 2, 2, 4)


# === MaxUnpooling2D ===

@pytest.mark.parametrize("k, first_only", [(2, True), (2, False), (3, True), (3, False)])
def test_max_unpooling_matches_numpy(k, first_only):
    rng = np.random.default_rng(k)
    pre_pool = rng.integers(0, 3, (2, 4 * k, 2 * k, 3)).astype("float32")  # small integers: many ties
    pre_pool[0, :k, :k, 0] = 0.0  # a whole window tied (as after ReLU)
    decoded = rng.standard_normal((2, 4, 2, 3)).astype("float32")
    out = _np(MaxUnpooling2D(k, first_max_only=first_only)([decoded, pre_pool]))
    np.testing.assert_array_equal(out, max_unpool_ref(decoded, pre_pool, k, first_only))
    if first_only:  # exactly one position per window carries the value
        assert np.count_nonzero(out) == np.count_nonzero(decoded)


def test_max_unpooling_undoes_max_pooling_at_the_maxima():
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 4)).astype("float32")  # no ties
    pooled = keras.layers.MaxPooling2D(2)(x)
    out = _np(MaxUnpooling2D()([pooled, x]))
    np.testing.assert_array_equal(out, np.where(out != 0, x, 0.0))  # every kept value is the original
    np.testing.assert_array_equal(np.count_nonzero(out), x.size // 4)


def test_max_unpooling_config_and_errors():
    layer = MaxUnpooling2D(3, first_max_only=False, name="unpool")
    clone = MaxUnpooling2D.from_config(layer.get_config())
    assert (clone.pool_size, clone.first_max_only, clone.name) == (3, False, "unpool")
    assert layer.compute_output_shape([(None, 2, 3, 5), (None, 6, 9, 5)]) == (None, 6, 9, 5)
    with pytest.raises(ValueError, match="pool_size"):
        MaxUnpooling2D(1)
    with pytest.raises(ValueError, match="first_max_only"):
        MaxUnpooling2D(first_max_only="yes")
    with pytest.raises(ValueError, match="divisible by pool_size=2"):
        MaxUnpooling2D()([np.zeros((1, 2, 2, 1), "float32"), np.zeros((1, 5, 4, 1), "float32")])
    with pytest.raises(ValueError, match="same number of channels"):
        MaxUnpooling2D()([np.zeros((1, 2, 2, 3), "float32"), np.zeros((1, 4, 4, 1), "float32")])
    with pytest.raises(ValueError, match="pre-pool height / pool_size"):
        MaxUnpooling2D()([np.zeros((1, 3, 2, 1), "float32"), np.zeros((1, 4, 4, 1), "float32")])


# === SegNet ===

@pytest.mark.paper  # 29 M parameters at 224x224: graph construction only
def test_segnet_paper_configuration():
    model = kerastk.create_model("segnet")
    assert model.output_shape == (None, 224, 224, 11)
    # VGG-16's 13 convolutions, a decoder mirror of 12 + a 3x3 classifier, BN after each of the 25
    encoder = sum(conv(3, a, b, False) for a, b in [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256),
                                                   (256, 256), (256, 256), (256, 512)] + [(512, 512)] * 5)
    decoder = sum(conv(3, a, b, False) for a, b in [(512, 512)] * 5 + [(512, 256), (256, 256), (256, 256),
                                                                      (256, 128), (128, 128), (128, 64), (64, 64)])
    bn = 4 * (64 * 2 + 128 * 2 + 256 * 3 + 512 * 6 + 512 * 5 + 256 * 3 + 128 * 2 + 64 * 2)
    assert model.count_params() == encoder + decoder + bn + conv(3, 64, 11) == 29_457_291
    assert model.count_params() == kerastk.model_info("segnet")["reference_params"]
    assert abs(model.count_params() - 29.5e6) < 0.05e6  # the paper's Table 6
    assert sum(isinstance(layer, MaxUnpooling2D) for layer in model.layers) == 5


def test_segnet_small_shapes_parameters_and_variants():
    model = kerastk.create_model("segnet", input_shape=(32, 16, 3), num_classes=3, depth=2, filters=4)
    assert model.output_shape == (None, 32, 16, 3)
    # encoder 3->4, 4->4, 4->8, 8->8; decoder 8->8, 8->4, 4->4; BN 4 per channel; 3x3 classifier
    expected = sum(conv(3, a, b, False) for a, b in [(3, 4), (4, 4), (4, 8), (8, 8), (8, 8), (8, 4), (4, 4)])
    expected += 4 * (4 + 4 + 8 + 8 + 8 + 4 + 4) + conv(3, 4, 3)
    assert model.count_params() == expected
    learned = kerastk.create_model("segnet", input_shape=(32, 16, 3), num_classes=3, depth=2, filters=4,
                                   upsampling="transpose")
    assert learned.count_params() == expected + conv(2, 8, 8) + conv(2, 4, 4)  # one 2x2 up-conv per block
    assert not any(isinstance(layer, MaxUnpooling2D) for layer in learned.layers)
    custom = kerastk.create_model("segnet", input_shape=(16, 16, 3), num_classes=3, depth=2, filters=4,
                                  convs=(1, 2))
    assert [layer.name for layer in custom.layers if layer.name.startswith("decoder2_")][-1] == "decoder2_1_relu"
    assert custom.count_params() == expected - 2 * (conv(3, 4, 4, False) + 4 * 4)  # block 1: one conv less per side
    x = np.random.default_rng(0).random((2, 32, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(_np(model(x)).sum(axis=-1), 1.0, atol=1e-5)


# === bad arguments ===

@pytest.mark.parametrize("name, kwargs, message", [
    ("unet", dict(input_shape=(60, 64, 3), depth=3), r"height divisible by 2\*\*depth = 8"),
    ("unet", dict(input_shape=(64, 60, 3), depth=3), r"width divisible by 2\*\*depth = 8.*Sizes that fit: \[48, 56"),
    ("unet", dict(input_shape=(570, 570, 1), padding="valid"), r"padding='valid'.*Sizes that fit: \[540, 556, 572"),
    ("unet", dict(depth=0), "`depth` must be an integer >= 1"),
    ("unet", dict(filters=2.5), "`filters`"),
    ("unet", dict(num_classes=1), "`num_classes` must be an integer >= 2"),
    ("unet", dict(padding="full"), "`padding` must be one of"),
    ("unet", dict(upsampling="nearest"), "`upsampling` must be one of"),
    ("unet", dict(batch_norm=1), "`batch_norm`"),
    ("unet", dict(dropout=1.0), "`dropout`"),
    ("unet", dict(input_shape=(64, 64)), "`input_shape` must have 3 axes"),
    ("segnet", dict(input_shape=(48, 48, 3), depth=5), r"divisible by 2\*\*depth = 32"),
    ("segnet", dict(upsampling="bilinear"), "`upsampling` must be one of"),
    ("segnet", dict(convs=(2, 2)), "`convs` must be None"),
    ("segnet", dict(convs=0), "`convs` must be an integer >= 1"),
    ("segnet", dict(num_classes=0), "`num_classes`"),
])
def test_bad_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerastk.create_model(name, **kwargs)


# === soft Dice ===

@pytest.mark.parametrize("smooth, ignore_background", [(1.0, False), (1.0, True), (1e-3, False)])
def test_soft_dice_matches_numpy(smooth, ignore_background):
    masks, probs = _masks_and_probs()
    got = _np(soft_dice_loss(masks, probs, smooth=smooth, ignore_background=ignore_background))
    np.testing.assert_allclose(got, soft_dice_ref(masks, probs, smooth, ignore_background), rtol=1e-5)
    # the same from one-hot masks and from (B, H, W, 1) masks
    one_hot = np.eye(4, dtype="float32")[masks]
    np.testing.assert_allclose(_np(soft_dice_loss(one_hot, probs, smooth, ignore_background)), got, rtol=1e-6)
    np.testing.assert_allclose(_np(soft_dice_loss(masks[..., None], probs, smooth, ignore_background)), got,
                               rtol=1e-6)


def test_soft_dice_limits_and_3d_masks():
    masks, _ = _masks_and_probs()
    perfect = np.eye(4, dtype="float32")[masks]
    assert np.max(_np(soft_dice_loss(masks, perfect))) < 1e-6  # perfect prediction -> 0
    wrong = np.eye(4, dtype="float32")[(masks + 1) % 4]
    assert np.min(_np(soft_dice_loss(masks, wrong, smooth=1e-6))) > 0.999  # no overlap anywhere -> 1
    volumes = np.random.default_rng(2).integers(0, 3, (2, 4, 5, 6))  # 3-D masks
    probs = _softmax(np.random.default_rng(3).standard_normal((2, 4, 5, 6, 3))).astype("float32")
    np.testing.assert_allclose(_np(soft_dice_loss(volumes, probs)), soft_dice_ref(volumes, probs), rtol=1e-5)


def test_dice_loss_classes_reduce_and_round_trip():
    masks, probs = _masks_and_probs()
    ref = soft_dice_ref(masks, probs, 0.5, True)
    loss = DiceLoss(smooth=0.5, ignore_background=True)
    assert float(_np(loss(masks, probs))) == pytest.approx(ref.mean(), rel=1e-5)  # batch mean
    weights = np.array([1.0, 0.0, 2.0], "float32")
    assert float(_np(loss(masks, probs, sample_weight=weights))) == pytest.approx(
        (ref * weights).sum() / 3, rel=1e-5)  # sum_over_batch_size divides by the batch
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, DiceLoss) and (clone.smooth, clone.ignore_background) == (0.5, True)

    ce = -np.log(np.clip(np.take_along_axis(probs, masks[..., None], axis=-1)[..., 0], 1e-7, 1.0))
    combined_ref = 0.5 * ce.reshape(3, -1).mean(axis=1) + 2.0 * soft_dice_ref(masks, probs)
    got = _np(dice_cross_entropy(masks, probs, dice_weight=2.0, crossentropy_weight=0.5))
    np.testing.assert_allclose(got, combined_ref, rtol=1e-5)
    plain = _np(dice_cross_entropy(masks, probs, dice_weight=0.0))  # cross-entropy alone
    np.testing.assert_allclose(plain, ce.reshape(3, -1).mean(axis=1), rtol=1e-5)
    combined = DiceCrossEntropyLoss(dice_weight=2.0, crossentropy_weight=0.5)
    assert float(_np(combined(masks, probs))) == pytest.approx(combined_ref.mean(), rel=1e-5)
    clone = keras.losses.deserialize(keras.losses.serialize(combined))
    assert (clone.dice_weight, clone.crossentropy_weight, clone.smooth) == (2.0, 0.5, 1.0)


def test_dice_bad_arguments():
    with pytest.raises(ValueError, match="`smooth` must be a number > 0"):
        DiceLoss(smooth=0)
    with pytest.raises(ValueError, match="`ignore_background`"):
        DiceLoss(ignore_background="no")
    with pytest.raises(ValueError, match="`dice_weight` must be a number >= 0"):
        DiceCrossEntropyLoss(dice_weight=-1)
    with pytest.raises(ValueError, match="one more axis"):
        soft_dice_loss(np.zeros((2, 4)), np.full((2, 4, 4, 3), 1 / 3, "float32"))


# === learning: a tiny U-Net on generated scenes ===

def test_unet_learns_on_scenes_with_dice_cross_entropy():
    from kerastk.data import load

    data = load("segmentation", n_samples=48, image_size=32)
    keras.utils.set_random_seed(0)
    model = kerastk.create_model("unet", input_shape=(32, 32, 3), num_classes=4, depth=2, filters=8)
    model.compile(keras.optimizers.Adam(3e-3), loss=DiceCrossEntropyLoss())  # no batch norm: eval = train mode
    before = model.evaluate(data.x_train, data.y_train, verbose=0)
    model.fit(data.x_train, data.y_train, epochs=15, batch_size=8, verbose=0)
    after = model.evaluate(data.x_train, data.y_train, verbose=0)
    assert after < 0.5 * before, (before, after)  # measured: 0.33-0.34 of the start on the three backends


# === overlays ===

def test_colorize_mask():
    from kerastk.viz import colorize_mask

    rgb = colorize_mask(np.array([[0, 1], [2, 3]]), num_classes=4)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and len({tuple(c) for c in rgb.reshape(-1, 3)}) == 4
    many = colorize_mask(np.arange(15)[None], num_classes=15)
    assert len({tuple(c) for c in many[0]}) == 15  # distinct colours beyond the palette too
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\)"):
        colorize_mask(np.array([0, 3]), num_classes=3)


def test_plot_segmentation_writes_a_png(tmp_path):
    from kerastk.viz import plot_segmentation

    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16, 3), dtype=np.float32)
    truth = rng.integers(0, 4, (4, 16, 16))
    scores = rng.random((4, 16, 16, 4), dtype=np.float32)  # class scores: argmax is taken
    path = plot_segmentation(images, truth, scores, tmp_path / "sub" / "overlays.png",
                             class_names=["background", "a", "b", "c"], n=3)
    assert path == tmp_path / "sub" / "overlays.png" and path.stat().st_size > 5000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grey = plot_segmentation(images[..., :1], truth, truth, tmp_path / "grey.png")  # 1 channel, integer masks
    assert grey.is_file()
    with pytest.raises(ValueError, match="same number of images"):
        plot_segmentation(images, truth[:3], truth[:3], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="`class_names` has 2 names"):
        plot_segmentation(images, truth, truth, tmp_path / "bad.png", class_names=["background", "a"])
