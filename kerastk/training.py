"""The recipe runner: compile, fit with Keras's own callbacks, evaluate, save, plot, export, validate, report.

    result = kerastk.training.run(model, data, "mnist_lenet5", loss="sparse_categorical_crossentropy",
                                  metrics=["accuracy"], epochs=20)

Everything for a run lands in ``<out>/<name>/``: model.keras, best.keras (checkpoint), history.csv, curves.png,
model.onnx + card.json (validated in onnxruntime), quantization_data.npz (calibration rows and the test split,
for int8 quantisation), report.md. A run interrupted part-way resumes from its last
finished epoch when started again (Keras's BackupAndRestore, kept in ``backup/`` until the run completes).

The training toolbox (:class:`TrainingOptions`; every recipe's command-line flags) switches on a learning-rate
schedule instead of the plateau reduction, warm-up, weight EMA, label smoothing, gradient clipping, L1/L2 penalties,
decoupled weight decay, per-epoch diagnostics, data parallelism and the LR range test — all with Keras's own pieces.

Threads: the runner keeps each backend's default (one thread per core). On 2 cores a second busy process
slows torch training far more than TensorFlow's (about 12x against 1.6x measured here), so time runs on a
quiet machine.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from kerastk.core.errors import KerastkError
from kerastk.core.rows import num_rows, take_rows  # noqa: F401 - public here too (recipes)
from kerastk.metrics import task_metrics
from kerastk.optimizers import make_optimizer, optimizer_learning_rate, weight_penalty, with_label_smoothing  # noqa: F401 - public here too (recipes)

DEFAULT_OUT = "export"


@dataclasses.dataclass
class RunResult:
    name: str
    run_dir: Path
    history: dict  # column -> list per epoch (from history.csv, so a resumed run has every epoch)
    epochs_run: int  # epochs trained by this call (fewer than the history when the run resumed)
    test_metrics: dict  # Keras model on the test split (evaluate() plus numpy task metrics)
    onnx_metrics: dict | None  # ONNX model on the test split (same numpy task metrics)
    export: object | None  # kerastk.deploy.ExportResult
    seconds: float
    train_seconds: float

    @property
    def accuracy(self):
        return self.test_metrics.get("accuracy")


@dataclasses.dataclass
class TrainingOptions:
    """Switches every recipe takes from the command line (see :func:`recipe_parser`); ``run(options=...)``."""

    learning_rate: float | None = None  # replaces the recipe's own rate when set
    lr_schedule: str = "plateau"  # kerastk.callbacks.SCHEDULES; "plateau" = ReduceLROnPlateau on the monitor
    warmup_epochs: int = 0  # linear warm-up in front of the schedule
    ema: bool = False  # optimizer use_ema: validate, checkpoint and export the moving average of the weights
    ema_momentum: float = 0.99
    label_smoothing: float = 0.0  # cross-entropy losses only
    clipnorm: float | None = None  # clip each gradient to this L2 norm
    l1: float = 0.0  # penalties on every kernel (not biases, not normalisation parameters)
    l2: float = 0.0
    weight_decay: float | None = None  # decoupled weight decay (AdamW-style) in any Keras optimizer
    diagnostics: bool = False  # per-epoch weight / gradient norms, dead ReLUs, histograms (kerastk.diagnostics)
    lr_find: bool = False  # run the LR range test and stop instead of training
    distribute: int | None = None  # devices for data parallelism (kerastk.distribute), set up by parse_recipe_args

    def check(self):
        from kerastk.callbacks import SCHEDULES
        from kerastk.core.checks import check_int

        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"Unknown lr_schedule {self.lr_schedule!r}; expected one of {', '.join(SCHEDULES)}.")
        ranges = {"label_smoothing": (0.0, 1.0, False), "ema_momentum": (0.0, 1.0, False), "l1": (0.0, None, True),
                  "l2": (0.0, None, True), "weight_decay": (0.0, None, True), "clipnorm": (0.0, None, False),
                  "learning_rate": (0.0, None, False)}
        for name, (lo, hi, closed) in ranges.items():
            value = getattr(self, name)
            if value is None or (name == "label_smoothing" and value == 0):
                continue
            ok = (value >= lo if closed else value > lo) and (hi is None or value < hi)
            if not ok:
                bound = f"in [{lo}, {hi})" if hi is not None else (f">= {lo}" if closed else f"> {lo}")
                raise ValueError(f"Training option {name} must be {bound}; received {value!r}.")
        check_int("warmup_epochs", self.warmup_epochs, minimum=0)
        if self.warmup_epochs and self.lr_schedule == "plateau":
            raise ValueError("Warm-up needs a schedule; 'plateau' lowers a constant rate on plateaus. Pick another "
                             "lr_schedule (e.g. cosine) or drop warmup_epochs.")
        return self

    def changed(self) -> dict:
        """The options that differ from the defaults (what the card and report record)."""
        default = TrainingOptions()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


def read_history(csv_path) -> dict:
    """history.csv as {column: [float per epoch]}."""
    if not Path(csv_path).is_file():
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = rows[0].keys() if rows else []
    return {c: [float(r[c]) if r[c] not in ("", None) else float("nan") for r in rows] for c in columns}


def plot_history(history: dict, path, title: str = "") -> Path:
    """Loss, metrics and learning rate per epoch, one panel each, train and validation together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    bases = [k for k in history if k not in ("epoch", "learning_rate") and not k.startswith("val_")]
    panels = bases + (["learning_rate"] if "learning_rate" in history else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, key in zip(axes[0], panels):
        ax.plot(epochs, history[key], marker=".", label="train" if key != "learning_rate" else "lr")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker=".", label="validation")
        if key == "learning_rate" or key == "loss" and min(history[key]) > 0:
            ax.set_yscale("log")
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _callbacks(run_dir: Path, monitor, patience, lr_patience, lr_factor, min_lr, tensorboard, extra,
               plateau=True, ema=False, diagnostics=None):
    import keras

    from kerastk.callbacks import LearningRateLogger

    cbs = [
        # Backup first: on resume it restores weights, optimizer state and the epoch counter.
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        # Before CSVLogger, so the learning rate lands in history.csv: ReduceLROnPlateau logs the rate it manages,
        # LearningRateLogger the rate a schedule gives.
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=lr_factor, patience=lr_patience, min_lr=min_lr)
        if plateau else LearningRateLogger(),
    ]
    if diagnostics is not None:  # before CSVLogger (it puts its scalars into the epoch logs) and before the EMA
        cbs.append(diagnostics)   # swap: it looks at the weights being trained
    if ema:  # the EMA weights are in the model for validation and at each epoch's end (checkpoint, early stopping)
        cbs.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    cbs += [
        keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor=monitor, save_best_only=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(str(run_dir / "logs")))
    return cbs + list(extra or [])


