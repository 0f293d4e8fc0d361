"""Learning-rate policies and the LR range test: what Keras lacks around its own schedules and callbacks.

Keras ships step decay (``PiecewiseConstantDecay``), ``ExponentialDecay``, ``CosineDecay`` and SGDR
(``CosineDecayRestarts``); kerastk adds the cyclical policies of Smith (2017) as :class:`CyclicLR`, a linear warm-up
in front of any schedule (:class:`LinearWarmup`), :func:`make_schedule` (one name -> a schedule sized to a run:
the recipes' ``--lr-schedule``), :class:`LearningRateLogger` (the optimizer's current rate in each epoch's logs, so
history.csv and curves.png show it) and the LR range test (:class:`LRFinder`, :func:`lr_find`).

    opt = keras.optimizers.Adam(make_schedule("triangular", 1e-3, steps_per_epoch=100, epochs=20))
    result = lr_find(model, x, y, loss="sparse_categorical_crossentropy")   # result.suggestion, result.plot(...)
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import keras
import numpy as np
from keras import ops

from kerastk.core.checks import check_int

SCHEDULES = ("plateau", "constant", "step", "exponential", "cosine", "sgdr", "triangular", "triangular2",
             "exp_range")
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@keras.saving.register_keras_serializable(package="kerastk")
class CyclicLR(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical learning rate (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017).

    The rate moves linearly from ``base_lr`` to ``max_lr`` over ``step_size`` steps and back, cycle after cycle:

        cycle = floor(1 + step / (2 * step_size));  x = |step / step_size - 2 * cycle + 1|
        lr = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale

    with ``scale`` = 1 ("triangular"), 1 / 2**(cycle - 1) ("triangular2": the amplitude halves each cycle) or
    gamma**step ("exp_range"). Smith suggests a half cycle of 2-10 epochs and ``max_lr`` from an LR range test,
    ``base_lr`` = ``max_lr`` / 3 or / 4.
    """

    def __init__(self, base_lr: float, max_lr: float, step_size: int, mode: str = "triangular",
                 gamma: float = 1.0, name: str = "CyclicLR"):
        super().__init__()
        if mode not in CYCLIC_MODES:
            raise ValueError(f"CyclicLR mode must be one of {CYCLIC_MODES}; received mode={mode!r}.")
        if not (0 < base_lr <= max_lr):
            raise ValueError(f"CyclicLR needs 0 < base_lr <= max_lr; received base_lr={base_lr}, max_lr={max_lr}.")
        if isinstance(step_size, bool) or int(step_size) != step_size or step_size < 1:
            raise ValueError(f"CyclicLR step_size (steps per half cycle) must be a positive integer; "
                             f"received {step_size!r}.")
        if not 0 < gamma <= 1:
            raise ValueError(f"CyclicLR gamma must be in (0, 1]; received {gamma}.")
        self.base_lr, self.max_lr, self.step_size = float(base_lr), float(max_lr), int(step_size)
        self.mode, self.gamma, self.name = mode, float(gamma), name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        cycle = ops.floor(1.0 + step / (2.0 * self.step_size))
        x = ops.abs(step / self.step_size - 2.0 * cycle + 1.0)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1.0 / ops.power(2.0, cycle - 1.0)
        else:
            scale = ops.power(self.gamma, step)
        return self.base_lr + (self.max_lr - self.base_lr) * ops.maximum(0.0, 1.0 - x) * scale

    def get_config(self):
        return {"base_lr": self.base_lr, "max_lr": self.max_lr, "step_size": self.step_size, "mode": self.mode,
                "gamma": self.gamma, "name": self.name}


@keras.saving.register_keras_serializable(package="kerastk")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """A linear ramp from ``start_lr`` to ``after(0)`` over ``warmup_steps`` steps, then ``after(step - warmup_steps)``.

    Large learning rates early in training (big batches, Transformers, no BatchNorm) can throw the weights into a
    bad region before the statistics settle; a few epochs of warm-up avoid that (Goyal et al. 2017).
    """

    def __init__(self, after, warmup_steps: int, start_lr: float = 0.0, name: str = "LinearWarmup"):
        super().__init__()
        if isinstance(warmup_steps, bool) or int(warmup_steps) != warmup_steps or warmup_steps < 1:
            raise ValueError(f"LinearWarmup warmup_steps must be a positive integer; received {warmup_steps!r}.")
        if isinstance(after, dict):
            after = keras.optimizers.schedules.deserialize(after)
        self.after, self.warmup_steps, self.start_lr, self.name = after, int(warmup_steps), float(start_lr), name

    def _after(self, step):
        return self.after(step) if callable(self.after) else ops.convert_to_tensor(float(self.after))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        target = ops.cast(self._after(ops.convert_to_tensor(0.0)), "float32")
        ramp = self.start_lr + (target - self.start_lr) * (step + 1.0) / self.warmup_steps
        rest = ops.cast(self._after(ops.maximum(step - self.warmup_steps, 0.0)), "float32")
        return ops.where(step < self.warmup_steps, ramp, rest)

    def get_config(self):
        after = self.after
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = keras.optimizers.schedules.serialize(after)
        return {"after": after, "warmup_steps": self.warmup_steps, "start_lr": self.start_lr, "name": self.name}


