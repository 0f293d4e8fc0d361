"""Image captioning: a CNN encoder and a recurrent (GRU or LSTM) decoder, one teacher-forced functional model.

    inputs  [image (B, H, W, C) float, tokens (B, T) int32 "<s> w1 w2 ..."]
    output  logits (B, T, vocab_size): at step t, scores for the word after tokens[:, :t + 1]

The image's CNN features (the flattened feature map, which keeps where things are, or a global pooling of it)
condition the decoder in either or both of two ways (`condition`): "state" - a Dense projection of the features
is the decoder's initial state (Show and Tell feeds the image once, before the words; starting from it is the
same idea); "step" - a projection of the features is added to every word embedding, so the image is seen at each
step (the same as concatenating it to each input, since the recurrent cell's first operation on its input is
linear). The decoder is causal, so kerastk.deploy.generate decodes greedily by re-running the model on the words
so far.
"""
from __future__ import annotations

import keras

from kerastk.models._common import (
    POOLINGS,
    check_bool,
    check_choice,
    check_input_shape,
    check_int,
    check_int_tuple,
    check_rate,
    pool_features,
)
from kerastk.models.catalog import register_model

CELLS = ("gru", "lstm")
CONDITIONS = ("state", "step", "both")


def apply_conv_encoder(x, filters, name="encoder"):
    """A small CNN: per entry of `filters`, a 3x3 conv + ReLU and a 3x3 stride-2 conv + ReLU (halving the
    size). Strided convolutions instead of max pooling keep every export route's graph plain.

    Args:
        x: image tensor (B, H, W, C).
        filters: channels of each stage.
    Returns:
        the feature map (B, H / 2**len(filters), W / 2**len(filters), filters[-1]).
    """
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"{name}_{i + 1}_conv")(x)
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu",
                                name=f"{name}_{i + 1}_down_conv")(x)
    return x


def image_features(feature_map, pooling, name="encoder"):
    """One vector per image: global average / max pooling, or (pooling=None) the flattened feature map, which
    keeps where things are - what "above" and "left of" need."""
    if pooling is None:
        return keras.layers.Flatten(name=f"{name}_flatten")(feature_map)
    return pool_features(feature_map, pooling, name)


@register_model(family="captioner",
                paper="Vinyals et al. 2015, Show and Tell: A Neural Image Caption Generator",
                default_input_shape=(64, 64, 3), preprocessing="pixels / 255; tokens: word ids, 0 = padding, 1 = <s>",
                reference_params=None, reference_macs=None,
                reference_source="no paper figure: the course's captioner is a small CNN + GRU/LSTM for toy scenes",
                test_kwargs=dict(input_shape=(16, 16, 3), vocab_size=12, caption_length=None, embed_dim=8,
                                 units=8, filters=(8, 8)))
def captioner(input_shape=(64, 64, 3), vocab_size=20, caption_length=None, embed_dim=32, units=128, cell="gru",
              condition="both", filters=(32, 64, 128), backbone=None, pooling=None, dropout=0.0, include_top=True):
    """CNN encoder + recurrent decoder: inputs [image, tokens (B, T) int32], output logits (B, T, vocab_size).

    Args:
        input_shape: image shape (H, W, C).
        vocab_size: number of token ids (0 = padding, 1 = <s>, 2 = </s> by kerastk convention).
        caption_length: decoder length T, or None for any length (the exported ONNX graph accepts any too).
        embed_dim: word embedding size.
        units: decoder state size.
        cell: "gru" or "lstm".
        condition: how the image enters the decoder: "state" (initial state), "step" (added to every word
            embedding) or "both".
        filters: channels of the small CNN encoder's stages (each halves the image size); unused with `backbone`.
        backbone: None for the small CNN, or a registered classifier name (e.g. "mobilenet") built with
            include_top=False as the encoder (random weights; train or load them yourself).
        pooling: how the encoder's feature map becomes one vector: "avg" or "max" (global pooling), or None to
            flatten it, which keeps where each shape is (needed for "above" / "left of"; small maps only).
        dropout: dropout rate on the decoder outputs before the vocabulary projection.
        include_top: False returns the decoder states (B, T, units) instead of the logits.
    """
    check_int("vocab_size", vocab_size, minimum=2)
    if caption_length is not None:
        check_int("caption_length", caption_length)
    check_int("embed_dim", embed_dim)
    check_int("units", units)
    check_choice("cell", cell, CELLS)
    check_choice("condition", condition, CONDITIONS)
    check_choice("pooling", pooling, POOLINGS)
    check_rate("dropout", dropout)
    check_bool("include_top", include_top)
    if backbone is None:
        filters = check_int_tuple("filters", filters)
        shape = check_input_shape(input_shape, rank=3, min_spatial=2 ** len(filters))
    else:
        from kerastk.models.catalog import list_models

        if not isinstance(backbone, str) or backbone not in list_models():
            raise ValueError(f"`backbone` must be None or a registered model name (kerastk.list_models()); "
                             f"received backbone={backbone!r}.")
        shape = check_input_shape(input_shape, rank=3)

    # === Functional Model ===
    image = keras.Input(shape, name="image")
    tokens = keras.Input((caption_length,), dtype="int32", name="tokens")
    if backbone is None:
        feature_map = apply_conv_encoder(image, filters)
    else:
        from kerastk.models.catalog import create_model

        feature_map = create_model(backbone, input_shape=shape, include_top=False, pooling=None)(image)
    features = image_features(feature_map, pooling)

    x = keras.layers.Embedding(vocab_size, embed_dim, name="word_embedding")(tokens)
    if condition in ("step", "both"):
        image_word = keras.layers.Dense(embed_dim, name="image_to_step")(features)
        image_word = keras.layers.Reshape((1, embed_dim), name="image_to_step_reshape")(image_word)
        x = keras.layers.Add(name="step_input")([x, image_word])  # broadcast over time
    initial_state = None
    if condition in ("state", "both"):
        h0 = keras.layers.Dense(units, activation="tanh", name="init_h")(features)
        initial_state = h0
        if cell == "lstm":
            initial_state = [h0, keras.layers.Dense(units, activation="tanh", name="init_c")(features)]
    rnn = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[cell](units, return_sequences=True,
                                                                     name=f"decoder_{cell}")
    x = rnn(x, initial_state=initial_state) if initial_state is not None else rnn(x)
    if not include_top:
        return keras.Model([image, tokens], x, name="captioner")
    if dropout:
        x = keras.layers.Dropout(dropout, name="decoder_dropout")(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model([image, tokens], logits, name="captioner")
