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

from kerastk.core.checks import check_bool, check_choice

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
    check_choice("mining", mining, MINING)
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
    check_choice("kind", kind, RECONSTRUCTION)
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
        self.mining = check_choice("mining", mining, MINING)
        check_bool("squared", squared)
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
        self.kind = check_choice("kind", kind, RECONSTRUCTION)

    def call(self, y_true, y_pred):
        return reconstruction_loss(y_true, y_pred, kind=self.kind)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


# === Detection: the YOLO loss (box regression + objectness + class) ===


def _check_weight(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"`{name}` must be a number >= 0; received {name}={value!r}.")
    return float(value)


def yolo_loss(y_true, y_pred, box_weight=5.0, object_weight=1.0, noobject_weight=0.5, class_weight=1.0):
    """YOLO loss per image for raw grid predictions (Redmon et al. 2016; YOLOv2's box parametrisation).

    Both tensors are (B, S_h, S_w, A, 5 + C) in the layout of ``kerastk.deploy.detection``: y_pred the raw
    head output [tx, ty, tw, th, objectness logit, class logits]; y_true from
    ``kerastk.deploy.detection.encode_targets`` [offset x, offset y in [0, 1), log(w / anchor_w),
    log(h / anchor_h), 1 for an assigned anchor else 0, one-hot class]. With m = 1 on assigned anchors:

        box    = sum m * [(sigmoid(tx) - offset_x)^2 + (sigmoid(ty) - offset_y)^2
                          + (tw - log(w / anchor_w))^2 + (th - log(h / anchor_h))^2]
        object = sum m * BCE(1, sigmoid(to));   no-object = sum (1 - m) * BCE(0, sigmoid(to))
        class  = sum m * CE(one-hot, softmax(class logits))
        loss   = box_weight * box + object_weight * object + noobject_weight * no-object + class_weight * class

    Sums run over the image's cells and anchors (YOLO's sum-squared form), so the loss grows with the number of
    objects; the Loss class averages images. Squared error on the sigmoid offsets and the log sizes is
    YOLOv2's regression; the no-object weight below 1 (YOLO: 0.5) keeps the many empty cells from pushing every
    objectness to zero.

    Returns:
        (B,) loss per image.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    mask = y_true[..., 4]
    xy = ops.sum(ops.square(ops.sigmoid(y_pred[..., 0:2]) - y_true[..., 0:2]), axis=-1)
    wh = ops.sum(ops.square(y_pred[..., 2:4] - y_true[..., 2:4]), axis=-1)
    bce = ops.binary_crossentropy(mask, y_pred[..., 4], from_logits=True)
    ce = ops.categorical_crossentropy(y_true[..., 5:], y_pred[..., 5:], from_logits=True)
    per_anchor = (box_weight * mask * (xy + wh) + object_weight * mask * bce
                  + noobject_weight * (1.0 - mask) * bce + class_weight * mask * ce)
    return ops.sum(ops.reshape(per_anchor, (ops.shape(y_pred)[0], -1)), axis=1)


@keras.saving.register_keras_serializable(package="kerastk")
class YoloLoss(keras.losses.Loss):
    """:func:`yolo_loss` as a Keras Loss: ``y_true`` encoded targets and ``y_pred`` raw grid predictions, both
    (B, S_h, S_w, A, 5 + C); the batch mean of the per-image loss.

    Args:
        box_weight: weight of the box regression (YOLO's lambda_coord = 5).
        object_weight: weight of the objectness BCE on assigned anchors.
        noobject_weight: weight of the objectness BCE on every other anchor (YOLO's lambda_noobj = 0.5).
        class_weight: weight of the class cross-entropy on assigned anchors.
    """

    def __init__(self, box_weight=5.0, object_weight=1.0, noobject_weight=0.5, class_weight=1.0,
                 reduction="sum_over_batch_size", name="yolo_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.box_weight = _check_weight("box_weight", box_weight)
        self.object_weight = _check_weight("object_weight", object_weight)
        self.noobject_weight = _check_weight("noobject_weight", noobject_weight)
        self.class_weight = _check_weight("class_weight", class_weight)

    def call(self, y_true, y_pred):
        return yolo_loss(y_true, y_pred, self.box_weight, self.object_weight, self.noobject_weight,
                         self.class_weight)

    def get_config(self):
        return {**super().get_config(), "box_weight": self.box_weight, "object_weight": self.object_weight,
                "noobject_weight": self.noobject_weight, "class_weight": self.class_weight}


__all__ += ["YoloLoss", "yolo_loss"]


# === Segmentation: soft Dice (Milletari et al. 2016), alone or with cross-entropy ===


def _check_nonnegative(name, value, positive=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
        raise ValueError(f"`{name}` must be a number {'>' if positive else '>='} 0; received {name}={value!r}.")
    return float(value)


def _one_hot_masks(y_true, y_pred):
    """y_true as one-hot (B, ..., C) in y_pred's dtype, from integer masks (B, ...) or (B, ..., 1), or one-hot."""
    num_classes = y_pred.shape[-1]
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape):
        if y_true.shape[-1] == num_classes and num_classes != 1:
            return ops.cast(y_true, y_pred.dtype)
        if y_true.shape[-1] != 1:
            raise ValueError(f"Masks must be integer class ids (B, ...) or one-hot (B, ..., {num_classes}); "
                             f"received y_true {tuple(y_true.shape)} for y_pred {tuple(y_pred.shape)}.")
        y_true = ops.squeeze(y_true, axis=-1)
    elif len(y_true.shape) != len(y_pred.shape) - 1:
        raise ValueError(f"Masks (B, ...) need class scores (B, ..., C) with one more axis; received y_true "
                         f"{tuple(y_true.shape)} and y_pred {tuple(y_pred.shape)}.")
    return ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype=y_pred.dtype)


