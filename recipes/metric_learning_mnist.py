"""Metric learning on MNIST: a CNN embedding trained with the triplet loss, judged by nearest neighbours.

No classifier head: the network maps each digit to a point on the unit sphere, and the triplet loss (Schroff et
al. 2015) pulls digits of the same class together and pushes other classes at least a margin further away.
Triplets are formed inside each batch from the labels (batch-all: every valid anchor-positive-negative triplet
of the batch), so training is a plain ``model.fit(images, labels)``. ``--mining hard`` keeps only each
anchor's farthest positive and closest negative (batch-hard, Hermans et al. 2017); from a random start it
collapses here - every digit on one point, the loss stuck at the margin - as FaceNet warns hardest negatives
can early in training. A new digit is then
classified by its nearest neighbour among embedded training digits - and classes never seen in training could
be added the same way, by embedding a few examples.

Reported: 1-NN accuracy of the test digits against the embedded training digits (the gallery), the runner's
leave-one-out 1-NN accuracy within the test split, the same on raw pixels for comparison, and in
export/metric_learning_mnist/projection.png the test embeddings projected to 2-D (PCA), coloured by digit.

    python recipes/metric_learning_mnist.py          # ~12 epochs on the offline 5,000-digit sample
    KERAS_BACKEND=torch python recipes/metric_learning_mnist.py --epochs 5
    kerastk train metric_learning_mnist --smoke
"""
import dataclasses

import numpy as np

import kerastk
from kerastk.backend import set_seed
from kerastk.losses import TripletLoss
from kerastk.metrics import nearest_neighbour_accuracy
from kerastk.training import parse_recipe_args, recipe_data, recipe_main, recipe_parser, run

EPOCHS = 12  # test 1-NN accuracy is within a point of its best by then
BATCH_SIZE = 128  # ~13 digits per class in a batch: every anchor has positives and close negatives to mine
LEARNING_RATE = 1e-3  # Adam's default; halved when val_loss stalls
EMBEDDING_DIM = 32  # plenty for 10 classes; the PNG shows a 2-D projection of it
FILTERS = (16, 32)  # a light embedding_net (2 conv blocks of 2 convolutions): fast on 2 CPU cores
MARGIN = 0.2  # FaceNet's margin on squared distances between unit vectors (which lie in [0, 4])
MINING = "all"  # batch-all; batch-hard ("hard") collapses from a random start (loss stuck at MARGIN)


def pca_2d(x):
    """Project rows of x onto their two principal components (numpy SVD)."""
    centred = x - x.mean(axis=0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T


def save_projection(points, labels, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
    fig.colorbar(scatter, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = recipe_parser(__doc__, EPOCHS, BATCH_SIZE)
    parser.add_argument("--mining", choices=("all", "hard"), default=MINING, help=f"triplet mining (default {MINING})")
    args = parse_recipe_args(parser, argv)
    set_seed(args.seed)

    # --- data: pixels in [0, 1]; labels are the targets (the loss forms triplets from them); task "embedding"
    digits = recipe_data("mnist", args)
    data = dataclasses.replace(digits, info={**digits.info, "task": "embedding"})

    # --- model: small CNN -> 32-D unit vectors
    model = kerastk.create_model("embedding_net", input_shape=data.input_shape, embedding_dim=EMBEDDING_DIM,
                                 filters=FILTERS)

    # --- train with the triplet loss, evaluate (leave-one-out 1-NN on the test split), save, export, validate
    result = run(model, data, "metric_learning_mnist", loss=TripletLoss(margin=MARGIN, mining=args.mining),
                 metrics=(), learning_rate=LEARNING_RATE, epochs=args.epochs, batch_size=args.batch_size,
                 out=args.out, seed=args.seed, verbose=args.verbose, options=args.options,
                 notes="embedding_net (conv blocks -> dense -> 32-D projection -> L2 normalisation) trained with "
                       f"the triplet loss (margin {MARGIN}, {args.mining} in-batch mining). Test metric: "
                       "leave-one-out 1-NN accuracy within the test split.")

    # --- nearest neighbours: test digits against the embedded training digits, Keras and ONNX
    from kerastk.deploy import OnnxModel

    train_emb = np.asarray(model.predict(data.x_train, batch_size=256, verbose=0))
    test_emb = np.asarray(model.predict(data.x_test, batch_size=256, verbose=0))
    gallery_acc = nearest_neighbour_accuracy(data.y_test, test_emb, data.y_train, train_emb)
    onnx_model = OnnxModel(result.run_dir / "model.onnx")
    onnx_gallery_acc = nearest_neighbour_accuracy(data.y_test, onnx_model.predict(data.x_test), data.y_train,
                                                  onnx_model.predict(data.x_train))
    pixel_acc = nearest_neighbour_accuracy(data.y_test, data.x_test.reshape(len(data.x_test), -1), data.y_train,
                                           data.x_train.reshape(len(data.x_train), -1))

    save_projection(pca_2d(test_emb), data.y_test, result.run_dir / "projection.png",
                    f"test embeddings, PCA to 2-D (1-NN vs training digits {100 * gallery_acc:.1f}%)")

    print(f"metric_learning_mnist: 1-NN accuracy test vs training gallery {gallery_acc:.4f} (ONNX "
          f"{onnx_gallery_acc:.4f}; raw pixels {pixel_acc:.4f}), leave-one-out within test {result.accuracy:.4f} "
          f"(ONNX {result.onnx_metrics['accuracy']:.4f}); triplet loss {result.history['loss'][0]:.3f} -> "
          f"{result.history['loss'][-1]:.3f}; route {result.export.route}, max abs diff "
          f"{result.export.validation.max_abs_diff:.2e}, {result.seconds:.1f} s -> {result.run_dir}")
    return result


if __name__ == "__main__":
    recipe_main(main)
