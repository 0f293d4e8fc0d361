"""XOR: a perceptron cannot separate it, a one-hidden-layer MLP does.

The four clusters of the XOR problem sit at the corners of a square, with opposite corners sharing a
class. No straight line separates the classes, so a single linear unit (the perceptron, trained with the
hinge criterion) stays near chance on at least one pair of clusters; one hidden layer of tanh units bends
the boundary and reaches ~100%. Both are printed side by side.

    python recipes/xor_mlp.py
    kerastk train xor_mlp --smoke
"""
import keras

import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 200  # 559 points; early stopping ends each run
BATCH_SIZE = 32
LEARNING_RATE = 0.02
HIDDEN_UNITS = 8  # a handful of tanh units is plenty for XOR


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)

    # --- data: 2-D points, label = (x0 > 0) XOR (x1 > 0)
    data = recipe_data("xor", args)
    common = dict(learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                  seed=args.seed, verbose=args.verbose, options=args.options, patience=20, lr_patience=8)

    # --- the perceptron: sign(w.x + b), hinge criterion (Keras maps labels 0/1 to -1/+1)
    set_seed(args.seed)
    perceptron = kerastk.create_model("perceptron", input_shape=data.input_shape)
    linear = run(perceptron, data, "xor_perceptron", loss="hinge",
                 metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")], threshold=0.0,
                 notes="A perceptron on XOR: one linear boundary cannot separate the classes.", **common)

    # --- the MLP: one hidden tanh layer, a sigmoid output
    set_seed(args.seed)
    mlp = kerastk.create_model("mlp", input_shape=data.input_shape, num_classes=1, depth=1,
                               width=HIDDEN_UNITS, activation="tanh", output_activation="sigmoid")
    hidden = run(mlp, data, "xor_mlp", loss="binary_crossentropy", metrics=["accuracy"],
                 notes=f"An MLP with one hidden layer of {HIDDEN_UNITS} tanh units solves XOR.", **common)

    # --- side by side
    print(f"{'model':>12} | {'parameters':>10} | {'test accuracy':>13} | {'ONNX accuracy':>13}")
    for label, r, m in (("perceptron", linear, perceptron), ("MLP", hidden, mlp)):
        print(f"{label:>12} | {m.count_params():>10} | {r.accuracy:13.3f} | {r.onnx_metrics['accuracy']:13.3f}")
    return {"perceptron": linear, "mlp": hidden}


if __name__ == "__main__":
    recipe_main(main)