class LRFindFinished(KerastkError):
    """Raised by :func:`run` after an LR range test (``--lr-find``) to stop the recipe there: the recipe built the
    model and data, the range test replaced its training. ``.result`` is the
    :class:`kerastk.callbacks.LRFindResult`; ``.code`` the exit status it stands for (0). A recipe's entry point,
    :func:`recipe_main`, ends there with that status; code calling :func:`run` catches it. The range test alone
    is :func:`lr_range_test`."""

    code = 0

    def __init__(self, result):
        super().__init__(f"LR range test done (suggested learning rate {result.suggestion:.3g}); not trained")
        self.result = result


def recipe_main(main, argv=None):
    """A recipe's entry point (``if __name__ == "__main__": recipe_main(main)``): ``main(argv)``, where an LR range
    test that replaced the training (``--lr-find``) ends the recipe normally. Returns what main returned, or the
    LRFindResult."""
    try:
        return main(argv)
    except LRFindFinished as stop:
        return stop.result


@dataclasses.dataclass
class RunSetup:
    """What :func:`prepare` settles before anything trains: the run folder, the model that trains (the model,
    or the model behind its augmentation layers), the loss (with label smoothing) and the options."""

    model: object
    train_model: object
    data: object
    name: str
    run_dir: Path
    loss: object
    options: TrainingOptions
    start: float


@dataclasses.dataclass
class FitOutcome:
    history: dict  # from history.csv (every epoch, a resumed run's earlier ones included)
    epochs_run: int
    train_seconds: float
    evaluated: dict  # train_model.evaluate on the test split


