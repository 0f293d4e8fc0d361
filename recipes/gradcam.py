"""Grad-CAM and saliency: what a trained classifier looks at, checked against where the shape really is.

A ResNet-20 from the registry learns to name the shape in generated 32x32 images (circle, square, triangle,
cross, ring). The generator also returns each shape's bounding box, so the heat maps can be scored: for every
correctly classified test image, does the Grad-CAM peak (its brightest pixel) fall inside the shape's box?
A peak dropped at random lands in the box as often as the box covers the image (printed alongside, the
chance level). The same check is reported for the vanilla-gradient saliency map.

Grad-CAM (Selvaraju et al. 2017) weighs the last residual stage's 8x8 feature maps by the spatial mean of the
class logit's gradient; saliency (Simonyan et al. 2014) is the largest |d logit / d pixel| over the colour
channels. Both are computed by kerastk.viz under whichever backend runs the recipe.

Writes, next to the usual run files in export/gradcam/: gradcam.png (heat maps over test images, boxes drawn),
saliency.png, feature_maps.png, filters.png and gradcam.json (the localisation numbers).

    python recipes/gradcam.py
    kerastk train gradcam --smoke
"""
import json

import numpy as np

import kerastk
from kerastk import viz
from kerastk.backend import active_backend, set_seed
from kerastk.data import finish_dataset, generators, split_dataset
from kerastk.training import parse_recipe_args, recipe_main, recipe_parser, run

EPOCHS = 20  # early stopping may end the run sooner
BATCH_SIZE = 64
LEARNING_RATE = 2e-3  # Adam; halved on plateau
MODEL = "resnet20"  # global average pooling + one Dense layer: Grad-CAM is exactly CAM for this head
IMAGE_SIZE = 32  # ResNet-20 downsamples 4x: an 8x8 last feature map, fine enough to place a peak
N_SAMPLES = 3000  # 2,100 train / 450 validation / 450 test
SMOKE_SAMPLES = 300
TARGET = 0.80  # the share of correctly classified test images whose Grad-CAM peak must lie in the box
GRID = (4, 6)  # rows x columns of test images in gradcam.png and saliency.png


def load_shapes_with_boxes(n_samples, image_size, seed):
    """The shapes dataset (pixels / 255, stratified 70/15/15 split) plus the box of every test image.

    kerastk.data.load("shapes") drops the boxes, so the split is made here on image indices with the same
    splitter, and the boxes are taken with the test indices: row i of `boxes` belongs to data.x_test[i].
    """
    x, y, names, boxes = generators.shapes(n_samples=n_samples, image_size=image_size, seed=seed, return_boxes=True)
    i_train, y_train, i_val, y_val, i_test, y_test = split_dataset(np.arange(n_samples), y, seed)
    data = finish_dataset("shapes_boxes", (x[i_train], y_train, x[i_val], y_val, x[i_test], y_test),
                   task="classification", input_shape=(image_size, image_size, 3), class_names=names,
                   source=f"kerastk.data.generators.shapes ({n_samples} images {image_size}x{image_size}, seed {seed},"
                          " with boxes)", preprocessing={"type": "scale", "factor": 1.0 / 255.0})
    return data, boxes[i_test]


def peaks_in_boxes(maps, boxes):
    """For each (H, W) map: is its argmax pixel inside the box (x1, y1, x2, y2; x2, y2 exclusive)?"""
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    rows, cols = np.unravel_index(flat, maps.shape[1:])
    inside = (cols >= boxes[:, 0]) & (cols < boxes[:, 2]) & (rows >= boxes[:, 1]) & (rows < boxes[:, 3])
    return inside, rows, cols


def box_masks(boxes, size):
    """(n, size, size) boolean masks of the boxes."""
    yy, xx = np.mgrid[0:size, 0:size]
    return ((xx[None] >= boxes[:, 0, None, None]) & (xx[None] < boxes[:, 2, None, None])
            & (yy[None] >= boxes[:, 1, None, None]) & (yy[None] < boxes[:, 3, None, None]))


