"""Multi-label attributes (CelebA-style): several independent yes/no attributes per image.

Each generated image holds 1 to 3 shapes; the labels say which kinds and colours appear and whether the
image is crowded. One sigmoid per attribute and binary cross-entropy (not a softmax: attributes are not
exclusive). Reports per-attribute accuracy and exact-match accuracy (every attribute right).

    python recipes/multilabel_attributes.py
    kerastk train multilabel_attributes --smoke
"""
import keras

import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 40  # early stopping ends the run
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
FILTERS = (32, 64, 128)  # three conv + max-pool blocks: 32x32 -> 4x4 feature maps


def build(input_shape, n_attributes):
    """A small convnet backbone from the registry, global average pooling, one sigmoid per attribute."""
    backbone = kerastk.create_model("mnist_cnn", input_shape=input_shape, filters=FILTERS, include_top=False,
                                    pooling="avg")
    x = keras.layers.Dense(128, activation="relu", name="attributes_hidden")(backbone.output)
    x = keras.layers.Dropout(0.3, name="attributes_dropout")(x)
    outputs = keras.layers.Dense(n_attributes, activation="sigmoid", name="attributes")(x)
    return keras.Model(backbone.input, outputs, name="attribute_net")


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)

    # --- data: y is (n, 7) of 0/1
    data = recipe_data("shape_attributes", args)

    # --- model
    model = build(data.input_shape, len(data.class_names))

    # --- train (BCE over every attribute), evaluate, export
    result = run(model, data, "multilabel_attributes", loss="binary_crossentropy",
                 metrics=[keras.metrics.BinaryAccuracy(name="accuracy")], learning_rate=LEARNING_RATE,
                 epochs=args.epochs, batch_size=args.batch_size, out=args.out, seed=args.seed,
                 verbose=args.verbose, options=args.options, patience=6,
                 notes="Independent sigmoid outputs with binary cross-entropy for multi-label attributes.")

    # --- per-attribute accuracy
    per = result.test_metrics["attribute_accuracy"]
    width = max(len(n) for n in data.class_names)
    for name, acc in zip(data.class_names, per):
        print(f"{name:>{width}} {acc:.3f}")
    print(f"mean attribute accuracy {result.accuracy:.3f}, exact match {result.test_metrics['exact_match']:.3f}, "
          f"ONNX mean {result.onnx_metrics['accuracy']:.3f}, route {result.export.route}")
    return result


if __name__ == "__main__":
    recipe_main(main)
