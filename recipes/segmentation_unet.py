"""Semantic segmentation with a U-Net: a class for every pixel of generated scenes of shapes.

The scenes (64x64, 1 to 4 circles, squares and triangles with occlusion, scale variation and noise) come with
per-pixel masks: 0 = background, 1..3 = the shape classes. A U-Net (Ronneberger et al. 2015) encodes each
image down to 8x8 and decodes it back, with skip connections handing every decoder level the encoder's
features at the same resolution, so the boundaries stay sharp. It trains with per-pixel cross-entropy
(``--dice`` adds the soft Dice loss of kerastk.losses, which weighs the small shape classes like the
background) and is scored the way the field scores segmentation: per-class IoU, mean IoU, Dice, pixel
accuracy - on the Keras model and on its ONNX export.

Outputs in export/segmentation_unet/: the usual run folder, plus
  overlays.png   test images | true masks | predicted masks (from the ONNX file)
  summary.json   parameters and test metrics, read by recipes/segmentation_segnet.py for its comparison

    python recipes/segmentation_unet.py            # mean IoU >= 0.80 in a few minutes on a CPU (tensorflow)
    python recipes/segmentation_unet.py --dice     # cross-entropy + soft Dice
    kerastk train segmentation_unet --smoke
"""
from pathlib import Path

import kerastk
from kerastk.backend import set_seed
from kerastk.deploy import OnnxModel
from kerastk.losses import DiceCrossEntropyLoss
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run, segmentation_summary
from kerastk.viz import plot_segmentation

EPOCHS = 15  # validation loss still falls slowly at 15; mean IoU is ~0.94 by then
BATCH_SIZE = 32  # 44 updates per epoch on 1,400 scenes
LEARNING_RATE = 3e-3  # with batch norm Adam takes 3x its default; halved on plateaus
DEPTH = 3  # three 2x2 pools: 64x64 -> 8x8 at the bottleneck, larger than the biggest shapes' features
FILTERS = 8  # 8-16-32 and 64 at the bottleneck: 122 k parameters, 37 M mult-adds per image
BATCH_NORM = True  # not in the paper; makes training from scratch fast and insensitive to the learning rate
DICE_WEIGHT = 1.0  # with --dice: loss = cross-entropy + DICE_WEIGHT * soft Dice
RUN_NAME = "segmentation_unet"
OTHER_RUN = "segmentation_segnet"  # the SegNet recipe's run folder, for the one-line comparison


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--dice", action="store_true", help="train on cross-entropy + soft Dice")
    parser.add_argument("--filters", type=int, default=FILTERS, help=f"first-level filters (default {FILTERS})")
    args = parse_recipe_args(parser, argv)
    set_seed(args.seed)

    # --- data: x (n, 64, 64, 3) in [0, 1], y (n, 64, 64) class ids
    data = recipe_data("segmentation", args)
    num_classes = len(data.class_names)

    # --- model: from the registry; "same" padding keeps the output at 64x64
    model = kerastk.create_model("unet", input_shape=data.input_shape, num_classes=num_classes, depth=DEPTH,
                                 filters=args.filters, batch_norm=BATCH_NORM)

    # --- train, evaluate (per-class IoU / Dice for the Keras model and the ONNX file), export
    # Cross-entropy from integer masks through kerastk's loss (dice_weight=0: cross-entropy alone): Keras 3.15's
    # "sparse_categorical_crossentropy" fails in the backward pass under torch for (B, H, W, C) outputs.
    loss = DiceCrossEntropyLoss(dice_weight=DICE_WEIGHT if args.dice else 0.0)
    result = run(model, data, RUN_NAME, loss=loss, learning_rate=LEARNING_RATE, epochs=args.epochs,
                 batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose, options=args.options, patience=6,
                 notes="U-Net (same padding, batch norm) on generated scenes; per-pixel "
                       f"{'cross-entropy + soft Dice' if args.dice else 'cross-entropy'}; metrics per class.")

    # --- look at it: the ONNX file's predictions over the test images
    pred = OnnxModel(result.run_dir / "model.onnx", card={}).predict(data.x_test[:6])
    plot_segmentation(data.x_test[:6], data.y_test[:6], pred, result.run_dir / "overlays.png",
                      class_names=data.class_names,
                      title=f"U-Net (ONNX) - test mIoU {result.test_metrics['mean_iou']:.3f}")
    segmentation_summary(result, model, data, compare_with=Path(args.out) / OTHER_RUN / "summary.json")
    return result


if __name__ == "__main__":
    recipe_main(main)
