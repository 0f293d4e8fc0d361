"""Vanishing gradients: a 20-layer sigmoid MLP against ReLU, ReLU + BatchNorm and residual ReLU on the same digits.

Each variant has the same 20 hidden Dense layers of 64 units and trains with the same plain SGD + momentum, so
the only difference is what the gradient goes through on its way down. The recipe measures the per-layer
gradient norm |d loss / d kernel| on one fixed batch at initialisation and after training
(kerastk.diagnostics.gradient_norms), plots it against depth on a log scale, and prints the accuracies: the
sigmoid stack's first layers get gradients about 10^12 times smaller than its last and it does not learn;
He-initialised ReLU keeps them level, BatchNorm and the residual stream keep them alive through training.

    python recipes/vanishing_gradients.py                 # four runs of 30 epochs on the 8x8 digits
    python recipes/vanishing_gradients.py --depth 40      # deeper: the sigmoid gap grows with depth
    KERAS_BACKEND=jax python recipes/vanishing_gradients.py --epochs 10
    kerastk train vanishing_gradients --smoke
"""
import json
from pathlib import Path

import keras
import numpy as np

from kerastk.backend import active_backend, set_seed
from kerastk.diagnostics import gradient_norms
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run
from kerastk.viz.curves import save_figure

EPOCHS = 30  # every variant trains the same number of epochs (no early stopping: see patience below)
BATCH_SIZE = 64
DEPTH, WIDTH = 20, 64  # deep enough for the sigmoid's 0.25 derivative bound to compound to nothing
SMOKE_DEPTH = 6  # --smoke: fewer layers to trace and export, the same plumbing
LEARNING_RATE, MOMENTUM = 0.01, 0.9  # plain SGD: Adam's per-weight scaling would hide part of the effect
PROBE_SIZE = 256  # training samples the gradient norms are measured on (the same batch for every variant)
VARIANTS = ("sigmoid", "relu", "relu_bn", "residual")
LOSS = "sparse_categorical_crossentropy"


