"""kerastk.losses: contrastive and triplet losses against numpy references on handmade embeddings, batch-hard
mining picks the right pairs (values and where the gradient goes), the ELBO terms against their closed forms,
finite gradients at coincident points, serialization, and model.fit(x, labels) - under this process's backend."""
import keras
import numpy as np
import pytest

from kerastk.losses import (
    ContrastiveLoss,
    ReconstructionLoss,
    TripletLoss,
    contrastive_loss,
    kl_divergence,
    pairwise_distances,
    reconstruction_loss,
    triplet_loss,
)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def grad(fn, x):
    """d sum(fn(x)) / dx with the active backend's autodiff (tests may use backend code; kerastk may not)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = tf.reduce_sum(fn(t))
        return tape.gradient(y, t).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda t: fn(t).sum())(x))
    import torch

    t = torch.tensor(x, requires_grad=True)
    fn(t).sum().backward()
    return t.grad.numpy()


# === numpy references (written from the papers, loops over pairs and triplets) ===

def distances_ref(e):
    return np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))


def contrastive_ref(labels, e, margin):
    d = distances_ref(e.astype(np.float64))
    n = len(e)
    out = np.zeros(n)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if labels[i] == labels[j]:
                out[i] += 0.5 * d[i, j] ** 2
            else:
                out[i] += 0.5 * max(0.0, margin - d[i, j]) ** 2
        out[i] /= n - 1
    return out


def triplet_ref(labels, e, margin, mining, squared=True):
    d = distances_ref(e.astype(np.float64))
    d = d ** 2 if squared else d
    n = len(e)
    out = np.zeros(n)
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [k for k in range(n) if labels[k] != labels[a]]
        if not pos or not neg:
            continue
        if mining == "hard":
            out[a] = max(0.0, max(d[a, p] for p in pos) - min(d[a, k] for k in neg) + margin)
        else:
            out[a] = np.mean([max(0.0, d[a, p] - d[a, k] + margin) for p in pos for k in neg])
    return out


LABELS = np.array([0, 0, 1, 1, 2, 0, 2], dtype="int64")
EMB = np.array([[0.0, 0.0], [0.3, 0.1], [1.0, 0.2], [0.9, -0.3], [0.2, 1.1], [0.8, 0.0], [0.1, 0.4]],
               dtype="float32")


def test_pairwise_distances_match_numpy():
    e = np.random.default_rng(0).standard_normal((6, 5)).astype("float32")
    d = _np(pairwise_distances(e))
    np.testing.assert_allclose(d[~np.eye(6, dtype=bool)], distances_ref(e)[~np.eye(6, dtype=bool)], atol=1e-5)
    np.testing.assert_array_equal(np.diag(_np(pairwise_distances(e, squared=True))), 0.0)


@pytest.mark.parametrize("margin", [0.5, 1.0])
def test_contrastive_matches_numpy(margin):
    got = _np(contrastive_loss(LABELS, EMB, margin=margin))
    np.testing.assert_allclose(got, contrastive_ref(LABELS, EMB, margin), atol=1e-6)
    # the Loss class: Keras's batch mean of the per-anchor values
    value = float(_np(ContrastiveLoss(margin=margin)(LABELS, EMB)))
    assert value == pytest.approx(contrastive_ref(LABELS, EMB, margin).mean(), abs=1e-6)


def test_contrastive_hand_computed_pair():
    # two points 0.6 apart: similar -> 0.6^2 / 2; dissimilar -> (1 - 0.6)^2 / 2; beyond the margin -> 0
    e = np.array([[0.0, 0.0], [0.6, 0.0]], dtype="float32")
    np.testing.assert_allclose(_np(contrastive_loss(np.array([1, 1]), e)), [0.18, 0.18], atol=1e-6)
    np.testing.assert_allclose(_np(contrastive_loss(np.array([1, 2]), e)), [0.08, 0.08], atol=1e-6)
    np.testing.assert_allclose(_np(contrastive_loss(np.array([1, 2]), e, margin=0.5)), [0.0, 0.0], atol=1e-7)


@pytest.mark.parametrize("mining", ["all", "hard"])
@pytest.mark.parametrize("squared", [True, False])
def test_triplet_matches_numpy(mining, squared):
    got = _np(triplet_loss(LABELS, EMB, margin=0.2, mining=mining, squared=squared))
    np.testing.assert_allclose(got, triplet_ref(LABELS, EMB, 0.2, mining, squared), atol=1e-6)
    value = float(_np(TripletLoss(margin=0.2, mining=mining, squared=squared)(LABELS, EMB)))
    assert value == pytest.approx(triplet_ref(LABELS, EMB, 0.2, mining, squared).mean(), abs=1e-6)


def test_triplet_random_batch_matches_numpy():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=24)
    e = rng.standard_normal((24, 8)).astype("float32")
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    for mining in ("all", "hard"):
        np.testing.assert_allclose(_np(triplet_loss(labels, e, margin=0.3, mining=mining)),
                                   triplet_ref(labels, e, 0.3, mining), atol=1e-5)


def test_hard_mining_picks_farthest_positive_and_closest_negative():
    # anchor 0 at the origin: positives at distance 1 and 3, negatives at 2 and 4 (1-D, squared=False)
    e = np.array([[0.0], [1.0], [3.0], [2.0], [-4.0]], dtype="float32")
    labels = np.array([0, 0, 0, 1, 1])
    hard = _np(triplet_loss(labels, e, margin=0.5, mining="hard", squared=False))
    assert hard[0] == pytest.approx(3.0 - 2.0 + 0.5, abs=1e-6)  # positive 2 (d=3), negative 3 (d=2)
    # the gradient of anchor 0's loss reaches only its hardest positive and hardest negative: with p, n > a,
    # loss = (p - a) - (n - a) + margin, so d/dp = 1, d/dn = -1, d/da = 0, and the other points get nothing
    g = grad(lambda t: triplet_loss(labels, t, margin=0.5, mining="hard", squared=False)[0], e)[:, 0]
    np.testing.assert_allclose(g, [0.0, 0.0, 1.0, -1.0, 0.0], atol=1e-6)
    # batch-all averages every (positive, negative) pair of the anchor instead
    all_ = _np(triplet_loss(labels, e, margin=0.5, mining="all", squared=False))
    assert all_[0] == pytest.approx(np.mean([max(0, p - n + 0.5) for p in (1, 3) for n in (2, 4)]), abs=1e-6)


def test_anchor_without_positive_or_negative_gives_zero():
    e = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype="float32")
    for mining in ("all", "hard"):
        np.testing.assert_array_equal(_np(triplet_loss(np.array([0, 1, 2]), e, mining=mining)), 0.0)  # no positives
        np.testing.assert_array_equal(_np(triplet_loss(np.array([5, 5, 5]), e, mining=mining)), 0.0)  # no negatives


def test_gradients_finite_at_coincident_embeddings():
    # identical embeddings: distance 0, where sqrt's derivative is infinite
    e = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.1, 0.2]], dtype="float32")
    labels = np.array([0, 1, 0, 1])
    fns = [lambda t: contrastive_loss(labels, t), lambda t: triplet_loss(labels, t, mining="hard", squared=False),
           lambda t: triplet_loss(labels, t, mining="all", squared=False), lambda t: triplet_loss(labels, t)]
    for fn in fns:
        g = grad(fn, e)
        assert np.all(np.isfinite(g)), g
    assert np.abs(grad(fns[0], e)).sum() > 0  # the dissimilar coincident pair is pushed apart


def test_kl_matches_closed_form():
    rng = np.random.default_rng(0)
    mean = rng.standard_normal((5, 3)).astype("float32")
    log_var = rng.uniform(-2, 1, size=(5, 3)).astype("float32")
    sigma = np.exp(0.5 * log_var.astype(np.float64))
    # KL(N(mu, sigma^2) || N(0, 1)) = log(1 / sigma) + (sigma^2 + mu^2) / 2 - 1/2, summed over dimensions
    expected = (np.log(1 / sigma) + (sigma**2 + mean.astype(np.float64) ** 2) / 2 - 0.5).sum(1)
    np.testing.assert_allclose(_np(kl_divergence(mean, log_var)), expected, rtol=1e-5)
    np.testing.assert_allclose(_np(kl_divergence(np.zeros((2, 4)), np.zeros((2, 4)))), [0.0, 0.0])


def test_kl_gradient_is_finite_and_zero_at_the_prior():
    g = grad(lambda t: kl_divergence(t, keras.ops.zeros_like(t)), np.zeros((2, 3), "float32"))
    np.testing.assert_array_equal(g, 0.0)
    g = grad(lambda t: kl_divergence(t, t), np.full((2, 3), 3.0, "float32"))
    assert np.all(np.isfinite(g))


def test_reconstruction_loss_sums_pixels():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(3, 4, 4, 1)).astype("float32")
    p = rng.uniform(0.05, 0.95, size=(3, 4, 4, 1)).astype("float32")
    x64, p64 = x.astype(np.float64), p.astype(np.float64)
    bce = -(x64 * np.log(p64) + (1 - x64) * np.log(1 - p64)).reshape(3, -1).sum(1)
    np.testing.assert_allclose(_np(reconstruction_loss(x, p)), bce, rtol=1e-5)
    np.testing.assert_allclose(_np(reconstruction_loss(x, p, kind="mse")),
                               0.5 * ((x64 - p64) ** 2).reshape(3, -1).sum(1), rtol=1e-5)
    assert float(_np(ReconstructionLoss()(x, p))) == pytest.approx(bce.mean(), rel=1e-5)
    assert np.all(np.isfinite(_np(reconstruction_loss(x, np.clip(p, 0, 0) + 1.0))))  # p = 1: clipped, finite


def test_loss_configs_round_trip():
    images = np.random.default_rng(2).uniform(0.1, 0.9, size=(2, 3, 3, 1)).astype("float32")
    cases = [(ContrastiveLoss(margin=0.7), LABELS, EMB), (TripletLoss(margin=0.3, mining="hard", squared=False),
             LABELS, EMB), (ReconstructionLoss(kind="mse"), images, images[::-1])]
    for loss, y_true, y_pred in cases:
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
        assert float(_np(restored(y_true, y_pred))) == float(_np(loss(y_true, y_pred))) > 0


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match=r"margin.*-1"):
        TripletLoss(margin=-1)
    with pytest.raises(ValueError, match=r"mining.*'semi'"):
        TripletLoss(mining="semi")
    with pytest.raises(ValueError, match=r"squared"):
        TripletLoss(squared="yes")
    with pytest.raises(ValueError, match=r"margin.*0"):
        ContrastiveLoss(margin=0)
    with pytest.raises(ValueError, match=r"kind.*'l1'"):
        ReconstructionLoss(kind="l1")


@pytest.mark.parametrize("loss", [TripletLoss(margin=0.2, mining="hard"), ContrastiveLoss(margin=1.0)])
def test_fit_with_labels_learns_an_embedding(loss):
    # three classes, each a cluster in 6-D mixed with noise dimensions: a linear embedding can separate them
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 6)) * 2.0
    y = np.repeat(np.arange(3), 40)
    x = (centers[y] + rng.standard_normal((120, 6)) * 1.5).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.UnitNormalization()])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    before = model.evaluate(x, y, batch_size=120, verbose=0)
    model.fit(x, y, batch_size=60, epochs=15, verbose=0, shuffle=True)
    after = model.evaluate(x, y, batch_size=120, verbose=0)
    assert np.isfinite(after) and after < 0.6 * before, (before, after)
