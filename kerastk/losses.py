"""Losses Keras lacks: metric learning (contrastive, triplet with in-batch mining) and the VAE's ELBO terms.

Metric-learning losses take integer class labels and a batch of embeddings, so a plain
``model.fit(x, labels)`` trains an embedding network: every pair (contrastive) or triplet (triplet loss) is
formed inside the batch from the labels.

    model.compile(optimizer="adam", loss=kerastk.losses.TripletLoss(margin=0.2, mining="hard"))
    model.fit(x_train, y_train, batch_size=128)     # y_train: (N,) ints; model output: (N, D) embeddings

The VAE's negative ELBO per image is ``reconstruction_loss(x, x_hat) + kl_divergence(z_mean, z_log_var)``:
the reconstruction term is the compiled loss (:class:`ReconstructionLoss`), the KL term is added by the
:class:`kerastk.layers.Sampling` layer with ``add_loss``, and Keras adds the two.

Every function returns one value per sample (per anchor for the metric losses); the Loss classes hand those to
Keras's reduction (``"sum_over_batch_size"``: the batch mean), so ``sample_weight`` weights anchors.
Only ``keras.ops`` is used: the losses run under TensorFlow, JAX and torch.
"""
from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "MINING",
    "ContrastiveLoss",
    "ReconstructionLoss",
    "TripletLoss",
    "contrastive_loss",
    "kl_divergence",
    "pairwise_distances",
    "reconstruction_loss",
    "triplet_loss",
]

MINING = ("all", "hard")
RECONSTRUCTION = ("bce", "mse")
_EPS = 1e-12  # floor under squared distances before sqrt: sqrt's gradient at 0 is infinite


def _check_margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin <= 0:
        raise ValueError(f"`margin` must be a number > 0; received margin={margin!r}.")
    return float(margin)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}; received {name}={value!r}.")
    return value


def pairwise_distances(embeddings, squared=False):
    """(B, B) Euclidean distances between the rows of `embeddings` (B, D); squared distances when `squared`.

    Computed as |a|^2 - 2 a.b + |b|^2 (one matmul), clipped at 0; the diagonal is exactly 0. The square root
    is taken of max(d^2, 1e-12), so coincident points have a finite gradient.
    """
    e = ops.convert_to_tensor(embeddings)
    sq = ops.sum(ops.square(e), axis=1)
    d2 = ops.maximum(sq[:, None] - 2.0 * ops.matmul(e, ops.transpose(e)) + sq[None, :], 0.0)
    d2 = d2 * (1.0 - ops.cast(_eye_mask(ops.shape(e)[0]), d2.dtype))
    return d2 if squared else ops.sqrt(ops.maximum(d2, _EPS))


def _eye_mask(n):
    idx = ops.arange(n)
    return ops.equal(idx[:, None], idx[None, :])


def _pair_masks(y_true, batch):
    """(positive, negative) boolean (B, B) masks: same label and not the anchor itself; different label."""
    labels = ops.reshape(y_true, (-1,))
    same = ops.equal(labels[:, None], labels[None, :])
    positive = ops.logical_and(same, ops.logical_not(_eye_mask(batch)))
    return positive, ops.logical_not(same)


def contrastive_loss(y_true, y_pred, margin=1.0):
    """Contrastive loss (Hadsell, Chopra & LeCun 2006) over every pair in the batch, per anchor.

    For embeddings a, b at distance d: similar pairs (same label) cost d^2 / 2, dissimilar pairs cost
    max(0, margin - d)^2 / 2, so dissimilar pairs further apart than `margin` cost nothing.

    Args:
        y_true: (B,) integer class labels (any shape with B elements).
        y_pred: (B, D) embeddings.
        margin: the distance beyond which dissimilar pairs stop pushing apart (1.0 suits L2-normalised
            embeddings, whose distances lie in [0, 2]).

    Returns:
        (B,) the mean pair loss of each anchor over the B - 1 other samples.
    """
    margin = _check_margin(margin)
    y_pred = ops.convert_to_tensor(y_pred)
    batch = ops.shape(y_pred)[0]
    d2 = pairwise_distances(y_pred, squared=True)
    d = ops.sqrt(ops.maximum(d2, _EPS))
    positive, negative = _pair_masks(y_true, batch)
    positive, negative = ops.cast(positive, d2.dtype), ops.cast(negative, d2.dtype)
    pair = 0.5 * (positive * d2 + negative * ops.square(ops.relu(margin - d)))
    others = ops.maximum(ops.cast(batch, d2.dtype) - 1.0, 1.0)
    return ops.sum(pair, axis=1) / others


