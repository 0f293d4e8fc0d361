"""Random labels (Zhang et al. 2017): the same network memorises shuffled labels, but only true labels generalise.

One MLP (784-512-512-10, no dropout) trains twice on the same MNIST digits: once with the true labels, once with
the training labels shuffled (a random permutation: every image keeps a label, the label no longer says anything
about the image). Both reach ~zero training loss - the network has the capacity to memorise 3,500 arbitrary
labels - but the shuffled run needs many more epochs, and its test accuracy stays at chance (~10%) while the
true-label run generalises. Training accuracy, loss and parameter count cannot tell the two apart; only
held-out data can. No early stopping on validation: each run trains for the full epochs, monitoring the
training loss (halving the learning rate when it stalls).

    python recipes/random_labels.py                  # 2 x 60 epochs on the offline 5,000-digit MNIST sample
    KERAS_BACKEND=jax python recipes/random_labels.py --epochs 80
    kerastk train random_labels --smoke

Reference: C. Zhang, S. Bengio, M. Hardt, B. Recht, O. Vinyals, "Understanding deep learning requires
rethinking generalization", ICLR 2017.
"""
import dataclasses
import json
from pathlib import Path

import numpy as np

import kerastk
from kerastk.backend import active_backend, set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run
from kerastk.viz.curves import save_figure

EPOCHS = 60  # enough for the shuffled labels to be memorised (the true labels need ~10)
BATCH_SIZE = 64  # small batches: more updates per epoch for memorisation
LEARNING_RATE = 1e-3  # Adam; ReduceLROnPlateau on the training loss halves it when memorisation stalls
DEPTH, WIDTH = 2, 512  # ~670k parameters for 3,500 images: capacity to spare
MEMORISED = 0.99  # training accuracy that counts as "memorised" for the epochs-to-fit column


def first_epoch_at(values, threshold):
    """1-based epoch at which `values` first reaches `threshold`, or None."""
    hits = [i + 1 for i, v in enumerate(values) if v >= threshold]
    return hits[0] if hits else None


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for labels, r in results.items():
        epochs = np.arange(1, len(r["loss"]) + 1)
        line, = axes[0].plot(epochs, r["loss"], marker=".", label=f"{labels} labels")
        axes[1].plot(epochs, r["accuracy"], marker=".", color=line.get_color(), label=f"{labels} labels")
        axes[2].plot(epochs, r["val_accuracy"], marker=".", color=line.get_color(),
                     label=f"{labels} labels (test acc {r['test_accuracy']:.3f})")
    axes[0].set_yscale("log")
    for ax, t in zip(axes, ("training loss", "training accuracy", "held-out accuracy (validation, true labels)")):
        ax.set_title(t)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[1].set_ylim(0, 1.02)
    axes[2].set_ylim(0, 1.02)
    axes[2].axhline(0.1, color="gray", ls="--", lw=1)
    axes[2].text(1, 0.12, "chance", color="gray", fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)

    # --- data: pixels scaled to [0, 1]; the embedded sample keeps the run small even where keras has MNIST
    data = recipe_data("mnist", args, source="embedded")
    shuffled = np.random.default_rng(args.seed).permutation(data.y_train)
    print(f"random_labels: {np.mean(shuffled == data.y_train):.3f} of the shuffled training labels are correct "
          "by chance")
    variants = {"true": data, "shuffled": dataclasses.replace(data, y_train=shuffled)}

    results = {}
    for labels, d in variants.items():
        # --- model: the same architecture and initialisation for both
        set_seed(args.seed)
        model = kerastk.create_model("mlp", input_shape=d.input_shape, num_classes=d.num_classes, depth=DEPTH,
                                     width=WIDTH)

        # --- train on the training loss only (validation does not stop it), evaluate on true test labels
        result = run(model, d, f"random_labels_{labels}", loss="sparse_categorical_crossentropy",
                     metrics=["accuracy"], learning_rate=LEARNING_RATE, epochs=args.epochs,
                     batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose,
                     monitor="loss", patience=args.epochs, lr_patience=5, options=args.options,
                     notes=f"MLP {DEPTH}x{WIDTH} trained on {labels} training labels (Zhang et al. 2017); "
                           "test labels are the true ones.")
        h = result.history
        results[labels] = {"loss": h["loss"], "accuracy": h["accuracy"], "val_accuracy": h["val_accuracy"],
                           "final_train_loss": h["loss"][-1], "final_train_accuracy": h["accuracy"][-1],
                           "test_accuracy": result.accuracy, "onnx_test_accuracy": result.onnx_metrics["accuracy"],
                           "epochs_to_memorise": first_epoch_at(h["accuracy"], MEMORISED),
                           "train_seconds": result.train_seconds, "run_dir": str(result.run_dir)}

    # --- report: table, plot, summary
    out_dir = Path(args.out) / "random_labels"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'labels':<9} {'train loss':>10} {'train acc':>9} {f'epochs to {MEMORISED:.0%}':>14} {'test acc':>8}")
    for labels, r in results.items():
        reached = r["epochs_to_memorise"] or f">{len(r['loss'])}"
        print(f"{labels:<9} {r['final_train_loss']:10.4f} {r['final_train_accuracy']:9.3f} {reached!s:>14} "
              f"{r['test_accuracy']:8.3f}")
    png = out_dir / "random_labels.png"
    plot(results, png, f"MLP {DEPTH}x{WIDTH} on {data.name} ({len(data.y_train):,} training images): true vs "
                       f"shuffled labels ({active_backend()})")
    summary = {"train_images": len(data.y_train), "epochs": args.epochs, "backend": active_backend(),
               "results": results}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"random_labels: plot {png}, summary {out_dir / 'summary.json'}")
    return summary


if __name__ == "__main__":
    recipe_main(main)