def prepare(model, data, name: str, *, loss, epochs: int, batch_size: int, patience: int, out, seed: int,
            augmentation=None, options: TrainingOptions | None = None) -> RunSetup:
    """Check the arguments and the data, then set up the run folder (a resumed run keeps its history), the seed,
    the training model and the loss. Every check that can refuse the run comes before the run folder is touched:
    a refused run must not delete an earlier run's history.csv."""
    from kerastk.backend import check_backend_env, set_seed

    check_backend_env()
    import keras

    for arg, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be a positive integer; received {arg}={value!r}.")
    options = (options or TrainingOptions()).check()
    from kerastk.diagnostics import check_inputs

    check_inputs(data.x_train, "x_train")
    check_data_fits(model, data)
    start = time.perf_counter()
    run_dir = Path(out) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "backup").exists():  # a fresh run: history from an earlier completed run must not be appended to
        (run_dir / "history.csv").unlink(missing_ok=True)
    else:
        print(f"[kerastk] resuming {name} from {run_dir / 'backup'}", file=sys.stderr)
    set_seed(seed)
    train_model = model
    if augmentation is not None:  # shares the model's weights; augmentation layers are identity at inference
        inputs = keras.Input(model.input_shape[1:], name=model.inputs[0].name)
        train_model = keras.Model(inputs, model(augmentation(inputs)), name=f"{model.name}_augmented")
    return RunSetup(model, train_model, data, name, run_dir, with_label_smoothing(loss, options.label_smoothing),
                    options, start)


def lr_range_test(setup: RunSetup, *, optimizer="adam", metrics=("accuracy",), batch_size: int = 32, seed: int = 0):
    """The LR range test on a prepared run (kerastk.callbacks.lr_find): lr_find.png / lr_find.json in the run
    folder, the suggestion printed; returns the LRFindResult."""
    from kerastk.callbacks import lr_find

    found = lr_find(setup.train_model, setup.data.x_train, setup.data.y_train, loss=setup.loss, optimizer=optimizer,
                    metrics=list(metrics), batch_size=batch_size, out=setup.run_dir, seed=seed)
    print(f"{setup.name}: LR range test suggests learning rate {found.suggestion:.3g} (steepest descent; lowest loss "
          f"at {found.min_loss_lr:.3g}); curve {found.png}. Train with --learning-rate {found.suggestion:.2g}.")
    return found


def fit(setup: RunSetup, *, metrics, optimizer, learning_rate, epochs: int, batch_size: int, monitor: str,
        patience: int, lr_patience: int, lr_factor: float, min_lr: float, tensorboard: bool, callbacks=None,
        verbose: int = 2) -> FitOutcome:
    """Compile (optimizer, schedule, clipping, weight decay, EMA), fit with the runner's callbacks and the
    L1/L2 penalty, then evaluate the training model on the test split."""
    from kerastk.callbacks import make_schedule

    options, data, run_dir = setup.options, setup.data, setup.run_dir
    rate = learning_rate if isinstance(optimizer, str) else None  # None: an instance keeps its own rate
    if options.lr_schedule != "plateau" or options.learning_rate is not None:
        base_lr = options.learning_rate or optimizer_learning_rate(optimizer, learning_rate)
        steps_per_epoch = -(-num_rows(data.x_train) // batch_size)
        rate = make_schedule(options.lr_schedule, base_lr, steps_per_epoch, epochs, options.warmup_epochs)
    setup.train_model.compile(optimizer=make_optimizer(optimizer, rate, clipnorm=options.clipnorm,
                                                       weight_decay=options.weight_decay,
                                                       use_ema=options.ema or None,
                                                       ema_momentum=options.ema_momentum if options.ema else None),
                              loss=setup.loss, metrics=list(metrics))
    diagnostics = None
    if options.diagnostics:
        from kerastk.diagnostics import Diagnostics

        probe = np.linspace(0, num_rows(data.x_train) - 1, min(256, num_rows(data.x_train))).astype(int)
        diagnostics = Diagnostics(take_rows(data.x_train, probe), data.y_train[probe], run_dir, loss=setup.loss,
                                  model=setup.model, tensorboard_dir=run_dir / "logs" if tensorboard else None)
    cbs = _callbacks(run_dir, monitor, patience, lr_patience, lr_factor, min_lr, tensorboard, callbacks,
                     plateau=options.lr_schedule == "plateau", ema=options.ema, diagnostics=diagnostics)
    t0 = time.perf_counter()
    with weight_penalty(setup.train_model, options.l1, options.l2):
        fitted = setup.train_model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                                       epochs=epochs, batch_size=batch_size, callbacks=cbs, verbose=verbose,
                                       shuffle=True)
        train_seconds = time.perf_counter() - t0
        evaluated = setup.train_model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0, return_dict=True)
    return FitOutcome(read_history(run_dir / "history.csv"), len(fitted.history.get("loss", [])), train_seconds,
                      evaluated)