def make_schedule(name: str, learning_rate: float, steps_per_epoch: int, epochs: int, warmup_epochs: int = 0):
    """The learning-rate policy called `name`, sized to a run of `epochs` x `steps_per_epoch` steps.

    Returns a float (for "plateau" — the runner's ReduceLROnPlateau then lowers it — and "constant") or a Keras
    ``LearningRateSchedule``:

    - "step": x0.1 at 50% and 75% of the epochs (the ResNet / CIFAR policy);
    - "exponential": a smooth decay to learning_rate / 100 at the last epoch (Keras ExponentialDecay);
    - "cosine": cosine decay to learning_rate / 100 (Keras CosineDecay);
    - "sgdr": cosine with warm restarts, periods of T, 2T, 4T ... epochs with T ~ epochs / 7, so three restarts
      fit the run (Keras CosineDecayRestarts; Loshchilov & Hutter 2017);
    - "triangular", "triangular2", "exp_range": CyclicLR between learning_rate / 4 and learning_rate with a half
      cycle of 2 epochs (exp_range: the amplitude shrinks to 10% over the run).

    ``warmup_epochs`` > 0 puts a linear warm-up from 0 in front (not with "plateau").
    """
    if name not in SCHEDULES:
        raise ValueError(f"Unknown learning-rate schedule {name!r}; expected one of {', '.join(SCHEDULES)}.")
    check_int("steps_per_epoch", steps_per_epoch)
    check_int("epochs", epochs)
    check_int("warmup_epochs", warmup_epochs, minimum=0)
    if not learning_rate > 0:
        raise ValueError(f"make_schedule: learning_rate must be > 0; received {learning_rate!r}.")
    schedules = keras.optimizers.schedules
    lr, total = float(learning_rate), steps_per_epoch * epochs
    if name == "plateau":
        if warmup_epochs:
            raise ValueError("Warm-up needs a schedule; 'plateau' lowers a constant rate on plateaus. Pick another "
                             "--lr-schedule (e.g. cosine) or drop --warmup-epochs.")
        return lr
    decay_steps = max(total - warmup_epochs * steps_per_epoch, 1)
    if name == "constant":
        schedule = lr
    elif name == "step":
        boundaries = sorted({max(1, int(decay_steps * 0.5)), max(2, int(decay_steps * 0.75))})
        schedule = schedules.PiecewiseConstantDecay(boundaries, [lr, lr * 0.1, lr * 0.01][: len(boundaries) + 1])
    elif name == "exponential":
        schedule = schedules.ExponentialDecay(lr, decay_steps=decay_steps, decay_rate=0.01)
    elif name == "cosine":
        schedule = schedules.CosineDecay(lr, decay_steps=decay_steps, alpha=0.01)
    elif name == "sgdr":
        first = max(1, round(max(epochs - warmup_epochs, 1) / 7)) * steps_per_epoch
        schedule = schedules.CosineDecayRestarts(lr, first_decay_steps=first, t_mul=2.0, m_mul=1.0, alpha=0.01)
    else:
        gamma = 0.1 ** (1.0 / decay_steps) if name == "exp_range" else 1.0
        schedule = CyclicLR(lr / 4, lr, step_size=2 * steps_per_epoch, mode=name, gamma=gamma)
    if warmup_epochs:
        schedule = LinearWarmup(schedule, warmup_epochs * steps_per_epoch)
    return schedule


def schedule_values(schedule, steps) -> np.ndarray:
    """The learning rate a schedule (or a float) gives at each step in `steps` (an int = range(steps))."""
    steps = np.arange(steps) if np.isscalar(steps) else np.asarray(steps)
    if not callable(schedule):
        return np.full(len(steps), float(schedule), dtype=np.float64)
    try:  # Keras's schedules and kerastk's are element-wise: one call for all the steps
        values = np.asarray(ops.convert_to_numpy(schedule(ops.convert_to_tensor(steps, "float32"))), np.float64)
        if values.shape == steps.shape:
            return values
    except Exception:  # a schedule written for scalar steps (e.g. Keras's step decay on torch): step by step
        pass
    return np.array([float(ops.convert_to_numpy(schedule(int(s)))) for s in steps], dtype=np.float64)


