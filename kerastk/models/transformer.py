"""The Transformer (Vaswani et al. 2017, Attention is all you need), built from Keras's MultiHeadAttention.

    model = kerastk.create_model("transformer", source_vocab=40, target_vocab=14)
    logits = model([source_tokens, decoder_tokens])      # (batch, T, target_vocab), teacher-forced

    clf = kerastk.create_model("transformer_classifier", vocab_size=20_000, num_classes=2)

Encoder block: self-attention over the source, then a position-wise feed-forward network (Dense ff_dim ReLU ->
Dense d_model), each wrapped as ``LayerNorm(x + Dropout(sublayer(x)))`` (the paper's post-norm) or, with
``norm_first=True``, as ``x + Dropout(sublayer(LayerNorm(x)))`` plus a final LayerNorm (pre-norm: trains
without a warm-up schedule). Decoder block: causal self-attention (``use_causal_mask=True``: position t attends
to positions <= t only), cross-attention from the target to the encoder output, feed-forward. Token embeddings
are scaled by sqrt(d_model) and get the sinusoidal positional encoding (kerastk.layers.PositionalEncoding).
Padding tokens (id 0) of the source are masked out of every attention over the source; no Keras implicit
masking is used.

The decoder is causal, so kerastk.deploy.generate decodes greedily by re-running this one graph on the tokens
so far - in Keras or from its ONNX export.
"""
from __future__ import annotations

import keras

from kerastk.layers.attention import PaddingMask
from kerastk.layers.positional import PositionalEncoding
from kerastk.models._common import check_bool, check_choice, check_int, check_rate, classifier_model, pool_features
from kerastk.models.catalog import register_model
from kerastk.models.seq2seq import check_length

LAYER_NORM_EPSILON = 1e-5


def _check_transformer(num_layers, d_model, num_heads, ff_dim, dropout, norm_first):
    check_int("num_layers", num_layers)
    check_int("d_model", d_model)
    check_int("num_heads", num_heads)
    check_int("ff_dim", ff_dim)
    check_rate("dropout", dropout)
    if d_model % num_heads:
        raise ValueError(f"`d_model` must be divisible by `num_heads` (each head gets d_model / num_heads "
                         f"features); received d_model={d_model}, num_heads={num_heads}.")
    check_bool("norm_first", norm_first)


def apply_embedding(tokens, vocab, d_model, dropout, name):
    """Token embedding * sqrt(d_model) + sinusoidal positional encoding, then dropout."""
    x = keras.layers.Embedding(vocab, d_model, name=f"{name}_embedding")(tokens)
    x = PositionalEncoding(scale_inputs=True, name=f"{name}_positional_encoding")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_embedding_dropout")(x)
    return x


def _sublayer(x, fn, dropout, norm_first, name):
    """Residual wrapper: post-norm LayerNorm(x + Dropout(fn(x))) or pre-norm x + Dropout(fn(LayerNorm(x)))."""
    y = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_norm")(x) if norm_first else x
    y = fn(y)
    if dropout:
        y = keras.layers.Dropout(dropout, name=f"{name}_dropout")(y)
    x = keras.layers.Add(name=f"{name}_add")([x, y])
    if not norm_first:
        x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_norm")(x)
    return x


def _feed_forward(d_model, ff_dim, name):
    def fn(x):
        x = keras.layers.Dense(ff_dim, activation="relu", name=f"{name}_ffn_1")(x)
        return keras.layers.Dense(d_model, name=f"{name}_ffn_2")(x)

    return fn


def apply_encoder_block(x, mask, d_model, num_heads, ff_dim, dropout, norm_first, name):
    """One encoder block: self-attention (padding keys masked) + feed-forward, each residual and normalised.

    Args:
        x: (batch, S, d_model); mask: (batch, S) booleans, True for real tokens (or None).
    """
    attention = keras.layers.MultiHeadAttention(num_heads, d_model // num_heads, dropout=dropout,
                                                name=f"{name}_self_attention")
    x = _sublayer(x, lambda y: attention(y, y, value_mask=mask), dropout, norm_first, f"{name}_self_attention")
    return _sublayer(x, _feed_forward(d_model, ff_dim, name), dropout, norm_first, f"{name}_ffn")


def apply_decoder_block(x, encoded, source_mask, d_model, num_heads, ff_dim, dropout, norm_first, name):
    """One decoder block: causal self-attention, cross-attention to the encoder output, feed-forward.

    Args:
        x: (batch, T, d_model) target states; encoded: (batch, S, d_model); source_mask: (batch, S) or None.
    """
    self_attention = keras.layers.MultiHeadAttention(num_heads, d_model // num_heads, dropout=dropout,
                                                     name=f"{name}_self_attention")
    cross_attention = keras.layers.MultiHeadAttention(num_heads, d_model // num_heads, dropout=dropout,
                                                      name=f"{name}_cross_attention")
    x = _sublayer(x, lambda y: self_attention(y, y, use_causal_mask=True), dropout, norm_first,
                  f"{name}_self_attention")
    x = _sublayer(x, lambda y: cross_attention(y, encoded, value_mask=source_mask), dropout, norm_first,
                  f"{name}_cross_attention")
    return _sublayer(x, _feed_forward(d_model, ff_dim, name), dropout, norm_first, f"{name}_ffn")