def soft_dice_loss(y_true, y_pred, smooth=1.0, ignore_background=False):
    """Soft Dice loss per image: 1 - the mean over classes of a differentiable Dice coefficient.

    For each image and class c, with p the predicted probabilities and g the one-hot truth over the pixels:

        dice_c = (2 * sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)

    Dice measures overlap relative to the class's size, so a small class counts as much as the background:
    the loss does not favour the majority class the way per-pixel cross-entropy can.

    Args:
        y_true: integer masks (B, *spatial) (or (B, *spatial, 1)), or one-hot (B, *spatial, C).
        y_pred: (B, *spatial, C) softmax probabilities (2-D or 3-D masks alike).
        smooth: added to numerator and denominator (> 0): a class absent from both the mask and the prediction
            scores 1 instead of 0/0, and the gradient stays finite.
        ignore_background: leave class 0 out of the mean (the usual choice when background dominates).

    Returns:
        (B,) loss per image in [0, 1): 0 for a perfect one-hot prediction.
    """
    smooth = _check_nonnegative("smooth", smooth, positive=True)
    y_pred = ops.convert_to_tensor(y_pred)
    if ignore_background and y_pred.shape[-1] < 2:
        raise ValueError("`ignore_background=True` needs at least 2 classes (class 0 is the background); "
                         f"received y_pred {tuple(y_pred.shape)}.")
    y_true = _one_hot_masks(y_true, y_pred)
    axes = tuple(range(1, len(y_pred.shape) - 1))
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    dice = (2.0 * intersection + smooth) / (total + smooth)  # (B, C)
    if ignore_background:
        dice = dice[:, 1:]
    return 1.0 - ops.mean(dice, axis=-1)


def dice_cross_entropy(y_true, y_pred, dice_weight=1.0, crossentropy_weight=1.0, smooth=1.0,
                       ignore_background=False):
    """crossentropy_weight * (per-pixel cross-entropy, averaged over the image) + dice_weight * soft Dice, per
    image: cross-entropy gives every pixel a gradient from the start, Dice balances small classes.
    ``dice_weight=0`` is plain per-pixel cross-entropy from integer masks (unlike Keras 3.15's
    "sparse_categorical_crossentropy", it trains (B, H, W, C) outputs under torch too).

    Args: as :func:`soft_dice_loss`; y_true integer masks (or one-hot), y_pred softmax probabilities.

    Returns:
        (B,) loss per image.
    """
    dice_weight = _check_nonnegative("dice_weight", dice_weight)
    crossentropy_weight = _check_nonnegative("crossentropy_weight", crossentropy_weight)
    y_pred = ops.convert_to_tensor(y_pred)
    one_hot = _one_hot_masks(y_true, y_pred)
    ce = ops.categorical_crossentropy(one_hot, y_pred)  # (B, *spatial); clips probabilities like Keras's loss
    ce = ops.mean(ops.reshape(ce, (ops.shape(y_pred)[0], -1)), axis=1)
    if dice_weight == 0:  # plain per-pixel cross-entropy
        return crossentropy_weight * ce
    return crossentropy_weight * ce + dice_weight * soft_dice_loss(one_hot, y_pred, smooth, ignore_background)