def save_grid(images, maps, boxes, peaks, titles, path, suptitle):
    """Heat maps over images, each shape's box in white and the map's peak as a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = GRID
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.05 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(viz.overlay_heatmap(images[i], maps[i], alpha=0.45))
        x1, y1, x2, y2 = boxes[i]
        ax.add_patch(matplotlib.patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                                  edgecolor="white", linewidth=1.2))
        ax.plot(peaks[1][i], peaks[0][i], marker="x", color="white", markersize=7, markeredgewidth=2)
        ax.set_title(titles[i], fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--model", default=MODEL, help=f"a registered classifier (default {MODEL})")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help=f"image side (default {IMAGE_SIZE})")
    args = parse_recipe_args(parser, argv)
    set_seed(args.seed)

    # --- data: shape images with the box of each test image
    n_samples = SMOKE_SAMPLES if args.smoke else N_SAMPLES
    data, test_boxes = load_shapes_with_boxes(n_samples, args.image_size, args.seed)

    # --- model: a registered classifier with its softmax head
    model = kerastk.create_model(args.model, input_shape=data.input_shape, num_classes=data.num_classes)

    # --- train, evaluate, export
    result = run(model, data, "gradcam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                 learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size, out=args.out,
                 seed=args.seed, verbose=args.verbose, options=args.options, patience=6,
                 notes=f"{args.model} on {args.image_size}x{args.image_size} shapes; Grad-CAM and saliency maps "
                       "are scored against each test shape's box (see gradcam.json).")

    # --- explain the correctly classified test images (their predicted class is the true class); a smoke run
    # may get none right, and then explains its first test images for the pictures without scoring them
    predicted = np.argmax(model.predict(data.x_test, batch_size=256, verbose=0), axis=-1)
    correct = np.flatnonzero(predicted == data.y_test)
    chosen = correct if len(correct) else np.arange(min(len(data.y_test), GRID[0] * GRID[1]))
    x, y, boxes = data.x_test[chosen], data.y_test[chosen], test_boxes[chosen]
    layer = viz.last_conv_layer(model)
    cams = viz.grad_cam(model, x, class_index=y, layer_name=layer)
    saliency = viz.saliency_map(model, x, class_index=y)

    # --- score: peak in the box, against a peak dropped uniformly at random (the box's share of the image)
    cam_in, cam_rows, cam_cols = peaks_in_boxes(cams, boxes)
    sal_in, sal_rows, sal_cols = peaks_in_boxes(saliency, boxes)
    masks = box_masks(boxes, args.image_size)
    chance = float(masks.mean())
    cam_mass = float(np.mean((cams * masks).sum(axis=(1, 2)) / np.maximum(cams.sum(axis=(1, 2)), 1e-12)))
    scored = len(correct) > 0
    report = {
        "backend": active_backend(), "model": args.model, "layer": layer,
        "feature_map": list(model.get_layer(layer).output.shape[1:3]),
        "test_images": int(len(data.y_test)), "correctly_classified": int(len(correct)),
        "gradcam_peak_in_box": float(cam_in.mean()) if scored else None,
        "saliency_peak_in_box": float(sal_in.mean()) if scored else None,
        "chance_peak_in_box": chance, "gradcam_mass_in_box": cam_mass if scored else None, "target": TARGET,
        "per_class_gradcam_peak_in_box": {name: float(cam_in[y == k].mean()) if scored and np.any(y == k) else None
                                          for k, name in enumerate(data.class_names)},
    }
    if scored:
        summary = (f"Grad-CAM peak in the box for {cam_in.mean():.3f} of {len(correct)} correctly classified test "
                   f"images (target {TARGET}), saliency {sal_in.mean():.3f}, chance {chance:.3f}; Grad-CAM mass "
                   f"in the box {cam_mass:.3f}")
    else:
        summary = "no correctly classified test image: maps drawn for the first test images, not scored"
    run_dir = result.run_dir
    (run_dir / "gradcam.json").write_text(json.dumps(report, indent=2))
    with open(run_dir / "report.md", "a") as f:
        f.write(f"\n## Grad-CAM\n- layer {layer} ({report['feature_map'][0]}x{report['feature_map'][1]} feature "
                f"map); {len(correct)} of {len(data.y_test)} test images correctly classified\n- {summary}; chance = "
                "mean box area / image area, where a randomly placed peak lands\n\n![gradcam](gradcam.png)\n")

    # --- pictures: heat maps with the shape's box (white) and the peak (cross), feature maps, filters
    show = np.arange(min(len(x), GRID[0] * GRID[1]))
    names = data.class_names
    for maps, inside, (rows, cols), title, png in (
            (cams, cam_in, (cam_rows, cam_cols), f"Grad-CAM ({layer})", "gradcam.png"),
            (saliency, sal_in, (sal_rows, sal_cols), "Saliency |d logit / d pixel|", "saliency.png")):
        save_grid(x[show], maps[show], boxes[show], (rows[show], cols[show]),
                  [f"{names[y[i]]} {'in' if inside[i] else 'OUT'}" for i in show], run_dir / png,
                  f"{title}, {args.model}, {active_backend()}: peak in box {inside.mean():.0%} (chance {chance:.0%})")
    viz.plot_feature_maps(model, x[0], run_dir / "feature_maps.png")
    viz.plot_filters(model, run_dir / "filters.png")

    print(f"gradcam: test accuracy {result.accuracy:.4f} (ONNX {result.onnx_metrics['accuracy']:.4f}), "
          f"route {result.export.route}, {result.seconds:.1f} s; {summary}")
    return result


if __name__ == "__main__":
    recipe_main(main)
