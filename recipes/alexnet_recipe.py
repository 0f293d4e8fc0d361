"""AlexNet with the slides' training schedule: SGD + momentum 0.9, lr 0.01 divided by 10 on plateau,
dropout 0.5 in the dense layers, batch 128, weight decay 5e-4 (Krizhevsky et al. 2012).

The network is the slides' single-tower AlexNet (5 convolutions with local response normalisation after the
first two, three dense layers). ImageNet at 227x227 is out of reach offline on a CPU, so the recipe trains
on generated colour shapes at IMAGE_SIZE (use --image-size 227 for the paper's resolution).

    python recipes/alexnet_recipe.py
    kerastk train alexnet_recipe --smoke
"""
import keras

import kerastk
from kerastk.backend import set_seed
from kerastk.models import alexnet
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 30
BATCH_SIZE = 128  # the paper's batch size
LEARNING_RATE = 0.01  # the paper's initial rate ...
LR_FACTOR = 0.1  # ... divided by 10 when the validation loss stops improving
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
IMAGE_SIZE = 99  # smallest comfortable size for AlexNet's 11x11/4 stem and three 3/2 max pools
N_IMAGES = 3000


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    args = parse_recipe_args(parser, argv)
    set_seed(args.seed)

    # --- data: shapes at AlexNet-friendly resolution, pixels in [0, 1]
    image_size = min(args.image_size, alexnet.MIN_INPUT) if args.smoke else args.image_size  # smoke: smallest input
    data = recipe_data("shapes", args, image_size=image_size, n_samples=600 if args.smoke else N_IMAGES)

    # --- model and the paper's optimiser
    model = kerastk.create_model("alexnet", input_shape=data.input_shape, num_classes=data.num_classes)
    sgd = keras.optimizers.SGD(learning_rate=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    # --- train with lr / 10 on plateau, evaluate, export
    result = run(model, data, "alexnet", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                 optimizer=sgd, epochs=args.epochs, batch_size=args.batch_size, out=args.out, seed=args.seed,
                 verbose=args.verbose, options=args.options, lr_factor=LR_FACTOR, lr_patience=3, patience=8,
                 notes="AlexNet with SGD + momentum, lr 0.01 divided by 10 on plateau, batch 128.")
    lrs = result.history.get("learning_rate", [])
    print(f"alexnet: test accuracy {result.accuracy:.4f} (ONNX {result.onnx_metrics['accuracy']:.4f}), "
          f"lr {lrs[0]:.3g} -> {lrs[-1]:.3g}, route {result.export.route}, {result.seconds:.1f} s")
    return result


if __name__ == "__main__":
    recipe_main(main)
