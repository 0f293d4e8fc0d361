"""A small CNN that maps an image to an L2-normalised embedding, for metric learning.

    model = kerastk.create_model("embedding_net", embedding_dim=32)
    model.compile("adam", loss=kerastk.losses.TripletLoss(margin=0.2, mining="hard"))
    model.fit(x_train, labels)             # triplets are mined inside each batch from the labels

Embeddings lie on the unit sphere (Keras's UnitNormalization), as in FaceNet (Schroff et al. 2015): squared
distances are in [0, 4], so a margin has a fixed meaning, and nearest neighbours by Euclidean distance are
nearest neighbours by cosine similarity.
"""
from __future__ import annotations

import keras

from kerastk.models._common import (
    check_activation,
    check_input_shape,
    check_int,
    check_rate,
)
from kerastk.models.catalog import register_model


@register_model(family="embedding", paper="Schroff et al. 2015, FaceNet: A Unified Embedding for Face "
                "Recognition and Clustering (triplet loss on L2-normalised embeddings)",
                default_input_shape=(28, 28, 1), preprocessing="pixels / 255", reference_params=None,
                reference_macs=None, reference_source="no paper figure: a small MNIST-sized CNN",
                test_kwargs=dict(input_shape=(8, 8, 1), embedding_dim=8, filters=(4, 8), hidden_units=8))
def embedding_net(input_shape=(28, 28, 1), embedding_dim=32, filters=(32, 64), hidden_units=128, dropout=0.0,
                  activation="relu"):
    """Small CNN embedding: [3x3 conv + 3x3 conv + 2x2 max pool] per entry of `filters`, dense, linear
    projection to `embedding_dim`, L2 normalisation.

    Args:
        input_shape: (height, width, channels), at least 2 ** len(filters) pixels on each side.
        embedding_dim: size of the embedding.
        filters: filters of each convolution block (two 'same' 3x3 convolutions, then a 2x2 max pool).
        hidden_units: dense layer before the projection (0: none).
        dropout: dropout rate before the projection.
        activation: hidden activation.

    Returns:
        keras.Model "embedding_net": image -> (batch, embedding_dim) unit-norm vectors (layer "embedding").
    """
    filters = tuple(filters) if isinstance(filters, (list, tuple)) else filters
    if not isinstance(filters, tuple) or not filters:
        raise ValueError(f"`filters` must be a non-empty tuple of ints; received filters={filters!r}.")
    for i, f in enumerate(filters):
        check_int(f"filters[{i}]", f)
    shape = check_input_shape(input_shape, rank=3, min_spatial=2 ** len(filters))
    check_int("embedding_dim", embedding_dim)
    check_int("hidden_units", hidden_units, minimum=0)
    check_rate("dropout", dropout)
    check_activation("activation", activation)

    # === Functional Model ===
    inputs = keras.Input(shape, name="image")
    x = inputs
    for i, f in enumerate(filters):
        for j in (1, 2):
            x = keras.layers.Conv2D(f, 3, padding="same", activation=activation, name=f"block{i + 1}_conv{j}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation=activation, name="hidden_dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(embedding_dim, name="projection")(x)
    outputs = keras.layers.UnitNormalization(name="embedding")(x)
    return keras.Model(inputs, outputs, name="embedding_net")
