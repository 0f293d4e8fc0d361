"""An MLP on scikit-learn's 8x8 digits: two hidden ReLU layers with dropout.

    python recipes/digits_mlp.py
    kerastk train digits_mlp --smoke
"""
import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 100  # 1,257 training images: epochs are cheap; early stopping ends the run
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
DEPTH, WIDTH = 2, 128  # two hidden layers of 128 units
DROPOUT = 0.2  # a little regularisation: the training set is small


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)

    # --- data: 64 pixel intensities scaled from 0..16 to 0..1
    data = recipe_data("digits", args)

    # --- model
    model = kerastk.create_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes,
                                 depth=DEPTH, width=WIDTH, dropout=DROPOUT)

    # --- train, evaluate, save, export, validate, report
    result = run(model, data, "digits_mlp", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                 learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                 seed=args.seed, verbose=args.verbose, options=args.options, patience=10, lr_patience=4,
                 notes=f"MLP {DEPTH}x{WIDTH} ReLU, dropout {DROPOUT}, on the 8x8 digits of scikit-learn.")
    print(f"digits_mlp: test accuracy {result.accuracy:.4f} (ONNX {result.onnx_metrics['accuracy']:.4f}), "
          f"route {result.export.route}, {result.seconds:.1f} s -> {result.run_dir}")
    return result


if __name__ == "__main__":
    recipe_main(main)
