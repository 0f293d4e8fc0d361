"""A CIFAR-style ResNet-20 on 32x32 colour images, with data augmentation.

ResNet-20 (He et al. 2016, section 4.2): a 3x3 stem and three stages of three basic residual blocks with
16, 32 and 64 filters — 0.27 M parameters, the network the paper trains on CIFAR-10. Augmentation uses
Keras preprocessing layers in front of the model for training only (flip, ±5° rotation, random crop +
resize, translation, colour jitter; `--augment randaugment` for RandAugment); the saved and exported model
is the inference graph without them. CIFAR-10 via keras.datasets when online, else generated shapes.

    python recipes/cifar10_resnet.py
    python recipes/cifar10_resnet.py --model resnet18 --augment randaugment
    kerastk train cifar10_resnet --smoke
"""
import kerastk
from kerastk.backend import set_seed
from kerastk.data.augment import POLICIES, augmentation
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 40  # early stopping ends the run
BATCH_SIZE = 64
LEARNING_RATE = 2e-3  # Adam; halved on plateau
MODEL = "resnet20"


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--model", default=MODEL, help="a registered classifier (default resnet20)")
    parser.add_argument("--augment", default="standard", choices=POLICIES)
    args = parse_recipe_args(parser, argv)
    set_seed(args.seed)

    # --- data: CIFAR-10 when reachable, else 32x32 generated shapes
    data = recipe_data("cifar10", args, **({"n_samples": 600} if args.smoke else {}))  # offline stand-in size

    # --- model and augmentation (training only)
    model = kerastk.create_model(args.model, input_shape=data.input_shape, num_classes=data.num_classes)
    augment = augmentation(args.augment, seed=args.seed)

    # --- train, evaluate, export
    result = run(model, data, f"cifar10_{args.model}", loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"], learning_rate=LEARNING_RATE, epochs=args.epochs,
                 batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose, options=args.options, patience=8,
                 lr_patience=3, augmentation=augment,
                 notes=f"{args.model} with '{args.augment}' augmentation on {data.info['source']}.")
    print(f"cifar10_{args.model}: test accuracy {result.accuracy:.4f} (ONNX {result.onnx_metrics['accuracy']:.4f}), "
          f"{model.count_params():,} parameters, route {result.export.route}, {result.seconds:.1f} s")
    return result


if __name__ == "__main__":
    recipe_main(main)
