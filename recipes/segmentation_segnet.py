"""Semantic segmentation with SegNet: an encoder-decoder that upsamples with the encoder's pooling indices.

Same generated scenes and metrics as recipes/segmentation_unet.py, so the two can be compared. SegNet
(Badrinarayanan et al. 2017) has no skip connections carrying feature maps: each decoder block only gets the
positions where the matching encoder max pool found its maxima, and max unpooling writes the decoded values
back there (kerastk.layers.MaxUnpooling2D, which recovers the positions with element-wise ops, so the model
exports to ONNX on every route). ``--upsampling transpose`` swaps the unpooling for learned 2x2
up-convolutions. Scored by per-class IoU, mean IoU, Dice and pixel accuracy, on Keras and ONNX. (The position
of a maximum is discontinuous: where two encoder values tie to within float rounding, the ONNX file can put a
value one pixel away from Keras, so a few output pixels may differ - see kerastk/layers/unpooling.py.)

Outputs in export/segmentation_segnet/: the usual run folder, plus
  overlays.png   test images | true masks | predicted masks (from the ONNX file)
  summary.json   parameters and test metrics; if export/segmentation_unet/summary.json exists (run the U-Net
                 recipe first), a one-line comparison of mean IoU and parameters is printed

    python recipes/segmentation_segnet.py
    python recipes/segmentation_segnet.py --upsampling transpose
    kerastk train segmentation_segnet --smoke
"""
from pathlib import Path

import kerastk
from kerastk.backend import set_seed
from kerastk.deploy import OnnxModel
from kerastk.losses import DiceCrossEntropyLoss
from kerastk.models.segmentation import UPSAMPLINGS
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run, segmentation_summary
from kerastk.viz import plot_segmentation

EPOCHS = 15  # the same budget as the U-Net recipe
BATCH_SIZE = 32  # 44 updates per epoch on 1,400 scenes
LEARNING_RATE = 3e-3  # batch norm after every convolution (the paper's conv-BN-ReLU); halved on plateaus
DEPTH = 4  # four conv blocks and 2x2 pools (VGG's 2-2-3-3 convolutions): 64x64 -> 4x4; the paper has five
FILTERS = 8  # 8-16-32-64: 241 k parameters, 37 M mult-adds per image (the U-Net recipe: 122 k, 37 M)
DICE_WEIGHT = 1.0  # with --dice: loss = cross-entropy + DICE_WEIGHT * soft Dice
RUN_NAME = "segmentation_segnet"
OTHER_RUN = "segmentation_unet"  # the U-Net recipe's run folder, for the one-line comparison


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--dice", action="store_true", help="train on cross-entropy + soft Dice")
    parser.add_argument("--upsampling", choices=UPSAMPLINGS, default="indices",
                        help="decoder upsampling: max unpooling at the pooling indices (default) or learned")
    args = parse_recipe_args(parser, argv)
    set_seed(args.seed)

    # --- data: x (n, 64, 64, 3) in [0, 1], y (n, 64, 64) class ids (the U-Net recipe's split)
    data = recipe_data("segmentation", args)
    num_classes = len(data.class_names)

    # --- model: from the registry
    model = kerastk.create_model("segnet", input_shape=data.input_shape, num_classes=num_classes, depth=DEPTH,
                                 filters=FILTERS, upsampling=args.upsampling)

    # --- train, evaluate (per-class IoU / Dice for the Keras model and the ONNX file), export
    # Cross-entropy from integer masks through kerastk's loss (dice_weight=0: cross-entropy alone): Keras 3.15's
    # "sparse_categorical_crossentropy" fails in the backward pass under torch for (B, H, W, C) outputs.
    loss = DiceCrossEntropyLoss(dice_weight=DICE_WEIGHT if args.dice else 0.0)
    result = run(model, data, RUN_NAME, loss=loss, learning_rate=LEARNING_RATE, epochs=args.epochs,
                 batch_size=args.batch_size, out=args.out, seed=args.seed, verbose=args.verbose, options=args.options, patience=6,
                 notes=f"SegNet ({args.upsampling} upsampling) on generated scenes; per-pixel "
                       f"{'cross-entropy + soft Dice' if args.dice else 'cross-entropy'}; metrics per class.")

    # --- look at it: the ONNX file's predictions over the test images
    pred = OnnxModel(result.run_dir / "model.onnx", card={}).predict(data.x_test[:6])
    plot_segmentation(data.x_test[:6], data.y_test[:6], pred, result.run_dir / "overlays.png",
                      class_names=data.class_names,
                      title=f"SegNet (ONNX) - test mIoU {result.test_metrics['mean_iou']:.3f}")
    segmentation_summary(result, model, data, compare_with=Path(args.out) / OTHER_RUN / "summary.json")
    return result


if __name__ == "__main__":
    recipe_main(main)
