"""Look at everything: input checks, per-layer weight and gradient norms, dead ReLUs, and the one-batch test.

    kerastk.diagnostics.check_inputs(data.x_train, "x_train")      # warns on raw 0..255 pixels, huge scales ...
    kerastk.diagnostics.gradient_norms(model, x[:64], y[:64])      # {layer: |d loss / d kernel|}
    kerastk.diagnostics.dead_relu_fraction(model, x[:256])         # {relu layer: fraction of never-active units}
    model.fit(..., callbacks=[kerastk.diagnostics.Diagnostics(x[:256], y[:256], "export/run")])
    kerastk.diagnostics.overfit_one_batch(model, x[:32], y[:32], loss="sparse_categorical_crossentropy")

Norms are taken over each layer's *kernels* (trainable weights of rank >= 2: Dense and conv kernels,
embeddings); biases and normalisation scales are left out so every layer's number means the same thing.

Gradients come from kerastk's one backend-specific gradient adapter (kerastk.viz.gradients.scalar_and_gradients:
tf.GradientTape, jax.value_and_grad or torch.autograd), applied to ``model.stateless_call``: the model's variables, BatchNorm
statistics and seed states are read, never changed, so the diagnostics can run between epochs of any backend's
training (JAX's jitted loop included).

The :class:`Diagnostics` callback writes ``grad_norm`` and ``dead_relu`` into each epoch's logs: put it before
``keras.callbacks.CSVLogger`` in the callback list so history.csv records them (run() does, with --diagnostics).
Dead-ReLU fractions are measured on the model's top-level layers (a nested sub-model's ReLUs are not reached);
norms look inside nested functional / Sequential models.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np

__all__ = ["Diagnostics", "OverfitResult", "check_inputs", "dead_relu_fraction", "gradient_norms",
           "loss_and_kernel_gradients", "overfit_one_batch", "plot_diagnostics", "relu_layers", "weight_norms"]

PIXEL_MAX = 255.0  # raw 8-bit pixels
LARGE_MEAN, LARGE_STD = 3.0, 5.0  # beyond these an input is far from standardised (mean 0, std 1) or [0, 1]
TINY_STD = 1e-3  # below this the signal is lost in the initial weights' scale
STATS_ROWS = 20_000  # rows sampled (evenly spaced) for the statistics of large inputs
HIST_BINS = 40  # bins of each weight histogram


def _warn(messages: list, message: str) -> None:
    message = f"kerastk: {message}"
    messages.append(message)
    warnings.warn(message, UserWarning, stacklevel=3)


# --- input checks ---------------------------------------------------------------------------------------------


def check_inputs(x, name: str = "x") -> list[str]:
    """Warn about inputs a network will train badly on; raise on values it cannot train on at all.

    Checks float inputs (integer inputs are token ids or class indices and are left alone; strings too):
    NaN or infinite values raise ValueError; raw 0..255 pixels, means or standard deviations far from a
    standardised or [0, 1] range, tiny scales, a constant input and mostly constant features each give a
    ``UserWarning`` that says what to do.

    Args:
        x: an array, or a list / tuple / dict of arrays (multi-input data; each is checked under its own name).
        name: what to call the input in messages ("x_train").

    Returns:
        The warning messages (each also emitted with ``warnings.warn``); empty when the input looks fine.
    """
    if isinstance(x, dict):
        return [m for key, value in x.items() for m in check_inputs(value, f"{name}[{key!r}]")]
    if isinstance(x, (list, tuple)) and x and all(hasattr(a, "shape") for a in x):  # one array per model input
        return [m for i, value in enumerate(x) for m in check_inputs(value, f"{name}[{i}]")]
    try:
        a = np.asarray(x)
    except (ValueError, TypeError):  # ragged or not array-like (a tf.data pipeline, a generator): nothing to check
        return []
    messages: list[str] = []
    if a.size == 0 or not np.issubdtype(a.dtype, np.floating):  # token ids, labels, booleans, strings
        return messages
    finite = np.isfinite(a)
    if not finite.all():
        bad = int(a.size - np.count_nonzero(finite))
        raise ValueError(f"{name} has {bad:,} NaN or infinite values (of {a.size:,}); the network cannot train "
                         f"on them. Expected finite numbers: fill or drop the missing values before training.")
    if len(a) > STATS_ROWS:
        a = a[np.linspace(0, len(a) - 1, STATS_ROWS).astype(int)]
    a = a.astype(np.float64)
    lo, hi, mean, std = float(a.min()), float(a.max()), float(a.mean()), float(a.std())
    if std == 0.0:
        _warn(messages, f"{name} is constant (every value is {lo:g}): the network cannot learn from it. "
                        "Check the data loading.")
        return messages
    if lo >= 0.0 and 25.0 < hi <= PIXEL_MAX:
        _warn(messages, f"{name} has values in 0..{hi:g} (mean {mean:.3g}): it looks like raw 8-bit pixels. "
                        "Divide by 255 (or put keras.layers.Rescaling(1 / 255) first in the model).")
    elif abs(mean) > LARGE_MEAN or std > LARGE_STD:
        detail = ""
        if a.ndim == 2 and a.shape[1] > 1:
            scale = np.abs(a.mean(axis=0)) + a.std(axis=0)
            worst = np.argsort(scale)[::-1][:3]
            detail = " (largest features: " + ", ".join(f"#{i} mean {a[:, i].mean():.3g} std {a[:, i].std():.3g}"
                                                       for i in worst) + ")"
        _warn(messages, f"{name} is far from standardised: mean {mean:.3g}, std {std:.3g}, range {lo:.3g}..{hi:.3g}"
                        f"{detail}. Standardise each feature (subtract the training mean, divide by the std; "
                        "keras.layers.Normalization with adapt() does it inside the model).")
    elif std < TINY_STD:
        _warn(messages, f"{name} has a tiny scale: std {std:.3g}, range {lo:.3g}..{hi:.3g}. "
                        "Standardise it (divide by its std) so it is not lost against the initial weights.")
    if a.ndim == 2 and a.shape[1] > 1:
        constant = int(np.count_nonzero(a.std(axis=0) == 0.0))
        if constant > a.shape[1] // 2:
            _warn(messages, f"{name}: {constant} of {a.shape[1]} features are constant in every sample; they "
                            "carry no information. Drop them or check the feature extraction.")
    return messages


# --- norms and gradients --------------------------------------------------------------------------------------


def _kernels(layer) -> list:
    """A layer's trainable weights of rank >= 2 (kernels, embeddings), in the model's order."""
    return [v for v in layer.trainable_weights if len(v.shape) >= 2]


def _layers_with_kernels(model) -> list:
    """Layers that own kernels, looking inside nested functional / Sequential models (e.g. the model that
    run() wraps behind augmentation layers)."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _layers_with_kernels(layer)
        elif _kernels(layer):
            found.append(layer)
    return found