def _scorer(data, evaluate_fn, threshold):
    """Test metrics from test-split predictions: `evaluate_fn` when given, else the task's (kerastk.metrics)."""
    def score(predictions):
        if evaluate_fn is not None:
            return dict(evaluate_fn(predictions))
        return task_metrics(data.task, data.y_test, predictions, threshold)

    return score


def evaluate(setup: RunSetup, outcome: FitOutcome, score) -> tuple[dict, np.ndarray]:
    """The Keras model's test metrics (evaluate()'s figures, then the numpy task metrics) and its test-split
    predictions."""
    keras_pred = np.asarray(setup.model.predict(setup.data.x_test, batch_size=256, verbose=0))
    return {**{k: float(v) for k, v in outcome.evaluated.items()}, **score(keras_pred)}, keras_pred


def save(setup: RunSetup, outcome: FitOutcome) -> None:
    """model.keras and curves.png in the run folder."""
    from kerastk.backend import active_backend

    setup.model.save(setup.run_dir / "model.keras")
    plot_history(outcome.history, setup.run_dir / "curves.png", title=f"{setup.name} ({active_backend()})")


def export_model(setup: RunSetup, score, keras_pred, test_metrics: dict, *, threshold: float, seed: int):
    """Export to ONNX (validated on the first 64 test rows), score the file on the test split, write the card
    and the quantisation data. Returns (ExportResult or None, ONNX test metrics or None, ExportError or None):
    a failed export is reported before it is raised."""
    from kerastk.core.rundir import QUANTIZATION_DATA, save_quantization_data
    from kerastk.deploy import OnnxModel, export_onnx, write_card
    from kerastk.deploy.export import ExportError

    data, run_dir = setup.data, setup.run_dir
    try:
        export_result = export_onnx(setup.model, run_dir / "model.onnx", inputs=take_rows(data.x_test, 64))
    except ExportError as exc:
        return None, None, exc
    onnx_pred = OnnxModel(run_dir / "model.onnx", card={}).predict(data.x_test)
    onnx_metrics = score(onnx_pred)
    onnx_metrics["max_abs_diff_test_split"] = float(np.max(np.abs(onnx_pred - keras_pred)))
    write_card(run_dir / "model.onnx", name=setup.name, export_result=export_result,
               preprocessing=data.info["preprocessing"], class_names=data.class_names, task=data.task,
               metrics_keras=test_metrics, metrics_onnx=onnx_metrics,
               extra={"dataset": {"name": data.name, "source": data.info["source"],
                                  "test_samples": num_rows(data.x_test)},
                      "input_shape": list(data.input_shape), "decision_threshold": threshold,
                      "training": training_record(setup.options),
                      "quantization_data": QUANTIZATION_DATA,
                      **token_info(data.info)})
    # calibration rows and the test split, for `kerastk export --quantize` (kerastk.deploy.quantize)
    save_quantization_data(run_dir, data, seed=seed)
    return export_result, onnx_metrics, None


