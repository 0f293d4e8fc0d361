"""Transfer learning: reuse a trained backbone, freeze it, train a new head, then fine-tune everything.

Task A (source): circles, squares and triangles, plenty of images. Task B (target): crosses and rings, only
a few labelled images. Compared on task B's test split:
  scratch   - the same network trained from random weights on task B's few images;
  frozen    - the task-A backbone frozen, a new head trained (feature extraction);
  fine-tune - then the whole network unfrozen and trained with a 10x lower learning rate.
With `--imagenet` (online), a keras.applications MobileNetV2 with ImageNet weights is the backbone instead.

    python recipes/transfer_learning.py
    kerastk train transfer_learning --smoke
"""
import sys

import keras

import kerastk
from kerastk import data as kdata
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_main, recipe_parser, run, smoke_subset

EPOCHS = 30
BATCH_SIZE = 32
SOURCE = ("circle", "square", "triangle")  # task A classes
TARGET = ("cross", "ring")  # task B classes, never seen in task A
TARGET_TRAIN = 60  # labelled task-B images: the scarce-data setting transfer learning is for
FILTERS = (32, 64, 128)
HEAD_LR, FINE_TUNE_LR = 1e-3, 1e-4  # fine-tuning uses a 10x lower learning rate


def backbone_from_registry(input_shape):
    return kerastk.create_model("mnist_cnn", input_shape=input_shape, filters=FILTERS, include_top=False,
                                pooling="avg")


def imagenet_backbone(input_shape):
    """MobileNetV2 with ImageNet weights (needs the network); None with a notice when it cannot be had."""
    try:
        inputs = keras.Input(input_shape)
        x = keras.layers.Resizing(96, 96)(inputs)
        x = keras.layers.Rescaling(2.0, offset=-1.0)(x)  # [0, 1] -> [-1, 1], MobileNetV2's preprocessing
        base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights="imagenet",
                                              pooling="avg")
        return keras.Model(inputs, base(x), name="imagenet_mobilenetv2")
    except Exception as exc:
        print(f"[transfer_learning] ImageNet weights unavailable ({type(exc).__name__}); "
              "using the backbone trained on task A.", file=sys.stderr)
        return None


def with_head(backbone, num_classes, name):
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=f"{name}_head")(backbone.output)
    return keras.Model(backbone.input, outputs, name=name)


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--imagenet", action="store_true", help="MobileNetV2 ImageNet backbone (online)")
    args = parse_recipe_args(parser, argv)
    n_source = 600 if args.smoke else 2400
    source = kdata.load("shapes", seed=args.seed, classes=SOURCE, n_samples=n_source)
    target = kdata.load("shapes", seed=args.seed + 1, classes=TARGET, n_samples=1000)
    target = smoke_subset(target, n_train=TARGET_TRAIN, n_eval=len(target.x_test))
    if args.smoke:
        source = smoke_subset(source)
    common = dict(loss="sparse_categorical_crossentropy", metrics=["accuracy"], epochs=args.epochs,
                  batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose, options=args.options, patience=6)

    # --- baseline: from scratch on the few target images
    set_seed(args.seed)
    scratch = run(with_head(backbone_from_registry(target.input_shape), 2, "scratch"), target,
                  "transfer_scratch", notes="From random weights on the few task-B images.", **common)

    # --- task A: train the backbone where data is plentiful
    backbone = imagenet_backbone(source.input_shape) if args.imagenet else None
    if backbone is None:
        set_seed(args.seed)
        backbone = backbone_from_registry(source.input_shape)
        run(with_head(backbone, len(SOURCE), "source"), source, "transfer_source",
            notes="Backbone training on task A.", **common)

    # --- task B, frozen backbone: only the new head learns
    backbone.trainable = False
    model = with_head(backbone, 2, "target")
    frozen = run(model, target, "transfer_frozen", learning_rate=HEAD_LR,
                 notes="Task-A backbone frozen; new head trained on task B.", **common)

    # --- task B, fine-tuning: unfreeze and continue with a lower learning rate
    backbone.trainable = True
    tuned = run(model, target, "transfer_finetune", learning_rate=FINE_TUNE_LR,
                notes="Whole network fine-tuned on task B with a 10x lower learning rate.", **common)

    print(f"\ntask B ({', '.join(TARGET)}), {len(target.x_train)} training images, test accuracy:")
    for label, r in (("scratch", scratch), ("frozen backbone", frozen), ("fine-tuned", tuned)):
        print(f"  {label:>16}: {r.accuracy:.3f} (ONNX {r.onnx_metrics['accuracy']:.3f}, route {r.export.route})")
    return {"scratch": scratch, "frozen": frozen, "finetune": tuned}


if __name__ == "__main__":
    recipe_main(main)