def weight_norms(model) -> dict:
    """L2 norm of each layer's trainable kernels: ``{layer name: float}`` (layers without kernels left out)."""
    import keras

    return {layer.name: float(math.sqrt(sum(float(np.sum(np.square(keras.ops.convert_to_numpy(v).astype(np.float64))))
                                            for v in _kernels(layer))))
            for layer in _layers_with_kernels(model)}


def _loss_function(model, loss):
    """``loss`` (a name, function or keras.losses.Loss) or the compiled one, as ``f(y_true, y_pred) -> scalar``."""
    import keras

    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(f"Model {model.name!r} is not compiled with a loss; pass loss=... (e.g. "
                             "'sparse_categorical_crossentropy').")
    if isinstance(loss, (list, tuple, dict)):
        raise ValueError(f"gradient_norms takes one loss for a single-output model; received loss={loss!r}.")
    fn = keras.losses.get(loss)
    if fn is None:
        raise ValueError(f"Unknown loss {loss!r}; expected a Keras loss name, function or keras.losses.Loss.")
    return lambda y_true, y_pred: keras.ops.mean(fn(y_true, y_pred))


def loss_and_kernel_gradients(model, x, y, loss=None, training: bool = True):
    """The loss on one batch and ``{layer name: [gradient of each kernel]}`` as numpy arrays, without changing
    the model (``stateless_call``: BatchNorm statistics and dropout seeds are not advanced)."""
    import keras

    loss_fn = _loss_function(model, loss)
    trainable = list(model.trainable_variables)
    positions = {id(v): i for i, v in enumerate(trainable)}
    non_trainable = [keras.ops.convert_to_tensor(v.value) for v in model.non_trainable_variables]
    x_t = keras.tree.map_structure(keras.ops.convert_to_tensor, x)
    y_t = keras.ops.convert_to_tensor(np.asarray(y))

    def loss_of(values):
        y_pred, _ = model.stateless_call(values, non_trainable, x_t, training=training)
        return loss_fn(y_t, y_pred)

    from kerastk.viz.gradients import scalar_and_gradients

    value, _, grads = scalar_and_gradients(loss_of, [keras.ops.convert_to_tensor(v.value) for v in trainable])
    return value, {layer.name: [grads[positions[id(v)]] for v in _kernels(layer)]
                   for layer in _layers_with_kernels(model)}