def apply_encoder(tokens, vocab, num_layers, d_model, num_heads, ff_dim, dropout, norm_first, mask_padding,
                  name="encoder"):
    """Embedding + positional encoding + `num_layers` encoder blocks. Returns (states, padding mask or None)."""
    mask = PaddingMask(name=f"{name}_padding_mask")(tokens) if mask_padding else None
    x = apply_embedding(tokens, vocab, d_model, dropout, name)
    for i in range(num_layers):
        x = apply_encoder_block(x, mask, d_model, num_heads, ff_dim, dropout, norm_first, f"{name}_{i + 1}")
    if norm_first:
        x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_final_norm")(x)
    return x, mask


@register_model(family="transformer", paper="Vaswani et al. 2017, Attention is all you need",
                default_input_shape=((None,), (None,)), preprocessing="token ids (0 = padding, 1 = <s>, 2 = </s>)",
                reference_params=None, reference_macs=None,
                reference_source="the paper's base model (65M) shares a 37k BPE vocabulary between its embeddings; "
                                 "no figure for small configurations - tests check the count by formula",
                test_kwargs=dict(source_vocab=20, target_vocab=20, num_layers=1, d_model=16, num_heads=2,
                                 ff_dim=32))
def transformer(source_vocab=40, target_vocab=14, source_length=None, target_length=None, num_layers=2,
                d_model=64, num_heads=4, ff_dim=128, dropout=0.1, norm_first=False, mask_source_padding=True,
                name="transformer"):
    """Encoder-decoder Transformer; inputs [source, target-in] -> logits (batch, T, target_vocab).

    Args:
        source_vocab, target_vocab: vocabulary sizes (id 0 is padding; the target's 1 = <s>, 2 = </s>).
        source_length, target_length: fixed sequence lengths, or None for variable-length time axes.
        num_layers: encoder blocks, and as many decoder blocks.
        d_model: width of every token state; num_heads must divide it (key_dim = d_model / num_heads).
        num_heads: attention heads.
        ff_dim: hidden width of the position-wise feed-forward networks.
        dropout: on embeddings, attention weights and every sublayer output (the paper's P_drop = 0.1).
        norm_first: pre-norm blocks (LayerNorm before each sublayer, a final LayerNorm per stack) instead of
            the paper's post-norm.
        mask_source_padding: attention over the source ignores its padding tokens (id 0).

    Returns:
        keras.Model with inputs ``source_tokens`` (batch, S) and ``target_tokens`` (batch, T) int32 and one
        output, the logits (batch, T, target_vocab) - no softmax; causal in the target tokens.
    """
    check_int("source_vocab", source_vocab, 3)
    check_int("target_vocab", target_vocab, 3)
    source_length = check_length("source_length", source_length)
    target_length = check_length("target_length", target_length)
    _check_transformer(num_layers, d_model, num_heads, ff_dim, dropout, norm_first)

    # === Functional Model ===
    source = keras.Input((source_length,), dtype="int32", name="source_tokens")
    target = keras.Input((target_length,), dtype="int32", name="target_tokens")
    encoded, mask = apply_encoder(source, source_vocab, num_layers, d_model, num_heads, ff_dim, dropout,
                                  norm_first, mask_source_padding)
    x = apply_embedding(target, target_vocab, d_model, dropout, "decoder")
    for i in range(num_layers):
        x = apply_decoder_block(x, encoded, mask, d_model, num_heads, ff_dim, dropout, norm_first,
                                f"decoder_{i + 1}")
    if norm_first:
        x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="decoder_final_norm")(x)
    logits = keras.layers.Dense(target_vocab, name="logits")(x)
    return keras.Model([source, target], logits, name=name)


@register_model(family="transformer", paper="Vaswani et al. 2017, Attention is all you need (encoder only)",
                default_input_shape=(None,), preprocessing="int32 token ids, 0 = padding", reference_params=None,
                reference_macs=None, reference_source="no paper figure: size depends on the vocabulary",
                test_kwargs=dict(vocab_size=20, num_classes=3, num_layers=1, d_model=16, num_heads=2, ff_dim=32))
def transformer_classifier(vocab_size=20_000, sequence_length=None, num_classes=2, num_layers=2, d_model=64,
                           num_heads=4, ff_dim=128, dropout=0.1, norm_first=False, mask_padding=True,
                           include_top=True, pooling="avg"):
    """Transformer encoder + pooling over time + softmax head, for sequence classification.

    Args:
        vocab_size: number of token ids (id 0 = padding included).
        sequence_length: fixed input length, or None for any length.
        num_classes: softmax outputs.
        num_layers, d_model, num_heads, ff_dim, dropout, norm_first: as for :func:`transformer`.
        mask_padding: attention (and average pooling) ignore padding tokens (id 0).
        include_top: add the softmax head; False returns the pooled features (or the states, pooling=None).
        pooling: "avg" (mean over the real tokens) or "max" over time; None only without the head.

    Returns:
        keras.Model: ``tokens`` (batch, T) int32 -> class probabilities (batch, num_classes).
    """
    check_int("vocab_size", vocab_size, 2)
    sequence_length = check_length("sequence_length", sequence_length)
    check_int("num_classes", num_classes)
    _check_transformer(num_layers, d_model, num_heads, ff_dim, dropout, norm_first)
    check_bool("include_top", include_top)
    check_choice("pooling", pooling, ("avg", "max", None) if not include_top else ("avg", "max"))

    # === Functional Model ===
    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x, mask = apply_encoder(tokens, vocab_size, num_layers, d_model, num_heads, ff_dim, dropout, norm_first,
                            mask_padding)
    x = pool_features(x, pooling, None, rank=1, mask=mask)
    return classifier_model(tokens, x, num_classes, include_top, "transformer_classifier", dropout, "head_dropout")