def run(model, data, name: str, *, loss, metrics=("accuracy",), optimizer="adam", learning_rate=1e-3,
        epochs: int = 20, batch_size: int = 32, out=DEFAULT_OUT, monitor: str = "val_loss", patience: int = 5,
        lr_patience: int = 2, lr_factor: float = 0.5, min_lr: float = 1e-6, tensorboard: bool = False,
        export: bool = True, threshold: float = 0.5, seed: int = 0, verbose: int = 2, callbacks=None,
        augmentation=None, evaluate_fn=None, notes: str = "", options: TrainingOptions | None = None) -> RunResult:
    """Train `model` on `data` (a kerastk.data.Dataset) and leave a complete run folder: :func:`prepare`,
    :func:`fit`, :func:`evaluate`, :func:`save`, :func:`export_model`, :func:`write_report`.

    Args:
        name: run name; artifacts go to `<out>/<name>/`.
        loss, metrics, optimizer, learning_rate: passed to `model.compile` (names or Keras objects).
        epochs, batch_size: fit settings; early stopping may end the run sooner (best weights restored).
        monitor, patience: EarlyStopping; lr_patience, lr_factor, min_lr: ReduceLROnPlateau.
        tensorboard: also write TensorBoard logs to `<run>/logs`.
        export: export to ONNX, validate it and write card.json (the run fails if no route validates).
        threshold: decision threshold for single-unit binary outputs (0.5 for sigmoid, 0.0 for a raw score).
        callbacks: extra Keras callbacks appended after the runner's own.
        augmentation: Keras preprocessing layers (e.g. kerastk.data.augment.augmentation()) applied in front of
            the model during training only; the saved and exported model is `model` alone, without them.
        evaluate_fn: ``evaluate_fn(predictions) -> dict`` of test metrics, called on the Keras model's and the
            ONNX file's test-split outputs instead of the task's default metrics (e.g. mAP for a detector
            whose training targets are encoded grids, not the boxes it is scored on).
        notes: a paragraph for report.md (what the recipe shows).
        options: the training toolbox (:class:`TrainingOptions`, from the recipe's flags): a schedule replaces
            ReduceLROnPlateau; ``lr_find`` runs :func:`lr_range_test` (lr_find.png / lr_find.json) and raises
            :class:`LRFindFinished` instead of training.
    """
    from kerastk.backend import thread_settings

    setup = prepare(model, data, name, loss=loss, epochs=epochs, batch_size=batch_size, patience=patience, out=out,
                    seed=seed, augmentation=augmentation, options=options)
    if setup.options.lr_find:
        raise LRFindFinished(lr_range_test(setup, optimizer=optimizer, metrics=metrics, batch_size=batch_size,
                                           seed=seed))
    outcome = fit(setup, metrics=metrics, optimizer=optimizer, learning_rate=learning_rate, epochs=epochs,
                  batch_size=batch_size, monitor=monitor, patience=patience, lr_patience=lr_patience,
                  lr_factor=lr_factor, min_lr=min_lr, tensorboard=tensorboard, callbacks=callbacks, verbose=verbose)
    score = _scorer(data, evaluate_fn, threshold)
    test_metrics, keras_pred = evaluate(setup, outcome, score)
    save(setup, outcome)
    export_result, onnx_metrics, export_error = (
        export_model(setup, score, keras_pred, test_metrics, threshold=threshold, seed=seed) if export
        else (None, None, None))
    result = RunResult(name, setup.run_dir, outcome.history, outcome.epochs_run, test_metrics, onnx_metrics,
                       export_result, round(time.perf_counter() - setup.start, 2), round(outcome.train_seconds, 2))
    write_report(result, model, data, notes=notes, threads=thread_settings(), export_error=export_error,
                 training=training_record(setup.options))
    if export_error is not None:
        raise export_error
    return result


def check_data_fits(model, data) -> None:
    """Raise a ValueError before training when the splits cannot feed `model`: a different number of input
    arrays, a row shape the model's inputs do not take, or a different number of labels than rows."""
    inputs = getattr(model, "inputs", None)
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        if not inputs or not all(isinstance(a, np.ndarray) for a in arrays):
            return  # a subclassed model, or data that is not numpy arrays: Keras checks them itself
        if len(arrays) != len(inputs):
            raise ValueError(f"Model {model.name!r} takes {len(inputs)} input(s); x_{split} gives {len(arrays)} "
                             f"array(s). Expected one array per input ({', '.join(t.name for t in inputs)}).")
        for t, a in zip(inputs, arrays):
            want = tuple(t.shape[1:])
            if a.ndim != len(want) + 1 or any(w is not None and w != d for w, d in zip(want, a.shape[1:])):
                shown = "(rows, " + ", ".join("any" if w is None else str(w) for w in want) + ")"
                raise ValueError(f"x_{split} has shape {a.shape}, but model {model.name!r} input {t.name!r} takes "
                                 f"{shown}. Build the model with input_shape={a.shape[1:]} or reshape the data.")
        if isinstance(y, np.ndarray) and len(y) != len(arrays[0]):
            raise ValueError(f"y_{split} has {len(y)} labels for {len(arrays[0])} rows of x_{split}; expected one "
                             "label per row.")


