"""Learning-rate schedules side by side: constant, step, plateau, cyclic and SGDR on the same model and data.

Every run starts from the same initial weights, sees the same minibatches and trains for the same number of
epochs (no early stopping, so the schedules are compared at equal cost), with SGD + momentum at the same peak
rate. The schedules differ only in how the rate moves:
- constant: the peak rate throughout;
- step: x0.1 at 50% and 75% of the epochs (the ResNet / CIFAR policy);
- plateau: x0.5 when the validation loss has not improved for 2 epochs (Keras ReduceLROnPlateau; the runner's
  default);
- cyclic: Smith's triangular policy between rate / 4 and rate, 2 epochs per half cycle;
- sgdr: cosine decay with warm restarts (Keras CosineDecayRestarts), periods of T, 2T, 4T epochs.
The recipe prints final validation / test accuracies and saves one PNG with the rate per step and the validation
accuracy per epoch of every schedule (<out>/schedules_compare/).

    python recipes/schedules_compare.py
    python recipes/mnist_lenet5.py --lr-schedule sgdr       # any recipe takes --lr-schedule
    kerastk train schedules_compare --smoke
"""
import dataclasses
import json
from pathlib import Path

import keras
import numpy as np

import kerastk
from kerastk.backend import set_seed
from kerastk.callbacks import make_schedule, schedule_values
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run
from kerastk.viz.curves import compare_curves, save_figure

EPOCHS = 12  # equal for every schedule; SGDR's periods 2 + 4 + 8 epochs end near the last epoch
BATCH_SIZE = 64
LEARNING_RATE = 0.05  # the peak rate for SGD + momentum on LeNet-5 (an LR range test puts the steepest descent
MOMENTUM = 0.9  # near 0.1 here)
SCHEDULES = {"constant": "constant", "step": "step", "plateau": "plateau", "cyclic": "triangular", "sgdr": "sgdr"}
N_TRAIN = 2000  # digits for training: few enough that the schedules' endings matter


def plot(curves, rates, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (tag, (steps, lr)) in enumerate(rates.items()):
        ax1.plot(steps, lr, color=f"C{i}", label=tag)
    ax1.set(xlabel="step", ylabel="learning rate", title="learning rate per step", yscale="log")
    ax1.legend(fontsize=8)
    compare_curves(ax2, curves, "val_accuracy", title="LeNet-5 on MNIST, SGD + momentum", show_last=True)
    save_figure(fig, path)


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    args = parse_recipe_args(parser, argv)
    if args.lr_schedule != "plateau":
        parser.error("schedules_compare runs every schedule itself (--lr-schedule does not apply)")
    set_seed(args.seed)
    out = Path(args.out) / "schedules_compare"
    out.mkdir(parents=True, exist_ok=True)

    # --- data: a 2,000-digit training set (the offline sample holds 3,500)
    data = recipe_data("mnist", args)
    data = dataclasses.replace(data, x_train=data.x_train[:N_TRAIN], y_train=data.y_train[:N_TRAIN])
    steps_per_epoch = -(-len(data.x_train) // args.batch_size)

    # --- one initial model, trained once per schedule
    model = kerastk.create_model("lenet5", input_shape=data.input_shape, num_classes=data.num_classes)
    initial = model.get_weights()
    results, curves, rates = {}, {}, {}
    for tag, schedule in SCHEDULES.items():
        model.set_weights(initial)
        # --warmup-epochs applies to the schedules that can take it (plateau cannot)
        options = dataclasses.replace(args.options, lr_schedule=schedule,
                                      warmup_epochs=0 if schedule == "plateau" else args.options.warmup_epochs)
        results[tag] = r = run(
            model, data, f"schedules_{tag}", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
            optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM), learning_rate=LEARNING_RATE,
            epochs=args.epochs, batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose,
            options=options, patience=args.epochs, notes=f"LeNet-5 with the '{tag}' learning-rate schedule.")
        curves[tag] = r.history
        steps = np.arange(len(r.history["epoch"]) * steps_per_epoch)
        if schedule == "plateau":  # ReduceLROnPlateau logs the rate each epoch ran at
            lr = np.repeat(r.history["learning_rate"], steps_per_epoch)
        else:  # the schedule the run used, step by step
            lr = schedule_values(make_schedule(schedule, options.learning_rate or LEARNING_RATE, steps_per_epoch,
                                               args.epochs, options.warmup_epochs), steps)
        rates[tag] = (steps, lr)
    plot(curves, rates, out / "schedules.png")

    # --- the comparison
    summary = {tag: {"val_accuracy_last": r.history["val_accuracy"][-1], "test_accuracy": r.accuracy,
                     "onnx_test_accuracy": r.onnx_metrics["accuracy"], "route": r.export.route}
               for tag, r in results.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'schedule':>10} {'val acc':>8} {'test acc':>9}")
    for tag, s in summary.items():
        print(f"{tag:>10} {s['val_accuracy_last']:8.4f} {s['test_accuracy']:9.4f}")
    best = max(summary, key=lambda t: summary[t]["val_accuracy_last"])
    print(f"schedules_compare: best validation accuracy with '{best}'; plot {out / 'schedules.png'}")
    return {"summary": summary, "results": results}


if __name__ == "__main__":
    recipe_main(main)
