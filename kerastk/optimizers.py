"""What a run minimises and how: optimizers from a name or an instance, L1/L2 penalties on the kernels, label
smoothing - Keras's own pieces, set up the way kerastk's runner and lessons use them."""
from __future__ import annotations

import contextlib


def make_optimizer(optimizer, learning_rate=None, **overrides):
    """A Keras optimizer from a name ("adam", "sgd", "rmsprop" ...) or an instance.

    `overrides` (e.g. clipnorm=1.0, weight_decay=1e-4, use_ema=True) go into the optimizer's config; an instance
    is then rebuilt from its config with them. `learning_rate` (a float or a schedule) replaces the instance's
    own rate; None keeps it (a name needs one). Decoupled weight decay leaves biases and normalisation
    parameters alone, as L2 penalties here do.
    """
    import keras

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(optimizer, str):
        if learning_rate is None:
            raise ValueError(f"make_optimizer({optimizer!r}) needs a learning_rate.")
        try:
            opt = keras.optimizers.get({"class_name": optimizer,
                                        "config": {"learning_rate": learning_rate, **overrides}})
        except ValueError:
            raise ValueError(f"Unknown optimizer {optimizer!r}; use a Keras optimizer name such as 'adam', "
                             "'sgd', 'rmsprop', 'adagrad', 'adamw'.") from None
    else:
        config = optimizer.get_config()
        current = config["learning_rate"]
        same_rate = learning_rate is None or (
            isinstance(learning_rate, (int, float)) and isinstance(current, (int, float))
            and abs(learning_rate - current) <= 1e-6 * abs(current))  # the config holds a float32 value
        if not overrides and same_rate:
            return optimizer
        if not same_rate:
            config["learning_rate"] = learning_rate
        opt = type(optimizer).from_config({**config, **overrides})
    if overrides.get("weight_decay"):
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


def optimizer_learning_rate(optimizer, default: float) -> float:
    """The float rate an optimizer instance was built with (`default` for a name)."""
    if isinstance(optimizer, str):
        return float(default)
    rate = optimizer.get_config()["learning_rate"]
    if not isinstance(rate, (int, float)):
        raise ValueError("A --lr-schedule needs an optimizer built with a float learning rate; this recipe's "
                         "optimizer already has a schedule.")
    return float(rate)


KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel")


@contextlib.contextmanager
def weight_penalty(model, l1: float = 0.0, l2: float = 0.0):
    """Within the block, an L1/L2 penalty (keras.regularizers.L1L2) on every kernel of `model`; yields how many.

    Keras adds a variable's regularizer to the training loss (JAX's jitted step included), so setting it on
    the built model's kernels equals building the layers with ``kernel_regularizer=``. Biases and normalisation
    parameters are left free, as usual. On leaving, each kernel gets its own regularizer back (a model built
    with ``kernel_regularizer=`` keeps it); with l1 = l2 = 0 nothing is touched. The saved .keras config and
    the exported graph never carry the penalty.
    """
    import keras

    if not (l1 or l2):
        yield 0
        return
    kernels = [v for v in model.trainable_weights if v.name in KERNEL_NAMES]
    saved = [v.regularizer for v in kernels]
    for v in kernels:
        v.regularizer = keras.regularizers.L1L2(l1=l1, l2=l2)
    try:
        yield len(kernels)
    finally:
        for v, regularizer in zip(kernels, saved):
            v.regularizer = regularizer


CROSS_ENTROPY = ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy")


def with_label_smoothing(loss, amount: float):
    """The same cross-entropy loss with label smoothing `amount` (Keras's own argument; sparse labels through
    kerastk.losses.SparseCategoricalCrossentropy, since Keras's sparse loss has none). A loss object keeps its
    other settings (from_logits, reduction, axis). Other losses: ValueError."""
    import keras

    if not amount:
        return loss
    from kerastk.losses import SparseCategoricalCrossentropy

    if isinstance(loss, str):
        classes = {"categorical_crossentropy": keras.losses.CategoricalCrossentropy,
                   "binary_crossentropy": keras.losses.BinaryCrossentropy,
                   "sparse_categorical_crossentropy": SparseCategoricalCrossentropy}
        if loss in classes:
            return classes[loss](label_smoothing=amount)
    elif isinstance(loss, (keras.losses.CategoricalCrossentropy, keras.losses.BinaryCrossentropy,
                           SparseCategoricalCrossentropy)):
        return type(loss).from_config({**loss.get_config(), "label_smoothing": amount})
    elif isinstance(loss, keras.losses.SparseCategoricalCrossentropy):
        config = loss.get_config()
        if config.get("ignore_class") is not None:
            raise ValueError("Label smoothing with ignore_class is not supported; drop --label-smoothing or use "
                             "a loss without ignore_class.")
        return SparseCategoricalCrossentropy(label_smoothing=amount, from_logits=config["from_logits"],
                                             reduction=config["reduction"], name=config["name"])
    raise ValueError(f"Label smoothing applies to cross-entropy losses ({', '.join(CROSS_ENTROPY)}); this run's "
                     f"loss is {getattr(loss, 'name', loss)!r}.")