def current_learning_rate(optimizer) -> float:
    """The rate the optimizer applies at its current iteration (a schedule is evaluated there)."""
    return float(ops.convert_to_numpy(optimizer.learning_rate))


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the learning rate each epoch started with into its logs as ``learning_rate`` (history.csv, curves).

    Keras's ReduceLROnPlateau logs the rate it manages (the one the epoch ran at); with a schedule nothing does.
    Place it before CSVLogger.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._rate = current_learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._rate


# --- the LR range test --------------------------------------------------------------------------------------


@dataclasses.dataclass
class LRFindResult:
    lrs: np.ndarray  # learning rate of each step taken
    losses: np.ndarray  # that step's minibatch loss
    smoothed: np.ndarray  # centred moving average of the losses (a quarter of a decade wide)
    suggestion: float  # the rate at the steepest descent of the smoothed loss against log10(lr)
    min_loss_lr: float  # the rate at the lowest smoothed loss
    diverged: bool  # stopped early because the loss blew up
    png: Path | None = None

    def to_dict(self) -> dict:
        return {"suggestion": self.suggestion, "min_loss_lr": self.min_loss_lr, "diverged": self.diverged,
                "steps": int(len(self.lrs)), "lrs": self.lrs.tolist(), "losses": self.losses.tolist(),
                "smoothed": self.smoothed.tolist()}

    def plot(self, path, title: str = "LR range test") -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.plot(self.lrs, self.losses, color="0.75", lw=0.8, label="minibatch loss")
        ax.plot(self.lrs, self.smoothed, lw=1.8, label="smoothed")
        ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"steepest descent {self.suggestion:.2e}")
        ax.axvline(self.min_loss_lr, color="tab:green", ls=":", label=f"lowest loss {self.min_loss_lr:.2e}")
        ax.set_xscale("log")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if finite.size:  # keep the diverging tail from flattening the interesting part
            ax.set_ylim(float(finite.min()) * 0.95 if finite.min() > 0 else None,
                        float(min(finite.max(), finite[0] * 2.5)) if finite[0] > 0 else None)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        from kerastk.viz.curves import save_figure

        save_figure(fig, path)
        self.png = Path(path)
        return self.png


