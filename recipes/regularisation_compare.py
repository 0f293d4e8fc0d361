"""Regularisation side by side: none vs L2 vs dropout vs augmentation vs label smoothing.

A 2-hidden-layer MLP (512 units) on only 1,000 MNIST digits overfits: its training accuracy reaches 100% while
validation accuracy stalls far below. Every variant starts from the same initial weights and trains for the same
epochs (no early stopping: the gap is the lesson), changing one thing:
- none: the plain network;
- l2: a 1e-4 L2 penalty on every kernel (--l2 in any recipe);
- dropout: dropout 0.5 after each hidden layer (Srivastava et al. 2014);
- augmentation: small rotations, zoom-crops and shifts of the training digits (Keras preprocessing layers,
  training only);
- label_smoothing: targets 0.9 / 0.01 instead of 1 / 0 (--label-smoothing in any recipe; Szegedy et al. 2016).
The recipe prints each variant's training and validation accuracy and their gap, and saves one PNG with the
gaps and the validation-loss curves (<out>/regularisation_compare/).

    python recipes/regularisation_compare.py
    kerastk train regularisation_compare --smoke
"""
import dataclasses
import json
from pathlib import Path

import numpy as np

import kerastk
from kerastk.backend import set_seed
from kerastk.data.augment import augmentation
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run
from kerastk.viz.curves import compare_curves, save_figure

EPOCHS = 30  # long enough for the plain network to memorise its 1,000 digits
BATCH_SIZE = 32
LEARNING_RATE = 1e-3  # Adam
N_TRAIN = 1000  # a small training set makes overfitting (and the regularisers' effect) visible
WIDTH = 512
L2 = 1e-4
DROPOUT = 0.5
LABEL_SMOOTHING = 0.1
VARIANTS = ("none", "l2", "dropout", "augmentation", "label_smoothing")


def plot(summary, curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(summary))
    train = [s["train_accuracy"] for s in summary.values()]
    val = [s["val_accuracy"] for s in summary.values()]
    ax1.bar(x - 0.2, train, 0.4, label="train")
    ax1.bar(x + 0.2, val, 0.4, label="validation")
    for i, s in enumerate(summary.values()):
        ax1.text(i, max(train[i], val[i]) + 0.005, f"gap {s['gap']:.3f}", ha="center", fontsize=8)
    ax1.set_xticks(x, list(summary), fontsize=8)
    ax1.set_ylim(min(val) - 0.05, 1.03)
    ax1.set(ylabel="accuracy", title=f"MLP on {N_TRAIN} MNIST digits")
    ax1.legend(loc="lower right")
    # accuracy, not loss: the L2 and label-smoothing losses include their own terms and are not comparable
    compare_curves(ax2, curves, "val_accuracy", title="validation accuracy per epoch")
    save_figure(fig, path)


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)
    out = Path(args.out) / "regularisation_compare"
    out.mkdir(parents=True, exist_ok=True)

    # --- data: few training digits
    data = recipe_data("mnist", args)
    data = dataclasses.replace(data, x_train=data.x_train[:N_TRAIN], y_train=data.y_train[:N_TRAIN])

    # --- the same MLP, with and without dropout, from the same initial weights
    def build(dropout):
        set_seed(args.seed)  # identical initial weights for every variant
        return kerastk.create_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes, depth=2,
                                    width=WIDTH, dropout=dropout)

    results, curves, summary = {}, {}, {}
    for tag in VARIANTS:
        model = build(DROPOUT if tag == "dropout" else 0.0)
        options = dataclasses.replace(args.options, l2=L2 if tag == "l2" else args.options.l2,
                                      label_smoothing=LABEL_SMOOTHING if tag == "label_smoothing"
                                      else args.options.label_smoothing)
        augment = (augmentation("standard", flip=False, rotation_degrees=10, crop_zoom=0.1, translate=0.08,
                                colour_jitter=0.0, seed=args.seed) if tag == "augmentation" else None)
        r = run(model, data, f"regularisation_{tag}", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                seed=args.seed, verbose=args.verbose, options=options, patience=args.epochs,
                monitor="loss",  # the weights at the end of training, not the best validation epoch's
                augmentation=augment, notes=f"MLP {WIDTH}-{WIDTH} on {N_TRAIN} digits, regularisation: {tag}.")
        train_acc = float(np.mean(np.argmax(model.predict(data.x_train, verbose=0), axis=1) == data.y_train))
        val_acc = float(np.mean(np.argmax(model.predict(data.x_val, verbose=0), axis=1) == data.y_val))
        results[tag], curves[tag] = r, r.history
        summary[tag] = {"train_accuracy": train_acc, "val_accuracy": val_acc, "gap": train_acc - val_acc,
                        "test_accuracy": r.accuracy, "onnx_test_accuracy": r.onnx_metrics["accuracy"],
                        "route": r.export.route}
    plot(summary, curves, out / "regularisation.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    print(f"{'variant':>16} {'train':>7} {'val':>7} {'gap':>7} {'test':>7}")
    for tag, s in summary.items():
        print(f"{tag:>16} {s['train_accuracy']:7.4f} {s['val_accuracy']:7.4f} {s['gap']:7.4f} "
              f"{s['test_accuracy']:7.4f}")
    print(f"regularisation_compare: plot {out / 'regularisation.png'}")
    return {"summary": summary, "results": results}


if __name__ == "__main__":
    recipe_main(main)