def _fmt(metrics: dict | None) -> str:
    if not metrics:
        return "-"
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def training_record(options: TrainingOptions) -> dict:
    """What the card and report say about how the model was trained: options that differ from the defaults and
    the data-parallel setup."""
    from kerastk.distribute import describe

    return {"options": options.changed(), "distribution": describe()}


def write_report(result: RunResult, model, data, notes="", threads=None, export_error=None, training=None) -> Path:
    """A short report.md: data, model, training, test metrics, export and parity."""
    from kerastk.backend import versions

    v = versions()
    h = result.history
    lines = [
        f"# {result.name}",
        "",
        notes.strip(),
        "",
        "## Setup",
        f"- backend: {v['backend']} {v[v['backend']]} (keras {v['keras']}); threads: {json.dumps(threads or {})}",
        f"- data: {data.name} from {data.info['source']} - train {num_rows(data.x_train)}, "
        f"val {num_rows(data.x_val)}, test {num_rows(data.x_test)}",
        f"- model: {model.name}, {model.count_params():,} parameters",
        "",
        "## Training",
        f"- epochs in history: {len(h.get('epoch', []))} (this call trained {result.epochs_run}); "
        f"training wall time {result.train_seconds:.1f} s; whole run {result.seconds:.1f} s",
        f"- training options: {json.dumps((training or {}).get('options') or 'defaults')}; "
        f"distribution: {json.dumps((training or {}).get('distribution'))}",
    ]
    if h.get("val_loss"):
        best = int(np.nanargmin(h["val_loss"]))
        lines.append(f"- best val_loss {h['val_loss'][best]:.4g} at epoch {best + 1} (weights restored from it)")
    if h.get("learning_rate"):
        lines.append(f"- learning rate: {h['learning_rate'][0]:.3g} -> {h['learning_rate'][-1]:.3g}")
    lines += ["", "## Test split", f"- Keras: {_fmt(result.test_metrics)}", f"- ONNX: {_fmt(result.onnx_metrics)}",
              "", "## Export"]
    if result.export is not None:
        e = result.export
        lines += [f"- model.onnx via the {e.route} route (active backend {e.backend}), opset {e.opset}, "
                  f"{e.seconds:.1f} s", f"- parity: {e.validation}"]
        lines += [f"- route {a.route} not used: {a.why_not()}" for a in e.attempts if a.route != e.route]
    elif export_error is not None:
        lines.append(f"- FAILED: {export_error}")
    else:
        lines.append("- not exported")
    lines += ["", "![curves](curves.png)", ""]
    path = result.run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


# --- helpers the recipe scripts share ----------------------------------------------------------------------