def triplet_loss(y_true, y_pred, margin=0.2, mining="all", squared=True):
    """Triplet loss (Schroff, Kalenichenko & Philbin 2015, FaceNet) with triplets mined inside the batch.

    For an anchor a, a positive p (same label) and a negative n (another label):
    max(0, d(a, p) - d(a, n) + margin), with d the squared Euclidean distance (FaceNet; `squared=False`
    uses the distance itself, as Hermans et al. 2017 do).

    Args:
        y_true: (B,) integer class labels (any shape with B elements).
        y_pred: (B, D) embeddings (FaceNet L2-normalises them; so does kerastk's embedding_net).
        margin: the gap wanted between positive and negative distances (FaceNet: 0.2).
        mining: "all" - every valid triplet of the batch, averaged per anchor over its (positive, negative)
            pairs (a (B, B, B) tensor: fine for batches of a few hundred); "hard" - batch-hard (Hermans et al.
            2017): each anchor's farthest positive and closest negative only. From a random start batch-hard
            can collapse every embedding onto one point (the loss then stays at `margin`), as FaceNet warns
            of the hardest negatives early in training; "all" does not.
        squared: use squared distances (FaceNet) or plain Euclidean distances.

    Returns:
        (B,) one loss per anchor; an anchor without a positive or without a negative in the batch gives 0.
    """
    margin = _check_margin(margin)
    _check_choice("mining", mining, MINING)
    y_pred = ops.convert_to_tensor(y_pred)
    batch = ops.shape(y_pred)[0]
    d = pairwise_distances(y_pred, squared=squared)
    positive, negative = _pair_masks(y_true, batch)
    if mining == "hard":
        hardest_positive = ops.max(ops.where(positive, d, 0.0), axis=1)  # distances are >= 0
        # beyond every real distance, so a non-negative is never the closest negative
        far = ops.max(d) + 1.0
        hardest_negative = ops.min(ops.where(negative, d, far), axis=1)
        valid = ops.logical_and(ops.any(positive, axis=1), ops.any(negative, axis=1))
        return ops.relu(hardest_positive - hardest_negative + margin) * ops.cast(valid, d.dtype)
    # every (anchor i, positive j, negative k): d[i, j] - d[i, k] + margin
    triplets = d[:, :, None] - d[:, None, :] + margin
    mask = ops.cast(ops.logical_and(positive[:, :, None], negative[:, None, :]), d.dtype)
    count = ops.sum(mask, axis=(1, 2))
    return ops.sum(ops.relu(triplets) * mask, axis=(1, 2)) / ops.maximum(count, 1.0)


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) per sample, summed over the latent axes (Kingma & Welling 2014):

        0.5 * sum(exp(log_var) + mean^2 - 1 - log_var)

    (Not ``keras.losses.kl_divergence``, which compares two discrete distributions.)

    Args:
        z_mean, z_log_var: (B, latent_dim) the encoder's Gaussian posterior parameters.

    Returns:
        (B,) KL divergence in nats.
    """
    z_mean, z_log_var = ops.convert_to_tensor(z_mean), ops.convert_to_tensor(z_log_var)
    return 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var, axis=-1)


def reconstruction_loss(y_true, y_pred, kind="bce"):
    """The VAE's reconstruction term: -log p(x | z) per image, summed over every pixel and channel.

    Args:
        y_true: (B, ...) target images (for "bce" in [0, 1]).
        y_pred: (B, ...) decoder output (for "bce" sigmoid probabilities).
        kind: "bce" - Bernoulli likelihood, Keras's per-element ``ops.binary_crossentropy`` summed;
            "mse" - Gaussian likelihood with unit variance (sum of squared errors / 2, constant dropped).

    Returns:
        (B,) nats per image. The sum over pixels (not the mean) is what keeps it on the KL term's scale:
        with a per-pixel mean the KL would dominate and the decoder would ignore z.
    """
    _check_choice("kind", kind, RECONSTRUCTION)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    per_element = (ops.binary_crossentropy(y_true, y_pred) if kind == "bce"
                   else 0.5 * ops.square(y_pred - y_true))
    return ops.sum(ops.reshape(per_element, (ops.shape(y_pred)[0], -1)), axis=1)


# === Loss classes (registered, so compiled models round-trip through .keras) ===


@keras.saving.register_keras_serializable(package="kerastk")
class ContrastiveLoss(keras.losses.Loss):
    """:func:`contrastive_loss` as a Keras Loss: ``y_true`` labels (B,), ``y_pred`` embeddings (B, D)."""

    def __init__(self, margin=1.0, reduction="sum_over_batch_size", name="contrastive_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = _check_margin(margin)

    def call(self, y_true, y_pred):
        return contrastive_loss(y_true, y_pred, margin=self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="kerastk")
class TripletLoss(keras.losses.Loss):
    """:func:`triplet_loss` as a Keras Loss: ``y_true`` labels (B,), ``y_pred`` embeddings (B, D).

    Batches need several samples of a class: with 10 classes, batches of 64-128 give each anchor positives.
    """

    def __init__(self, margin=0.2, mining="all", squared=True, reduction="sum_over_batch_size",
                 name="triplet_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = _check_margin(margin)
        self.mining = _check_choice("mining", mining, MINING)
        if not isinstance(squared, bool):
            raise ValueError(f"`squared` must be True or False; received squared={squared!r}.")
        self.squared = squared

    def call(self, y_true, y_pred):
        return triplet_loss(y_true, y_pred, margin=self.margin, mining=self.mining, squared=self.squared)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "mining": self.mining, "squared": self.squared}


@keras.saving.register_keras_serializable(package="kerastk")
class ReconstructionLoss(keras.losses.Loss):
    """:func:`reconstruction_loss` as a Keras Loss (nats per image, batch mean).

    Compiled as a VAE's loss, with the KL term that :class:`kerastk.layers.Sampling` adds via ``add_loss``,
    the training loss Keras reports is the negative ELBO per image.
    """

    def __init__(self, kind="bce", reduction="sum_over_batch_size", name="reconstruction_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.kind = _check_choice("kind", kind, RECONSTRUCTION)

    def call(self, y_true, y_pred):
        return reconstruction_loss(y_true, y_pred, kind=self.kind)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}
