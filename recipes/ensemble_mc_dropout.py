"""Ensembles and Monte-Carlo dropout: averaged predictions, and their spread as uncertainty.

1. Train N copies of the MNIST convnet from different seeds; averaging their probabilities is usually more
   accurate than any member, and the ensemble exports as one ONNX graph (an Average layer over the members).
2. MC dropout (Gal & Ghahramani 2016): keep dropout on at test time, run M stochastic passes, and read the
   mean as the prediction and the variance / entropy as the uncertainty.
Both uncertainties should be higher on misclassified digits and on out-of-distribution inputs (generated
shapes, converted to 28x28 grey images) than on correctly classified digits; the script prints them.

    python recipes/ensemble_mc_dropout.py
    kerastk train ensemble_mc_dropout --smoke
"""
import keras
import numpy as np

import kerastk
from kerastk import data as kdata
from kerastk.backend import set_seed
from kerastk.deploy import export_onnx
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 15
BATCH_SIZE = 64
MEMBERS = 3  # ensemble size: each member trains from its own seed
MC_PASSES = 20  # stochastic forward passes for MC dropout
DROPOUT = 0.5  # the convnet's dropout, kept on for MC passes


def entropy(p):
    return -np.sum(p * np.log(np.clip(p, 1e-12, 1.0)), axis=-1)


def ood_images(n, seed):
    """Out-of-distribution inputs: generated colour shapes, converted to 28x28 grey images in [0, 1]."""
    x, _, _ = kdata.generators.shapes(n_samples=n, image_size=28, seed=seed + 100)
    return (x.mean(axis=-1, keepdims=True) / 255.0).astype("float32")


def mc_dropout(model, x, passes):
    """Mean and per-class variance of `passes` stochastic forward passes (dropout active)."""
    runs = np.stack([keras.ops.convert_to_numpy(model(x, training=True)) for _ in range(passes)])
    return runs.mean(axis=0), runs.var(axis=0).sum(axis=-1)


def report_uncertainty(label, probs, spread, y_true, x_ood_probs, x_ood_spread):
    correct = np.argmax(probs, -1) == y_true
    rows = [("correct", entropy(probs[correct]), spread[correct]),
            ("misclassified", entropy(probs[~correct]), spread[~correct]),
            ("out-of-distribution", entropy(x_ood_probs), x_ood_spread)]
    print(f"\n{label}: mean entropy / mean variance")
    for name, ent, var in rows:
        if len(ent):
            print(f"  {name:>20}: {np.mean(ent):.3f} / {np.mean(var):.4f}  ({len(ent)} inputs)")
    return {name: float(np.mean(ent)) if len(ent) else float("nan") for name, ent, _ in rows}


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    data = recipe_data("mnist", args)
    x_ood = ood_images(len(data.x_test), args.seed)

    # --- 1. train the members
    members, accuracies = [], []
    for i in range(MEMBERS):
        set_seed(args.seed + i)
        model = kerastk.create_model("mnist_cnn", input_shape=data.input_shape, num_classes=data.num_classes,
                                     dropout=DROPOUT)
        model.name = f"member_{i}"
        r = run(model, data, f"ensemble_member_{i}", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                epochs=args.epochs, batch_size=args.batch_size, out=args.out, seed=args.seed + i,
                verbose=args.verbose, options=args.options, notes=f"Ensemble member {i} (seed {args.seed + i}).")
        members.append(model)
        accuracies.append(r.accuracy)

    # --- the ensemble as one graph: average of the members' probabilities
    inputs = keras.Input(data.input_shape, name="image")
    ensemble = keras.Model(inputs, keras.layers.Average(name="average")([m(inputs) for m in members]),
                           name="ensemble")
    probs = np.asarray(ensemble.predict(data.x_test, verbose=0))
    ens_acc = float(np.mean(np.argmax(probs, -1) == data.y_test))
    member_probs = np.stack([np.asarray(m.predict(data.x_test, verbose=0)) for m in members])
    ood_members = np.stack([np.asarray(m.predict(x_ood, verbose=0)) for m in members])
    exported = export_onnx(ensemble, f"{args.out}/ensemble/model.onnx", inputs=data.x_test[:64])
    print(f"members' test accuracy: {', '.join(f'{a:.4f}' for a in accuracies)}; ensemble {ens_acc:.4f} "
          f"(ONNX route {exported.route}, max abs diff {exported.validation.max_abs_diff:.1e})")
    ens = report_uncertainty("ensemble", probs, member_probs.var(axis=0).sum(-1), data.y_test,
                             ood_members.mean(0), ood_members.var(axis=0).sum(-1))

    # --- 2. MC dropout on the first member
    set_seed(args.seed)
    mc_probs, mc_var = mc_dropout(members[0], data.x_test, MC_PASSES)
    ood_probs, ood_var = mc_dropout(members[0], x_ood, MC_PASSES)
    mc_acc = float(np.mean(np.argmax(mc_probs, -1) == data.y_test))
    print(f"\nMC dropout ({MC_PASSES} passes) accuracy {mc_acc:.4f} vs deterministic {accuracies[0]:.4f}")
    mc = report_uncertainty("MC dropout", mc_probs, mc_var, data.y_test, ood_probs, ood_var)
    return {"members": accuracies, "ensemble": ens_acc, "mc_dropout": mc_acc, "entropy_ensemble": ens,
            "entropy_mc": mc, "export": exported}


if __name__ == "__main__":
    recipe_main(main)