def recipe_parser(doc: str, epochs: int, batch_size: int):
    """The flags every recipe takes: --epochs, --batch-size, --out, --seed, --smoke, --quiet."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    parser.add_argument("--epochs", type=int, default=epochs, help=f"maximum epochs (default {epochs})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"minibatch size (default {batch_size})")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for run folders (default export/)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data splits, initialisation and shuffling")
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long run on a data subset (2 epochs) that still exports and validates")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    add_training_flags(parser)
    return parser


def add_training_flags(parser):
    """The training toolbox flags (TrainingOptions) every recipe takes."""
    from kerastk.callbacks import SCHEDULES

    g = parser.add_argument_group("training toolbox (kerastk.training.TrainingOptions)")
    g.add_argument("--learning-rate", type=float, default=None, help="replace the recipe's learning rate")
    g.add_argument("--lr-schedule", default="plateau", choices=SCHEDULES,
                   help="plateau (default: ReduceLROnPlateau), constant, step (x0.1 at 50%% and 75%%), exponential, "
                        "cosine, sgdr (cosine with warm restarts), triangular / triangular2 / exp_range (cyclic)")
    g.add_argument("--warmup-epochs", type=int, default=0, help="linear warm-up epochs before the schedule")
    g.add_argument("--ema", action="store_true", help="keep an EMA of the weights; validate and export it")
    g.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (e.g. 0.1)")
    g.add_argument("--clipnorm", type=float, default=None, help="clip each gradient to this L2 norm")
    g.add_argument("--l1", type=float, default=0.0, help="L1 penalty on every kernel")
    g.add_argument("--l2", type=float, default=0.0, help="L2 penalty on every kernel (e.g. 1e-4)")
    g.add_argument("--weight-decay", type=float, default=None, help="decoupled weight decay (AdamW-style)")
    g.add_argument("--diagnostics", action="store_true",
                   help="per-epoch weight/gradient norms, dead ReLUs, histograms (diagnostics.png / .json)")
    g.add_argument("--distribute", type=int, default=None, metavar="N",
                   help="data parallelism over N devices (jax, tensorflow; virtual CPU devices when there is one)")
    g.add_argument("--lr-find", action="store_true", help="run the LR range test (lr_find.png) and stop")
    return parser


def parse_recipe_args(parser, argv=None):
    args = parser.parse_args(argv)
    for flag in ("epochs", "batch_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1; received {getattr(args, flag)}")
    if args.smoke:
        args.epochs = min(args.epochs, 2)
    args.verbose = 0 if args.quiet or args.smoke else 2
    args.options = TrainingOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingOptions)
                                      if f.name not in ("ema_momentum",)})
    try:
        args.options.check()
        if args.distribute is not None:  # before the recipe builds its model: variables are laid out for it
            from kerastk.distribute import setup

            setup(args.distribute)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def recipe_data(name: str, args, **kwargs):
    """`kerastk.data.load(name, seed=args.seed)`, cut to a smoke subset when the recipe runs with --smoke."""
    from kerastk import data as kdata

    data = kdata.load(name, seed=args.seed, **kwargs)
    return smoke_subset(data) if args.smoke else data


def smoke_subset(data, n_train: int = 256, n_eval: int = 128):
    """The first rows of each split: enough to train two epochs and validate an export in seconds."""
    return dataclasses.replace(
        data, x_train=take_rows(data.x_train, n_train), y_train=data.y_train[:n_train],
        x_val=take_rows(data.x_val, n_eval), y_val=data.y_val[:n_eval], x_test=take_rows(data.x_test, n_eval),
        y_test=data.y_test[:n_eval])


def token_info(info: dict) -> dict:
    """The vocabularies and sequence lengths a dataset carries (what a deployed decoder needs in its card)."""
    return {k: v for k, v in info.items() if k.endswith(("vocab", "_length", "_tokens"))}


def segmentation_summary(result, model, data, compare_with=None) -> dict:
    """Write `summary.json` (parameters, per-class IoU / Dice and their means for the Keras model and the ONNX
    file) into the run folder, print the per-class table, and - when `compare_with` names another run's
    summary.json that exists - a one-line comparison of mean IoU and parameters. Returns the summary."""
    keys = ("mean_iou", "mean_dice", "pixel_accuracy", "iou", "dice")
    summary = {"model": model.name, "parameters": model.count_params(), "class_names": data.class_names,
               "keras": {k: result.test_metrics[k] for k in keys},
               "onnx": {k: result.onnx_metrics[k] for k in keys}, "route": result.export.route,
               "train_seconds": result.train_seconds, "epochs": len(result.history.get("epoch", []))}
    (Path(result.run_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    k, o = summary["keras"], summary["onnx"]
    width = max(len(n) for n in summary["class_names"])
    print(f"{'class':>{width}}   IoU   Dice")
    for name, iou, dice in zip(summary["class_names"], k["iou"], k["dice"]):
        print(f"{name:>{width}} {iou:.3f} {dice:.3f}")
    print(f"{summary['model']}: mean IoU {k['mean_iou']:.3f}, mean Dice {k['mean_dice']:.3f}, pixel accuracy "
          f"{k['pixel_accuracy']:.3f}, {summary['parameters']:,} parameters; ONNX mean IoU {o['mean_iou']:.3f} "
          f"(route {summary['route']})")
    if compare_with is not None and Path(compare_with).is_file():
        s = json.loads(Path(compare_with).read_text())
        print(f"compare: {summary['model']} mIoU {k['mean_iou']:.3f} with {summary['parameters']:,} parameters | "
              f"{s['model']} mIoU {s['keras']['mean_iou']:.3f} with {s['parameters']:,} parameters")
    return summary
