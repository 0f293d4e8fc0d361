"""3-D volumes: the generator (shapes, determinism, what each modality shows, label consistency, bad
arguments), unet3d and cnn3d (output shapes, parameter counts and mult-adds by formula, the paper's 3-D U-Net
count) and the slice PNG - under the backend this process runs."""

import keras
import numpy as np
import pytest

import kerastk
from kerastk.data import load
from kerastk.data.volumes import LESION_SHAPES, MODALITIES, volumes
from kerastk.viz.volumes import pick_slices, plot_volume_slices


@pytest.fixture(scope="module")
def generated():
    return volumes(n_samples=60, size=16, seed=1)


# === the generator ===

def test_volume_arrays(generated):
    x, masks, labels, shapes, modalities = generated
    assert x.shape == (60, 16, 16, 16, 3) and x.dtype == np.float32
    assert masks.shape == (60, 16, 16, 16) and masks.dtype == np.int64
    assert labels.shape == (60,) and set(np.unique(labels)) == {0, 1, 2}
    assert shapes == list(LESION_SHAPES) and modalities == ["t1c", "flair", "t1"]
    assert x.min() >= 0.0 and x.max() <= 255.0 and np.all(np.isfinite(x))
    assert set(np.unique(masks)) == {0, 1, 2}
    for m in masks:  # one core and a shell of edema in every volume, mostly background
        core, edema = (m == 1).sum(), (m == 2).sum()
        assert 8 <= core <= 0.1 * m.size and edema > 0 and (m == 0).mean() > 0.6


def test_each_modality_shows_the_lesion_its_own_way(generated):
    x, masks, *_ = generated
    mean = {name: [x[..., c][masks == k].mean() for k in range(3)] for c, name in enumerate(["t1c", "flair", "t1"])}
    background, core, edema = mean["t1c"]
    assert core > background + 40 and abs(edema - background) < 15  # t1c: the core lights up, edema does not
    background, core, edema = mean["flair"]
    assert core > background + 25 and edema > background + 40  # flair: both, the edema brightest
    background, core, edema = mean["t1"]
    assert core < background - 10  # t1: the core is slightly dark
    noise = {n: np.std(np.diff(x[..., c], axis=3)) for c, n in enumerate(["t1c", "flair", "t1"])}
    assert noise["t1"] > 1.5 * noise["t1c"]  # and twice as noisy


def test_edema_surrounds_the_core(generated):
    _, masks, *_ = generated
    for m in masks[:10]:
        core = m == 1
        grown = core.copy()  # the core grown by one voxel in the 6 axis directions
        for axis in range(3):
            for shift in (-1, 1):
                grown |= np.roll(core, shift, axis=axis)
        ring = grown & ~core
        assert np.mean(m[ring] == 2) > 0.9  # the voxels touching the core are edema


def test_class_labels_match_the_core_shape(generated):
    _, masks, labels, shapes, _ = generated
    elongation, peakiness = {s: [] for s in shapes}, {s: [] for s in shapes}
    for m, label in zip(masks, labels):
        points = np.argwhere(m == 1).astype(float)
        d = points - points.mean(axis=0)
        eig = np.linalg.eigvalsh(np.cov(d.T))
        r = np.linalg.norm(d, axis=1)
        elongation[shapes[label]].append(eig[-1] / eig[0])  # long / short axis variance
        peakiness[shapes[label]].append(r.max() / np.sqrt(np.mean(r**2)))  # corners reach further
    assert min(elongation["ellipsoid"]) > 2.5 and max(elongation["sphere"] + elongation["cube"]) < 2.0
    assert np.mean(peakiness["cube"]) > np.mean(peakiness["sphere"]) + 0.1


def test_generator_is_deterministic():
    a, b, c = volumes(4, size=12, seed=5), volumes(4, size=12, seed=5), volumes(4, size=12, seed=6)
    for u, v in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_options():
    x, masks, labels, shapes, modalities = volumes(6, size=(12, 16, 20), modalities=("flair", "t2"), shapes="cube",
                                                   edema=False, noise=0.0, seed=0)
    assert x.shape == (6, 12, 16, 20, 2) and masks.shape == (6, 12, 16, 20)
    assert modalities == ["flair", "t2"] and shapes == ["cube"] and set(labels) == {0}
    assert set(np.unique(masks)) == {0, 1}
    assert volumes(2, size=12, modalities=4)[0].shape[-1] == 4 == len(MODALITIES)
    assert volumes(2, size=12, modalities=1)[4] == ["t1c"]