def gradient_norms(model, x, y, loss=None, training: bool = True) -> dict:
    """Per-layer L2 norm of d loss / d kernels on one batch: ``{layer name: float}``.

    Args:
        model: a built Keras model (any backend).
        x, y: one batch (numpy); the loss is the batch mean.
        loss: a Keras loss (name, function or object); defaults to the compiled ``model.loss``.
        training: run the forward pass in training mode (BatchNorm on batch statistics, dropout on) as
            fit() does; the model's variables are not changed either way.
    """
    _, grads = loss_and_kernel_gradients(model, x, y, loss, training)
    return {name: float(math.sqrt(sum(float(np.sum(np.square(g.astype(np.float64)))) for g in gs)))
            for name, gs in grads.items()}


def _is_relu(fn) -> bool:
    return getattr(fn, "__name__", None) == "relu"


def relu_layers(model) -> list:
    """The model's layers whose output is a ReLU: Activation("relu"), plain ReLU layers (no negative slope)
    and layers built with activation="relu"."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.ReLU):
            if not layer.negative_slope:
                found.append(layer)
        elif _is_relu(getattr(layer, "activation", None)):
            found.append(layer)
    return found


def dead_relu_fraction(model, x, batch_size: int = 256) -> dict:
    """For each ReLU layer, the fraction of its units that output zero for every sample of ``x``.

    A unit is one feature of the last axis (a Dense unit, a channels-last conv channel: zero at every
    position counts). Top-level layers of a functional or Sequential model. ``{layer name: float}``.
    """
    import keras

    layers = relu_layers(model)
    if not layers:
        return {}
    try:
        probe = keras.Model(model.inputs, [layer.output for layer in layers])
    except (AttributeError, ValueError) as exc:
        raise ValueError(f"dead_relu_fraction needs a functional or Sequential model whose layers have outputs; "
                         f"{model.name!r} gave {type(exc).__name__}: {exc}") from None
    outputs = probe.predict(x, batch_size=batch_size, verbose=0)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    result = {}
    for layer, out in zip(layers, outputs):
        out = np.asarray(out)
        active = np.any(out.reshape(-1, out.shape[-1]) > 0, axis=0)
        result[layer.name] = float(1.0 - np.mean(active))
    return result


# --- the callback ---------------------------------------------------------------------------------------------


def _kernel_values(model) -> dict:
    import keras

    return {layer.name: np.concatenate([keras.ops.convert_to_numpy(v).ravel() for v in _kernels(layer)])
            for layer in _layers_with_kernels(model)}


def _histogram(values: np.ndarray) -> dict:
    counts, edges = np.histogram(values, bins=HIST_BINS)
    return {"counts": counts.tolist(), "edges": [float(e) for e in edges]}


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


class Diagnostics(_keras_callback_base()):
    """Per-epoch weight norms, gradient norms, dead-ReLU fractions and weight histograms on a fixed batch.

    Adds ``grad_norm`` (global gradient norm over all kernels) and ``dead_relu`` (mean dead fraction over the
    ReLU layers, 0 when there are none) to each epoch's logs, so a CSVLogger placed *after* this callback
    records them. At the end of training writes ``out_dir/diagnostics.json`` and ``out_dir/diagnostics.png``;
    with ``tensorboard_dir`` on the TensorFlow backend also writes the scalars and weight histograms as
    TensorBoard summaries (other backends: the PNG only).

    Args:
        x, y: a sample batch (numpy) the gradients and dead fractions are measured on; keep it small (64-512).
        out_dir: folder for the JSON and PNG.
        histograms: record a weight histogram per layer per epoch.
        tensorboard_dir: folder for TensorBoard summaries (TensorFlow backend).
        loss: loss for the gradients; defaults to the model's compiled loss.
        model: the model to inspect, when it is not the one being fit (the runner trains a wrapper with
            augmentation layers in front and inspects the inference model inside it, which shares its weights);
            give `loss` with it.
    """

    def __init__(self, x, y, out_dir, histograms: bool = True, tensorboard_dir=None, loss=None, model=None):
        from kerastk.core.rows import num_rows

        super().__init__()
        rows, y = num_rows(x), np.asarray(y)
        if len(y) == 0 or len(y) != rows:
            raise ValueError(f"Diagnostics needs a non-empty sample batch with as many targets as inputs; received "
                             f"{rows} inputs and {len(y)} targets.")
        self.x, self.y = x, y
        self.out_dir = Path(out_dir)
        self.histograms = bool(histograms)
        self.tensorboard_dir = tensorboard_dir
        self.loss = loss
        self.inspected = model
        self.records: list[dict] = []
        self.initial: dict | None = None
        self._writer = None

    @property
    def _target(self):
        return self.inspected if self.inspected is not None else self.model

    def _measure(self, epoch: int) -> dict:
        grads = gradient_norms(self._target, self.x, self.y, loss=self.loss)
        dead = dead_relu_fraction(self._target, self.x)
        record = {"epoch": epoch, "weight_norm": weight_norms(self._target), "grad_norm": grads, "dead_relu": dead,
                  "global_grad_norm": float(math.sqrt(sum(g * g for g in grads.values()))),
                  "mean_dead_relu": float(np.mean(list(dead.values()))) if dead else 0.0}
        if self.histograms:
            record["histograms"] = {k: _histogram(v) for k, v in _kernel_values(self._target).items()}
        return record

    def on_train_begin(self, logs=None):
        import keras

        self.records = []
        self.initial = self._measure(0)
        if self.tensorboard_dir is not None:
            if keras.backend.backend() != "tensorflow":
                warnings.warn(f"kerastk: TensorBoard histograms need the tensorflow backend (active: "
                              f"{keras.backend.backend()}); the diagnostics go to {self.out_dir / 'diagnostics.png'}"
                              " only.", UserWarning, stacklevel=2)
            elif importlib.util.find_spec("tensorboard") is None:
                warnings.warn("kerastk: TensorBoard histograms need the tensorboard package (pip install "
                              f"tensorboard); the diagnostics go to {self.out_dir / 'diagnostics.png'} only.",
                              UserWarning, stacklevel=2)
            else:
                import tensorflow as tf

                self._writer = tf.summary.create_file_writer(str(self.tensorboard_dir))

    def on_epoch_end(self, epoch, logs=None):
        record = self._measure(epoch + 1)
        self.records.append(record)
        if logs is not None:
            logs["grad_norm"] = record["global_grad_norm"]
            logs["dead_relu"] = record["mean_dead_relu"]
        if self._writer is not None:
            self._write_tensorboard(record)

    def _write_tensorboard(self, record):
        import tensorflow as tf

        with self._writer.as_default(step=record["epoch"]):
            tf.summary.scalar("diagnostics/grad_norm", record["global_grad_norm"])
            tf.summary.scalar("diagnostics/dead_relu", record["mean_dead_relu"])
            for name, value in record["grad_norm"].items():
                tf.summary.scalar(f"grad_norm/{name}", value)
            for name, value in record["weight_norm"].items():
                tf.summary.scalar(f"weight_norm/{name}", value)
            for name, values in _kernel_values(self._target).items():
                tf.summary.histogram(f"weights/{name}", values)
        self._writer.flush()

    def on_train_end(self, logs=None):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        summary = {"epochs": [r["epoch"] for r in self.records], "sample_size": len(self.y),
                   "initial": self.initial, "records": self.records}
        (self.out_dir / "diagnostics.json").write_text(json.dumps(summary) + "\n")
        plot_diagnostics(summary, self.out_dir / "diagnostics.png", title=self.model.name)
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def plot_diagnostics(summary: dict, path, title: str = "") -> Path:
    """The PNG of a diagnostics summary: per-layer weight and gradient norms per epoch, dead-ReLU fraction per
    epoch, and each layer's weight histogram at the first and last recorded epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = ([summary["initial"]] if summary.get("initial") else []) + list(summary["records"])
    epochs = [r["epoch"] for r in records]
    hist_layers = list(records[-1].get("histograms", {})) if records else []
    if len(hist_layers) > 8:  # evenly spaced through the depth
        hist_layers = [hist_layers[i] for i in np.linspace(0, len(hist_layers) - 1, 8).astype(int)]
    cols = 3 if not hist_layers else max(3, min(4, len(hist_layers)))
    rows = 1 + (math.ceil(len(hist_layers) / cols) if hist_layers else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.3 * rows), squeeze=False)
    for ax, key, label in ((axes[0][0], "weight_norm", "weight norm"), (axes[0][1], "grad_norm", "gradient norm"),
                           (axes[0][2], "dead_relu", "dead ReLU fraction")):
        names = list(records[-1][key]) if records else []
        for name in names:
            ax.plot(epochs, [r[key].get(name, np.nan) for r in records], marker=".", label=name)
        if key == "grad_norm" and names and all(r[key][n] > 0 for r in records for n in names):
            ax.set_yscale("log")
        if key == "dead_relu":
            ax.set_ylim(-0.02, 1.02)
            if not names:
                ax.text(0.5, 0.5, "no ReLU layers", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{label} per layer")
        ax.set_xlabel("epoch (0 = before training)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if 0 < len(names) <= 10:
            ax.legend(fontsize=6)
    for ax in axes[0][3:]:
        ax.axis("off")
    first, last = records[0] if records else {}, records[-1] if records else {}
    for i, name in enumerate(hist_layers):
        ax = axes[1 + i // cols][i % cols]
        for record, style in ((first, "first"), (last, "last")):
            h = record.get("histograms", {}).get(name)
            if h:
                ax.stairs(h["counts"], h["edges"], label=f"epoch {record['epoch']}", fill=style == "first",
                          alpha=0.4 if style == "first" else 1.0)
        ax.set_title(f"{name} weights", fontsize=9)
        ax.legend(fontsize=6)
    for j in range(len(hist_layers), (rows - 1) * cols):
        axes[1 + j // cols][j % cols].axis("off")
    if title:
        fig.suptitle(f"diagnostics: {title}")
    from kerastk.viz.curves import save_figure

    save_figure(fig, path, dpi=90)
    return Path(path)


# --- overfit one batch ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class OverfitResult:
    losses: list  # training loss at each step
    final_loss: float
    reached: bool  # final_loss <= target
    message: str  # what happened; when not reached, what to check


def overfit_one_batch(model, x, y, loss=None, optimizer="adam", learning_rate: float = 1e-2, steps: int = 200,
                      target: float = 1e-2) -> OverfitResult:
    """Train on one small batch until the loss is ~zero: a network that cannot memorise 32 samples has a bug.

    Trains a clone of ``model`` (same weights; the model itself is left as it was) with ``train_on_batch``,
    stopping as soon as the loss is at or below ``target``.

    Args:
        model: a built Keras model.
        x, y: the batch (a few dozen samples).
        loss: a Keras loss; defaults to the model's compiled loss.
        optimizer: an optimizer name (built with ``learning_rate``) or a keras.optimizers.Optimizer.
        learning_rate, steps, target: step size, most steps, loss to reach.

    Returns:
        OverfitResult: the loss per step, the final loss, whether it reached ``target`` and a message saying
        what to check when it did not (learning rate, loss against output, regularisation, frozen layers).
    """
    import keras

    from kerastk.core.checks import check_int
    from kerastk.optimizers import make_optimizer

    check_int("steps", steps)
    if not learning_rate >= 0:
        raise ValueError(f"`learning_rate` must be >= 0; received learning_rate={learning_rate!r}.")
    if not target > 0:
        raise ValueError(f"`target` must be a positive loss; received target={target!r}.")
    from kerastk.core.rows import num_rows

    n = num_rows(x)
    if n == 0 or n != len(y):
        raise ValueError(f"overfit_one_batch needs a non-empty batch with one target per sample; received "
                         f"{n} samples and {len(y)} targets.")
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ValueError(f"Model {model.name!r} is not compiled with a loss; pass loss=... .")
    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        original = None
    except (TypeError, ValueError, NotImplementedError):  # subclassed models may not clone: train the model itself, restore its weights after
        clone, original = model, model.get_weights()
    try:
        clone.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=loss)
        losses = []
        for _ in range(steps):
            value = clone.train_on_batch(x, y, return_dict=True)["loss"]
            losses.append(float(value))
            if not np.isfinite(losses[-1]) or losses[-1] <= target:
                break
    finally:
        if original is not None:
            model.set_weights(original)
    final = losses[-1]
    reached = bool(np.isfinite(final) and final <= target)
    if reached:
        message = f"reached loss {final:.3g} <= {target:g} in {len(losses)} steps: the model can fit one batch."
        return OverfitResult(losses, final, True, message)
    checks = []
    if not clone.trainable_variables:
        checks.append("the model has no trainable weights: every layer is frozen (trainable=False); unfreeze them")
    if learning_rate == 0:
        checks.append("the learning rate is 0")
    if not np.isfinite(final):
        checks.append("the loss diverged to NaN/inf: lower the learning rate or add gradient clipping")
    elif final >= 0.9 * losses[0]:
        checks.append("the loss barely moved: check the learning rate (try 10x larger and smaller) and that the "
                      "gradients reach every layer")
    checks += [("that the loss matches the output layer (softmax + sparse_categorical_crossentropy with integer "
                "labels, or from_logits=True for a linear output; sigmoid + binary_crossentropy for 0/1 targets)"),
               "regularisation that fights memorisation (large L2, dropout, label smoothing)",
               "that the labels are the right targets for these inputs and the model has enough capacity"]
    message = (f"did not reach loss {target:g} in {len(losses)} steps (first {losses[0]:.4g}, final {final:.4g}). "
               "Check: " + "; ".join(checks) + ".")
    return OverfitResult(losses, final, False, message)