def deep_mlp(variant, input_shape, num_classes, depth=DEPTH, width=WIDTH):
    """`depth` hidden Dense layers named hidden1..hidden{depth}; `variant` decides what surrounds them.

    Args:
        variant: "sigmoid" (Glorot init, sigmoid), "relu" (He init, ReLU), "relu_bn" (He init, BatchNorm before
            each ReLU) or "residual" (x + relu(dense(x)) on a stream of `width` features; each branch starts
            small, with variance 1/depth, so the stream's scale stays bounded through the depth).
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}.")
    inputs = keras.Input(input_shape, name="features")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    if variant == "residual":  # project to the stream's width once
        x = keras.layers.Dense(width, name="stem")(x)
    branch_init = keras.initializers.VarianceScaling(1.0 / depth, "fan_in", "truncated_normal")
    for i in range(1, depth + 1):
        name = f"hidden{i}"
        if variant == "sigmoid":
            x = keras.layers.Dense(width, activation="sigmoid", name=name)(x)
        elif variant == "relu":
            x = keras.layers.Dense(width, activation="relu", kernel_initializer="he_normal", name=name)(x)
        elif variant == "relu_bn":
            x = keras.layers.Dense(width, use_bias=False, kernel_initializer="he_normal", name=name)(x)
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
            x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
        else:
            branch = keras.layers.Dense(width, activation="relu", kernel_initializer=branch_init, name=name)(x)
            x = keras.layers.Add(name=f"{name}_add")([x, branch])
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"deep_{variant}")


def hidden_norms(model, x, y, depth):
    """Gradient norm of hidden1..hidden{depth}, in depth order."""
    norms = gradient_norms(model, x, y, loss=LOSS)
    return [norms[f"hidden{i}"] for i in range(1, depth + 1)]


def plot(results, path, title, depth):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    depth = np.arange(1, depth + 1)
    for variant, r in results.items():
        label = f"{variant} (test acc {r['test_accuracy']:.2f})"
        line, = axes[0].plot(depth, r["grad_norm_init"], marker="o", ms=3, label=label)
        axes[1].plot(depth, r["grad_norm_trained"], marker="o", ms=3, color=line.get_color(), label=label)
        axes[2].plot(np.arange(1, len(r["val_accuracy"]) + 1), r["val_accuracy"], marker=".",
                     color=line.get_color(), label=variant)
    for ax, t in ((axes[0], "at initialisation"), (axes[1], "after training")):
        ax.set_yscale("log")
        ax.set_xlabel("hidden layer (1 = next to the input)")
        ax.set_ylabel("|d loss / d kernel|")
        ax.set_title(f"gradient norm per layer, {t}")
        ax.set_xticks(depth[::2])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[2].set_title("validation accuracy")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylim(0, 1)
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--depth", type=int, default=DEPTH, help=f"hidden layers (default {DEPTH}; "
                        f"{SMOKE_DEPTH} with --smoke)")
    args = parse_recipe_args(parser, argv)
    if args.depth < 1:
        parser.error(f"--depth must be >= 1; received {args.depth}")
    depth = min(args.depth, SMOKE_DEPTH) if args.smoke else args.depth

    # --- data: 64 pixel intensities scaled to 0..1; one fixed probe batch for every gradient measurement
    data = recipe_data("digits", args)
    x_probe, y_probe = data.x_train[:PROBE_SIZE], data.y_train[:PROBE_SIZE]

    results = {}
    for variant in VARIANTS:
        # --- model: the same seed for every variant
        set_seed(args.seed)
        model = deep_mlp(variant, data.input_shape, data.num_classes, depth=depth)
        at_init = hidden_norms(model, x_probe, y_probe, depth)

        # --- train: constant LR, no early stopping, so every variant gets the same updates
        result = run(model, data, f"vanishing_gradients_{variant}", loss=LOSS, metrics=["accuracy"],
                     optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM), epochs=args.epochs,
                     batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose,
                     patience=args.epochs, lr_patience=args.epochs, options=args.options,
                     notes=f"{depth} hidden Dense layers of {WIDTH} units, variant {variant!r}: the vanishing-"
                           "gradients lesson (see vanishing_gradients.png in the vanishing_gradients folder).")
        results[variant] = {"grad_norm_init": at_init, "grad_norm_trained": hidden_norms(model, x_probe, y_probe, depth),
                            "test_accuracy": result.accuracy, "train_accuracy": result.history["accuracy"][-1],
                            "val_accuracy": result.history["val_accuracy"], "run_dir": str(result.run_dir)}

    # --- report: table, plot, summary
    out_dir = Path(args.out) / "vanishing_gradients"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'variant':<9} {'|g| layer 1':>12} {'|g| layer ' + str(depth):>12} {'ratio':>9} "
          f"{'trained 1':>10} {'trained ' + str(depth):>10} {'train acc':>9} {'test acc':>8}")
    for variant, r in results.items():
        g0, gt = r["grad_norm_init"], r["grad_norm_trained"]
        r["init_ratio_first_to_last"] = g0[0] / g0[-1]
        print(f"{variant:<9} {g0[0]:12.2e} {g0[-1]:12.2e} {r['init_ratio_first_to_last']:9.1e} {gt[0]:10.2e} "
              f"{gt[-1]:10.2e} {r['train_accuracy']:9.3f} {r['test_accuracy']:8.3f}")
    png = out_dir / "vanishing_gradients.png"
    plot(results, png, f"{depth}-layer MLPs on {data.name}, SGD lr {LEARNING_RATE} momentum {MOMENTUM}, "
                       f"{args.epochs} epochs ({active_backend()})", depth)
    summary = {"depth": depth, "width": WIDTH, "epochs": args.epochs, "backend": active_backend(),
               "variants": results}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"vanishing_gradients: plot {png}, summary {out_dir / 'summary.json'}")
    return summary


if __name__ == "__main__":
    recipe_main(main)