def test_load_volumes_mask_and_class_targets():
    seg = load("volumes", seed=2, n_samples=40, size=12)
    assert seg.task == "segmentation" and seg.input_shape == (12, 12, 12, 3)
    assert seg.class_names == ["background", "core", "edema"] and seg.num_classes == 3
    assert seg.y_train.shape == (len(seg.x_train), 12, 12, 12) and seg.y_train.dtype == np.int64
    assert len(seg.x_train) + len(seg.x_val) + len(seg.x_test) == 40
    assert 0.0 <= seg.x_train.min() and seg.x_train.max() <= 1.0  # scaled by the recorded 1/255
    assert seg.info["preprocessing"] == {"type": "scale", "factor": 1.0 / 255.0}
    assert seg.info["modalities"] == ["t1c", "flair", "t1"]

    cls = load("volumes", seed=2, n_samples=40, size=12, target="class")
    assert cls.task == "classification" and cls.class_names == list(LESION_SHAPES)
    assert cls.y_train.shape == (len(cls.x_train),) and set(np.unique(cls.y_train)) == {0, 1, 2}
    # the same seed draws the same 40 volumes for both targets (split differently: stratified by class)
    def sums(d):
        return np.sort(np.concatenate([a.sum(axis=(1, 2, 3, 4)) for a in (d.x_train, d.x_val, d.x_test)]))
    np.testing.assert_allclose(sums(seg), sums(cls), rtol=1e-6)
    # a class label agrees with its volume: ellipsoid cores are the elongated ones
    again = load("volumes", seed=2, n_samples=40, size=12)
    np.testing.assert_array_equal(again.y_test, seg.y_test)
    assert load("volumes", seed=2, n_samples=40, size=12, edema=False).class_names == ["background", "core"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=0), "n_samples"),
    (dict(size=8), "size"),
    (dict(size=(16, 16)), "size"),
    (dict(size=16.0), "size"),
    (dict(modalities=5), "modalities"),
    (dict(modalities=("t1c", "pet")), "modalities"),
    (dict(modalities=("t1c", "t1c")), "modalities"),
    (dict(target="boxes"), "target"),
    (dict(noise=-0.1), "noise"),
    (dict(noise=0.9), "noise"),
    (dict(shapes=("torus",)), "shapes"),
    (dict(shapes=("cube",), target="class"), "at least 2"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load("volumes", seed=0, **{"n_samples": 6, "size": 12, **kwargs})


# === models: counts by formula ===

def conv3(cin, cout, k=3):
    return k**3 * cin * cout + cout


def unet3d_params(cin, classes, depth, f, batch_norm=True, transpose=True):
    total, ch, skips = 0, cin, []
    for level in range(depth):
        a, b = f * 2**level, f * 2 ** (level + 1)
        total += conv3(ch, a) + conv3(a, b) + (4 * (a + b) if batch_norm else 0)
        ch = b
        skips.append(b)
    for level in reversed(range(depth - 1)):
        out = f * 2 ** (level + 1)
        total += (8 * ch * ch if transpose else 0) + conv3(ch + skips[level], out) + conv3(out, out)
        total += 8 * out if batch_norm else 0
        ch = out
    return total + conv3(ch, classes, k=1)


def unet3d_macs(side, cin, classes, depth, f):
    """Mult-adds for a cube of `side`: convolutions count output voxels x kernel, up-convolutions input voxels."""
    total, ch, skips = 0, cin, []
    for level in range(depth):
        voxels = (side // 2**level) ** 3
        a, b = f * 2**level, f * 2 ** (level + 1)
        total += voxels * 27 * (ch * a + a * b)
        ch = b
        skips.append(b)
    for level in reversed(range(depth - 1)):
        voxels, out = (side // 2**level) ** 3, f * 2 ** (level + 1)
        total += (voxels // 8) * 8 * ch * ch + voxels * 27 * ((ch + skips[level]) * out + out * out)
        ch = out
    return total + side**3 * ch * classes


@pytest.mark.paper  # graph construction at the paper's size: the same count on every backend
def test_unet3d_paper_parameter_count():
    model = kerastk.create_model("unet3d", input_shape=(8, 8, 8, 3), batch_norm=False)
    assert model.count_params() == 19_069_955 == kerastk.model_info("unet3d")["reference_params"]
    assert unet3d_params(3, 3, 4, 32, batch_norm=False) == 19_069_955
    assert [layer.name for layer in model.layers][:4] == ["volume", "enc1_conv1", "enc1_relu1", "enc1_conv2"]


@pytest.mark.parametrize("kwargs", [dict(depth=2, filters=4), dict(depth=3, filters=2),
                                    dict(depth=2, filters=3, batch_norm=False, num_classes=2, upsampling="nearest")])
def test_unet3d_shapes_counts_and_macs(kwargs):
    classes = kwargs.get("num_classes", 3)
    model = kerastk.create_model("unet3d", input_shape=(8, 8, 8, 2), **kwargs)
    assert model.output_shape == (None, 8, 8, 8, classes)
    expected = unet3d_params(2, classes, kwargs["depth"], kwargs["filters"], kwargs.get("batch_norm", True),
                             kwargs.get("upsampling", "transpose") == "transpose")
    assert model.count_params() == expected
    if kwargs.get("upsampling", "transpose") == "transpose":
        assert kerastk.count_flops(model) == unet3d_macs(8, 2, classes, kwargs["depth"], kwargs["filters"])
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 8, 2)).astype("float32")
    probabilities = keras.ops.convert_to_numpy(model(x, training=False))  # eager: no compilation of a tiny graph
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)  # a softmax per voxel


def test_unet3d_macs_by_hand():
    # depth 2, filters 4, (8, 8, 8, 2) -> 3 classes, written out layer by layer
    macs = (512 * 27 * 2 * 4 + 512 * 27 * 4 * 8  # enc1: 2->4, 4->8 at 8^3
            + 64 * 27 * 8 * 8 + 64 * 27 * 8 * 16  # enc2 (after the pool): 8->8, 8->16 at 4^3
            + 64 * 8 * 16 * 16  # up-convolution: each of the 64 input voxels spreads a 2x2x2 kernel
            + 512 * 27 * (16 + 8) * 8 + 512 * 27 * 8 * 8  # dec1: concat(16, 8)->8, 8->8 at 8^3
            + 512 * 8 * 3)  # 1x1x1 class scores
    model = kerastk.create_model("unet3d", **kerastk.model_info("unet3d")["test_kwargs"])
    assert kerastk.count_flops(model) == macs == 4_567_040


def cnn3d_params(cin, classes, filters, convs, batch_norm=True):
    total, ch = 0, cin
    for f in filters:
        for _ in range(convs):
            total += conv3(ch, f) + (4 * f if batch_norm else 0)
            ch = f
    return total + ch * classes + classes


def test_cnn3d_shapes_counts_and_macs():
    model = kerastk.create_model("cnn3d", input_shape=(16, 16, 16, 3), num_classes=4, filters=(4, 8))
    assert model.output_shape == (None, 4)
    assert model.count_params() == cnn3d_params(3, 4, (4, 8), 2) == 3_504
    assert kerastk.count_flops(model) == 16**3 * 27 * (3 * 4 + 4 * 4) + 8**3 * 27 * (4 * 8 + 8 * 8) + 8 * 4
    single = kerastk.create_model("cnn3d", input_shape=(8, 8, 16, 1), filters=(2, 3, 5), convs_per_block=1,
                                  batch_norm=False, dropout=0.0)
    assert single.count_params() == cnn3d_params(1, 3, (2, 3, 5), 1, batch_norm=False)
    features = kerastk.create_model("cnn3d", input_shape=(8, 8, 8, 2), filters=(4, 8), include_top=False,
                                    pooling=None)
    assert features.output_shape == (None, 2, 2, 2, 8)
    pooled = kerastk.create_model("cnn3d", input_shape=(8, 8, 8, 2), filters=(4, 8), include_top=False,
                                  pooling="max")
    assert pooled.output_shape == (None, 8)


@pytest.mark.parametrize("name, kwargs, match", [
    ("unet3d", dict(input_shape=(12, 12, 12, 3), depth=4), "divisible by 8"),
    ("unet3d", dict(input_shape=(16, 16, 3)), "4 axes"),
    ("unet3d", dict(depth=1), "depth"),
    ("unet3d", dict(num_classes=1), "num_classes"),
    ("unet3d", dict(upsampling="bilinear"), "upsampling"),
    ("unet3d", dict(batch_norm="yes"), "batch_norm"),
    ("cnn3d", dict(filters=()), "filters"),
    ("cnn3d", dict(filters=(8, 0)), r"filters\[1\]"),
    ("cnn3d", dict(input_shape=(20, 20, 20, 1)), "divisible by 8"),
    ("cnn3d", dict(pooling=None), "pooling"),
    ("cnn3d", dict(dropout=1.0), "dropout"),
])
def test_model_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kerastk.create_model(name, **kwargs)


# === the slice PNG ===

def test_pick_slices_and_png(tmp_path, generated):
    x, masks, labels, shapes, modalities = generated
    chosen = pick_slices(x[:3], masks[:3])
    for s, m in zip(chosen, masks[:3]):
        assert (m[s] > 0).sum() == (m > 0).sum(axis=(1, 2)).max()
    one_hot = np.eye(3)[masks[:3]]  # scores per voxel pick the same slices as the masks
    np.testing.assert_array_equal(pick_slices(x[:3], one_hot), chosen)
    # without masks: the blurred brightest t1c voxel is in the lesion for most volumes
    blind = pick_slices(x[:20])
    assert np.mean([(m[s] == 1).any() for s, m in zip(blind, masks[:20])]) >= 0.7

    path = plot_volume_slices(x[:3] / 255.0, tmp_path / "slices.png", truth=masks[:3], prediction=one_hot,
                              modality_names=modalities, class_names=["background", "core", "edema"], n=3)
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > height > 0.6 * width  # 3 rows of 5 panels (3 modalities, truth, prediction)
    classes = plot_volume_slices(x[:2], tmp_path / "classes.png", truth=labels[:2], prediction=np.eye(3)[labels[:2]],
                                 class_names=shapes)
    assert classes.is_file()
    with pytest.raises(ValueError, match="volumes"):
        plot_volume_slices(x[0], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="do not match"):
        plot_volume_slices(x[:2], tmp_path / "bad.png", truth=masks[:2, :8])
