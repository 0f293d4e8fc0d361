"""3-D convolutions on multi-modal volumes: a 3-D U-Net segments a lesion, a 3-D CNN names its shape.

The data are MRI-like 24x24x24 volumes with three "modalities" (kerastk.data.volumes): t1c shows the lesion's
core bright, flair shows the core and the edema around it, t1 is mostly noise under a bias field. Small
bright vessels (t1c) and spots (flair) elsewhere are not lesion, so a voxel's label needs several channels and
some context - what 3x3x3 convolutions over all channels provide.

1. unet3d (Çiçek et al. 2016, 3 levels, 8 base filters) on target="mask": per-voxel softmax over background /
   core / edema, cross-entropy; reports per-class IoU and Dice and their means, for Keras and the ONNX file.
2. cnn3d (C3D-style 3x3x3 conv / 2x2x2 pool blocks, global average pooling) on target="class": is the core a
   sphere, an ellipsoid or a cube (all of the same volume)? Reports accuracy, Keras and ONNX. One label per
   volume says much less than one per voxel: the classifier gets 1,500 volumes where the U-Net needs 600.

Each run folder also holds slices.png: for a few test volumes, the slice through the lesion in every modality,
the true mask and the prediction (for the classifier: the true and predicted shape next to each row).

    python recipes/volumes_3d.py             # a few minutes on 2 CPU cores (TensorFlow)
    kerastk train volumes_3d --smoke
"""
import numpy as np

import kerastk
from kerastk.backend import set_seed
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run
from kerastk.viz.volumes import pick_slices, plot_volume_slices

EPOCHS = 20  # both models are still improving slowly at 20; early stopping (patience 5) rarely fires
BATCH_SIZE = 16  # 16 volumes of 24^3 voxels: ~220,000 voxel labels per step for the U-Net
LEARNING_RATE = 2e-3
SIZE = 24  # volume side; the smoke run uses 16 and fewer volumes
# A label per voxel teaches far more per volume than one label per volume: 600 volumes (420 for training)
# are plenty for the U-Net, the classifier needs 1,500 (1,050) to stop memorising and learn the shapes.
N_VOLUMES = {"mask": 600, "class": 1500}
SMOKE_VOLUMES = 160  # --smoke: 16^3 volumes, 112 for training (JAX's 3-D convolutions on CPU are ~3x slower)
UNET = dict(depth=3, filters=8)  # 24 -> 12 -> 6 voxels; 8-16, 16-32, 32-64 channels in the analysis path
CNN = dict(filters=(8, 16, 32), convs_per_block=2, dropout=0.3)  # 24 -> 12 -> 6 -> 3, then global average
N_SHOWN = 4  # test volumes in slices.png


def per_class(metrics, key, names):
    return ", ".join(f"{n} {v:.3f}" for n, v in zip(names, metrics[key]))


def main(argv=None):
    args = parse_recipe_args(recipe_parser(__doc__, EPOCHS, BATCH_SIZE), argv)
    set_seed(args.seed)
    size = 16 if args.smoke else SIZE
    results = {}

    # --- 1. segmentation: y is the (D, H, W) voxel mask
    seg = recipe_data("volumes", args, target="mask", size=size,
                      n_samples=SMOKE_VOLUMES if args.smoke else N_VOLUMES["mask"])
    unet = kerastk.create_model("unet3d", input_shape=seg.input_shape, num_classes=seg.num_classes, **UNET)
    seg_result = run(unet, seg, "volumes_unet3d", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                     learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                     seed=args.seed, verbose=args.verbose, options=args.options,
                     notes="3-D U-Net on multi-modal volumes: per-voxel softmax over background, lesion core "
                           "and edema, trained with cross-entropy; per-class IoU and Dice on the test split.")
    results["unet3d"] = seg_result
    k, o = seg_result.test_metrics, seg_result.onnx_metrics
    print(f"unet3d ({unet.count_params():,} parameters, {kerastk.count_flops(unet) / 1e6:.0f} M mult-adds per "
          f"volume): mean IoU {k['mean_iou']:.3f}, mean Dice {k['mean_dice']:.3f}, voxel accuracy "
          f"{k['pixel_accuracy']:.4f}")
    print(f"  IoU  per class: {per_class(k, 'iou', seg.class_names)}")
    print(f"  Dice per class: {per_class(k, 'dice', seg.class_names)}")
    print(f"  ONNX ({seg_result.export.route} route): mean IoU {o['mean_iou']:.3f}, mean Dice {o['mean_dice']:.3f}, "
          f"max |keras - onnx| {o['max_abs_diff_test_split']:.2g}")
    predicted = unet.predict(seg.x_test, batch_size=256, verbose=0)  # the call run() made: no new compilation
    plot_volume_slices(seg.x_test, seg_result.run_dir / "slices.png", truth=seg.y_test, prediction=predicted,
                       n=N_SHOWN, modality_names=seg.info["modalities"], class_names=seg.class_names,
                       title=f"unet3d: test volumes, slice through the lesion (mean IoU {k['mean_iou']:.3f})")

    # --- 2. classification: y is the core's shape
    cls = recipe_data("volumes", args, target="class", size=size,
                      n_samples=SMOKE_VOLUMES if args.smoke else N_VOLUMES["class"])
    cnn = kerastk.create_model("cnn3d", input_shape=cls.input_shape, num_classes=cls.num_classes, **CNN)
    cls_result = run(cnn, cls, "volumes_cnn3d", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                     learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                     seed=args.seed, verbose=args.verbose, options=args.options,
                     notes="3-D CNN (C3D-style 3x3x3 conv / 2x2x2 pool blocks, global average pooling) naming the "
                           "shape of the lesion's core: sphere, ellipsoid or cube of the same volume.")
    results["cnn3d"] = cls_result
    probabilities = cnn.predict(cls.x_test, batch_size=256, verbose=0)
    confusion = np.zeros((cls.num_classes,) * 2, dtype=int)
    np.add.at(confusion, (cls.y_test, probabilities.argmax(axis=-1)), 1)
    print(f"cnn3d ({cnn.count_params():,} parameters): accuracy {cls_result.accuracy:.3f}, ONNX "
          f"({cls_result.export.route} route) {cls_result.onnx_metrics['accuracy']:.3f}")
    print("  confusion (rows true, columns predicted; " + ", ".join(cls.class_names) + "):")
    for name, row in zip(cls.class_names, confusion):
        print(f"  {name:>9} {row}")
    # the slice shown is where the U-Net of part 1 finds the most lesion (the class data have no masks)
    shown = cls.x_test[:N_SHOWN]
    plot_volume_slices(shown, cls_result.run_dir / "slices.png", truth=cls.y_test[:N_SHOWN],
                       prediction=probabilities[:N_SHOWN], modality_names=cls.info["modalities"],
                       class_names=cls.class_names, slices=pick_slices(shown, unet.predict(shown, verbose=0)),
                       title=f"cnn3d: lesion shape (test accuracy {cls_result.accuracy:.3f})")
    return results


if __name__ == "__main__":
    recipe_main(main)
