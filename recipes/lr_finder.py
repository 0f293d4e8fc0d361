"""The LR range test ("LR finder"): pick a learning rate in one short run instead of a grid search.

Smith (2017): train for one pass while the learning rate grows geometrically each minibatch (here 1e-5 -> 10),
record the loss and stop when it blows up. Where the loss falls fastest is a good learning rate; beyond the
lowest point the steps are too large. The recipe runs the test for LeNet-5 on MNIST with SGD + momentum (plain
SGD is the optimizer most sensitive to its rate), then trains three times for the same epochs: a tenth of the
suggestion (too timid), the suggestion, and ten times it (at the edge of divergence); it prints the test
accuracies and saves the range-test curve and the validation curves in one PNG (<out>/lr_finder/).

Any recipe can run the test on its own model and data: `kerastk lr-find mnist_lenet5` (or the recipe's
--lr-find flag), then train with `--learning-rate`.

    python recipes/lr_finder.py
    kerastk train lr_finder --smoke
"""
from pathlib import Path

import keras

import kerastk
from kerastk.backend import set_seed
from kerastk.callbacks import lr_find
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run
from kerastk.viz.curves import compare_curves, save_figure

EPOCHS = 6  # enough to separate a good rate from a timid one
BATCH_SIZE = 64
START_LR, END_LR = 1e-5, 10.0  # the range the test sweeps: six decades around any sensible SGD rate
RANGE_STEPS = 150  # minibatches in the test (~3 epochs of 3,500 digits)
MOMENTUM = 0.9
FACTORS = {"timid": 0.1, "suggested": 1.0, "bold": 10.0}  # rates trained: suggestion x factor


def plot(found, histories, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(found.lrs, found.losses, color="0.75", lw=0.8, label="minibatch loss")
    ax1.plot(found.lrs, found.smoothed, lw=1.8, label="smoothed")
    for tag, factor in FACTORS.items():
        ax1.axvline(found.suggestion * factor, ls="--" if tag == "suggested" else ":", color=f"C{list(FACTORS).index(tag) + 1}",
                    label=f"{tag} {found.suggestion * factor:.2g}")
    ax1.set_xscale("log")
    ax1.set_ylim(0, float(found.smoothed[0]) * 1.6)
    ax1.set(xlabel="learning rate", ylabel="training loss", title="LR range test (SGD + momentum)")
    ax1.legend(fontsize=8)
    compare_curves(ax2, histories, "val_accuracy", title="training at each rate", first_colour=1)
    save_figure(fig, path)


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    args = parse_recipe_args(parser, argv)
    if args.learning_rate is not None or args.lr_find:
        parser.error("lr_finder picks its learning rates itself (--learning-rate / --lr-find do not apply)")
    set_seed(args.seed)
    out = Path(args.out) / "lr_finder"

    # --- data and model
    data = recipe_data("mnist", args)
    model = kerastk.create_model("lenet5", input_shape=data.input_shape, num_classes=data.num_classes)
    sgd = keras.optimizers.SGD(START_LR, momentum=MOMENTUM)

    # --- the range test (weights are restored afterwards)
    found = lr_find(model, data.x_train, data.y_train, loss="sparse_categorical_crossentropy", optimizer=sgd,
                    start_lr=START_LR, end_lr=END_LR, num_steps=60 if args.smoke else RANGE_STEPS,
                    batch_size=args.batch_size, out=out, seed=args.seed, verbose=False)
    print(f"lr_finder: steepest descent at lr {found.suggestion:.3g}, lowest loss at {found.min_loss_lr:.3g}, "
          f"{'diverged' if found.diverged else 'no divergence'} after {len(found.lrs)} steps")

    # --- train from the same initial weights at a tenth, one and ten times the suggestion
    initial = model.get_weights()
    results, histories = {}, {}
    for tag, factor in FACTORS.items():
        model.set_weights(initial)
        lr = found.suggestion * factor
        results[tag] = run(model, data, f"lr_finder_{tag}", loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"], optimizer=keras.optimizers.SGD(lr, momentum=MOMENTUM),
                           learning_rate=lr, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                           seed=args.seed, verbose=args.verbose, options=args.options, patience=args.epochs,
                           export=tag == "suggested",
                           notes=f"LeNet-5, SGD momentum {MOMENTUM}, lr {lr:.3g} ({tag}: {factor} x the LR range "
                                 f"test's suggestion {found.suggestion:.3g}).")
        histories[tag] = results[tag].history
    plot(found, histories, out / "lr_finder.png")

    print(f"{'rate':>10} {'lr':>9} {'test acc':>9}")
    for tag, factor in FACTORS.items():
        print(f"{tag:>10} {found.suggestion * factor:9.3g} {results[tag].accuracy:9.4f}")
    kept = results["suggested"]
    print(f"lr_finder: suggested-rate model exported via {kept.export.route} "
          f"(ONNX accuracy {kept.onnx_metrics['accuracy']:.4f}); plots in {out}")
    return {"suggestion": found.suggestion, "min_loss_lr": found.min_loss_lr,
            "accuracy": {tag: r.accuracy for tag, r in results.items()}, "result": kept}


if __name__ == "__main__":
    recipe_main(main)
