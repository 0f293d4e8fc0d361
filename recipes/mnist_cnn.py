"""The classic MNIST convnet: two [3x3 conv + ReLU + 2x2 max pool] blocks, dropout, softmax.

Max pooling is the layer the JAX route's exporter writes as a MaxPool onnxruntime cannot run; kerastk rewrites
that node (kerastk.deploy.onnx_fixes) and the card lists the fix under the export attempts.

    python recipes/mnist_cnn.py
    kerastk train mnist_cnn --smoke
"""
import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 20  # early stopping usually ends the run sooner
BATCH_SIZE = 64
LEARNING_RATE = 1e-3  # Adam
FILTERS = (32, 64)  # the Keras example's two conv blocks


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)

    # --- data
    data = recipe_data("mnist", args)

    # --- model
    model = kerastk.create_model("mnist_cnn", input_shape=data.input_shape, num_classes=data.num_classes,
                                 filters=FILTERS)

    # --- train, evaluate, save, export, validate, report
    result = run(model, data, "mnist_cnn", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                 learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                 seed=args.seed, verbose=args.verbose, options=args.options,
                 notes="Two conv + max-pool blocks, dropout 0.5, softmax: the Keras example MNIST convnet.")
    print(f"mnist_cnn: test accuracy {result.accuracy:.4f} (ONNX {result.onnx_metrics['accuracy']:.4f}), "
          f"route {result.export.route}, {result.seconds:.1f} s -> {result.run_dir}")
    return result


if __name__ == "__main__":
    recipe_main(main)