@keras.saving.register_keras_serializable(package="kerastk")
class DiceLoss(keras.losses.Loss):
    """:func:`soft_dice_loss` as a Keras Loss: ``y_true`` integer masks (B, H, W), ``y_pred`` softmax
    (B, H, W, C); the batch mean of 1 - mean-class soft Dice.

        model.compile("adam", loss=kerastk.losses.DiceLoss(), metrics=["accuracy"])
    """

    def __init__(self, smooth=1.0, ignore_background=False, reduction="sum_over_batch_size", name="dice_loss",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.smooth = _check_nonnegative("smooth", smooth, positive=True)
        check_bool("ignore_background", ignore_background)
        self.ignore_background = ignore_background

    def call(self, y_true, y_pred):
        return soft_dice_loss(y_true, y_pred, self.smooth, self.ignore_background)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth, "ignore_background": self.ignore_background}


@keras.saving.register_keras_serializable(package="kerastk")
class DiceCrossEntropyLoss(DiceLoss):
    """:func:`dice_cross_entropy` as a Keras Loss: weighted sum of per-pixel cross-entropy and soft Dice.

        model.compile("adam", loss=kerastk.losses.DiceCrossEntropyLoss(dice_weight=1.0), metrics=["accuracy"])

    (Keras compiles one loss per output, so two losses on one output take one Loss that sums them.)
    """

    def __init__(self, dice_weight=1.0, crossentropy_weight=1.0, smooth=1.0, ignore_background=False,
                 reduction="sum_over_batch_size", name="dice_cross_entropy", dtype=None):
        super().__init__(smooth=smooth, ignore_background=ignore_background, reduction=reduction, name=name,
                         dtype=dtype)
        self.dice_weight = _check_nonnegative("dice_weight", dice_weight)
        self.crossentropy_weight = _check_nonnegative("crossentropy_weight", crossentropy_weight)

    def call(self, y_true, y_pred):
        return dice_cross_entropy(y_true, y_pred, self.dice_weight, self.crossentropy_weight, self.smooth,
                                  self.ignore_background)

    def get_config(self):
        return {**super().get_config(), "dice_weight": self.dice_weight,
                "crossentropy_weight": self.crossentropy_weight}


__all__ += ["DiceCrossEntropyLoss", "DiceLoss", "dice_cross_entropy", "soft_dice_loss"]


# === Label smoothing for integer labels (Keras's sparse cross-entropy has no label_smoothing) ===


@keras.saving.register_keras_serializable(package="kerastk")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Keras's categorical cross-entropy with ``label_smoothing`` for integer labels (B,), (B, 1) or (B, ..., ).

    The labels are one-hot encoded over ``y_pred``'s last axis, then smoothed as Keras does: the target is
    (1 - label_smoothing) * one_hot + label_smoothing / num_classes (Szegedy et al. 2016). With
    ``label_smoothing=0`` it equals ``keras.losses.SparseCategoricalCrossentropy``.
    """

    def __init__(self, label_smoothing=0.0, from_logits=False, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
                or not 0 <= label_smoothing < 1:
            raise ValueError(f"`label_smoothing` must be a number in [0, 1); received {label_smoothing!r}.")
        self.label_smoothing, self.from_logits = float(label_smoothing), bool(from_logits)

    def call(self, y_true, y_pred):
        return keras.losses.categorical_crossentropy(_one_hot_masks(y_true, y_pred), y_pred,
                                                     from_logits=self.from_logits,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}