class LRFinder:
    """The LR range test (Smith 2017; "LR finder" in fastai): grow the rate geometrically each minibatch from
    ``start_lr`` to ``end_lr`` over ``num_steps`` steps, record each step's loss, stop when the smoothed loss exceeds
    ``diverge_factor`` x its minimum (or is not finite), restore the weights and suggest the rate at the steepest
    descent of the smoothed loss against log10(lr).

    It trains with ``train_on_batch`` (the model must be compiled), setting the optimizer's rate before each step
    and resetting the loss tracker so every value is one minibatch's loss: the same code on every backend, JAX's
    jitted step included. The weights and the optimizer's state (rate, moments, iteration) are put back
    afterwards.
    """

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
                 smoothing: float = 0.9, diverge_factor: float = 4.0, skip_start: int = 5):
        if not 0 < start_lr < end_lr:
            raise ValueError(f"LRFinder needs 0 < start_lr < end_lr; received start_lr={start_lr}, end_lr={end_lr}.")
        check_int("num_steps", num_steps, minimum=10)
        if not 0 <= smoothing < 1:
            raise ValueError(f"LRFinder smoothing must be in [0, 1); received {smoothing}.")
        self.start_lr, self.end_lr, self.num_steps = float(start_lr), float(end_lr), num_steps
        self.smoothing, self.diverge_factor, self.skip_start = smoothing, float(diverge_factor), skip_start

    def rates(self) -> np.ndarray:
        return self.start_lr * (self.end_lr / self.start_lr) ** (np.arange(self.num_steps) / (self.num_steps - 1))

    def find(self, model, x, y, batch_size: int = 32, seed: int = 0) -> LRFindResult:
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
            raise ValueError("LRFinder.find needs a compiled model (model.compile(optimizer=..., loss=...)).")
        if callable(getattr(model.optimizer, "_learning_rate", None)):
            raise ValueError("LRFinder sets the learning rate itself: compile with a float learning rate, "
                             "not a schedule.")
        from kerastk.core.rows import num_rows, take_rows

        optimizer = model.optimizer
        if not optimizer.built:  # built now, so its state (moments, iteration, rate) can be put back afterwards
            optimizer.build(model.trainable_variables)
        saved = [np.array(w) for w in model.get_weights()]
        saved_optimizer = [np.array(keras.ops.convert_to_numpy(v)) for v in optimizer.variables]
        rows = num_rows(x)
        rng = np.random.default_rng(seed)
        order = np.concatenate([rng.permutation(rows) for _ in range(-(-self.num_steps * batch_size // rows))])
        lrs, losses, smoothed = [], [], []
        avg, best, diverged = 0.0, math.inf, False
        try:
            for i, lr in enumerate(self.rates()):
                idx = np.sort(order[i * batch_size:(i + 1) * batch_size])
                optimizer.learning_rate = float(lr)
                model.reset_metrics()
                out = model.train_on_batch(take_rows(x, idx), np.asarray(y)[idx], return_dict=True)
                loss = float(np.ravel(ops.convert_to_numpy(out["loss"]))[0])
                avg = self.smoothing * avg + (1 - self.smoothing) * loss
                smooth = avg / (1 - self.smoothing ** (i + 1))
                lrs.append(float(lr))
                losses.append(loss)
                smoothed.append(smooth)
                if not math.isfinite(smooth) or (i > self.skip_start and smooth > self.diverge_factor * best):
                    diverged = True
                    break
                best = min(best, smooth)
        finally:
            model.set_weights(saved)
            for v, value in zip(optimizer.variables, saved_optimizer):
                v.assign(value)
        return _suggest(np.array(lrs), np.array(losses), np.array(smoothed), diverged, self.skip_start)


def _suggest(lrs, losses, ema, diverged, skip_start) -> LRFindResult:
    """Steepest descent of the loss per decade of LR, searched up to the lowest loss.

    The causal moving average that detects divergence lags the rate by ~1/(1 - smoothing) steps (most of a
    decade on a short test), so the suggestion uses a centred moving average of the raw losses instead, and
    slopes over a quarter of a decade so minibatch noise does not make a steep point.
    """
    finite = np.isfinite(losses)
    if finite.sum() < 3:
        raise ValueError(f"The LR range test recorded {int(finite.sum())} finite losses; lower start_lr.")
    n_ok = int(np.argmin(finite)) if not finite.all() else len(losses)
    lrs, losses, ema = lrs[:n_ok], losses[:n_ok], ema[:n_ok]
    decades = np.log10(lrs)
    per_decade = (len(lrs) - 1) / max(decades[-1] - decades[0], 1e-12)
    half = max(1, int(round(per_decade / 8)))  # the window and the slope span are a quarter of a decade
    padded = np.pad(losses, half, mode="edge")
    smoothed = np.convolve(padded, np.ones(2 * half + 1) / (2 * half + 1), mode="valid")
    lowest = int(np.argmin(smoothed))
    lo = min(skip_start, max(lowest - 2, 0))
    idx = np.arange(lo, max(lowest, lo + 1) + 1)
    a, b = np.clip(idx - half, 0, len(lrs) - 1), np.clip(idx + half, 0, len(lrs) - 1)
    slope = (smoothed[b] - smoothed[a]) / np.maximum(decades[b] - decades[a], 1e-12)
    steepest = int(idx[np.argmin(slope)])
    return LRFindResult(lrs, losses, smoothed, float(lrs[steepest]), float(lrs[lowest]), diverged)


def lr_find(model, x, y, *, loss=None, optimizer="adam", metrics=None, start_lr: float = 1e-7,
            end_lr: float = 10.0, num_steps: int = 100, batch_size: int = 32, out=None, seed: int = 0,
            verbose: bool = True) -> LRFindResult:
    """Run the LR range test on `model` and return the result; the model's weights are left as they were.

    `loss` (and `optimizer`, a name or a Keras optimizer whose config is copied) compile the model first; with
    ``loss=None`` the model's existing compilation is used. ``out``: a folder for lr_find.png and lr_find.json.
    """
    import json

    from kerastk.optimizers import make_optimizer

    if loss is not None:
        model.compile(optimizer=make_optimizer(optimizer, start_lr), loss=loss, metrics=list(metrics or []))
    result = LRFinder(start_lr, end_lr, num_steps).find(model, x, y, batch_size=batch_size, seed=seed)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result.plot(out / "lr_find.png", title=f"LR range test: {model.name}")
        (out / "lr_find.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    if verbose:
        stop = "stopped at divergence" if result.diverged else "ran the whole range"
        print(f"[kerastk] LR range test on {model.name}: {len(result.lrs)} steps ({stop}); steepest descent at "
              f"lr {result.suggestion:.3g}, lowest loss at {result.min_loss_lr:.3g}"
              + (f"; curve {result.png}" if result.png else ""), file=sys.stderr)
    return result

