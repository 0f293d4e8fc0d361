"""Multiclass logistic regression (softmax) on the iris flowers: a linear model is enough here.

    python recipes/iris_logistic_regression.py
    kerastk train iris_logistic_regression --smoke
"""
import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 300  # 104 training flowers: an epoch is a few minibatches
BATCH_SIZE = 16
LEARNING_RATE = 0.05  # a convex problem on standardised features tolerates a large step


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)

    # --- data: four measurements, standardised with the training split's mean and std
    data = recipe_data("iris", args)

    # --- model: softmax(W x + b)
    model = kerastk.create_model("logistic_regression", input_shape=data.input_shape,
                                 num_classes=data.num_classes)

    # --- train, evaluate, save, export, validate, report
    result = run(model, data, "iris_logistic_regression", loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"], learning_rate=LEARNING_RATE, epochs=args.epochs,
                 batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose, options=args.options, patience=20,
                 lr_patience=8, notes="Softmax regression on the four iris measurements (standardised).")
    print(f"iris_logistic_regression: test accuracy {result.accuracy:.4f} "
          f"(ONNX {result.onnx_metrics['accuracy']:.4f}), route {result.export.route}, {result.seconds:.1f} s")
    return result


if __name__ == "__main__":
    recipe_main(main)
