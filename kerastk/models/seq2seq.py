"""Sequence to sequence with additive attention: a recurrent encoder-decoder that learns where to look.

    model = kerastk.create_model("seq2seq_attention", source_vocab=40, target_vocab=14)
    logits = model([source_tokens, decoder_tokens])          # (batch, T, target_vocab), teacher-forced
    weights = attention_model(model)([source_tokens, decoder_tokens])   # (batch, T, S) for heat maps

The encoder (a bidirectional GRU or LSTM by default) reads the source; the decoder RNN reads the target shifted
right (start token first) from the encoder's final state; at every decoder step Bahdanau's additive attention
scores the decoder state against every encoder state and averages them into a context vector; the context and
the decoder state go through a tanh layer to the output logits (Luong et al. 2015's "attentional hidden
state"). Attention sits on top of the decoder RNN rather than inside its cell, so teacher forcing is one call
of stock Keras RNN layers (each exports as one ONNX GRU/LSTM op on the TensorFlow route) and the model is causal
in the target: the logits at step t depend on the target tokens up to t only, which is what
kerastk.deploy.generate needs to decode greedily from the same graph, in Keras or in ONNX.
"""
from __future__ import annotations

import keras

from kerastk.layers.attention import BahdanauAttention, PaddingMask
from kerastk.models._common import check_bool, check_choice, check_int, check_rate
from kerastk.models.catalog import register_model

CELLS = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}


def check_length(name: str, value):
    """A sequence length: a positive int, or None for a variable-length (dynamic) time axis."""
    return None if value is None else check_int(name, value)


def _rnn(cell, units, name, **kwargs):
    return CELLS[cell](units, return_sequences=True, return_state=True, name=name, **kwargs)


def apply_encoder(tokens, vocab, embed_dim, units, cell, bidirectional, dropout, name="encoder"):
    """Embed the source tokens and run the encoder RNN.

    Returns:
        (states, final): encoder states (batch, S, units or 2 * units) and the decoder's initial state
        (a list: [h] for a GRU, [h, c] for an LSTM, each (batch, units)). A bidirectional encoder's two final
        states are concatenated and mapped by a tanh Dense layer per state to the decoder's size (Bahdanau et
        al. start the decoder from a tanh projection of the backward state).
    """
    x = keras.layers.Embedding(vocab, embed_dim, name=f"{name}_embedding")(tokens)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_embedding_dropout")(x)
    if not bidirectional:
        states, *final = _rnn(cell, units, f"{name}_{cell}")(x)
        return states, final
    rnn = keras.layers.Bidirectional(_rnn(cell, units, f"{name}_{cell}"), name=f"{name}_bidirectional")
    states, *final = rnn(x)
    half = len(final) // 2  # [h_fwd, (c_fwd,) h_bwd, (c_bwd)]
    bridged = []
    for i, kind in enumerate(["h", "c"][:half]):
        both = keras.layers.Concatenate(name=f"{name}_final_{kind}")([final[i], final[half + i]])
        bridged.append(keras.layers.Dense(units, activation="tanh", name=f"{name}_bridge_{kind}")(both))
    return states, bridged


@register_model(family="seq2seq",
                paper="Bahdanau et al. 2015, Neural machine translation by jointly learning to align and translate",
                default_input_shape=((None,), (None,)), preprocessing="token ids (0 = padding, 1 = <s>, 2 = </s>)",
                reference_params=None, reference_macs=None,
                reference_source="no paper figure for a small configuration; tests check the count by formula",
                test_kwargs=dict(source_vocab=20, target_vocab=20, embed_dim=8, units=16))
def seq2seq_attention(source_vocab=40, target_vocab=14, source_length=None, target_length=None, embed_dim=32,
                      units=64, cell="gru", bidirectional=True, attention_units=None, dropout=0.0,
                      mask_source_padding=True, name="seq2seq_attention"):
    """Recurrent encoder-decoder with Bahdanau additive attention; inputs [source, target-in] -> logits.

    Args:
        source_vocab, target_vocab: vocabulary sizes (id 0 is padding; the target's 1 = <s>, 2 = </s>).
        source_length, target_length: fixed sequence lengths, or None for variable-length time axes.
        embed_dim: token embedding size (source and target each have their own).
        units: RNN width (each direction of the encoder, and the decoder).
        cell: "gru" or "lstm".
        bidirectional: a bidirectional encoder (its two final states are bridged to the decoder's size).
        attention_units: the alignment model's hidden size (default: units).
        dropout: dropout on the embeddings and the attentional hidden state (0 disables it).
        mask_source_padding: attention gives padding tokens (id 0) of the source zero weight.

    Returns:
        keras.Model with inputs ``source_tokens`` (batch, S) and ``target_tokens`` (batch, T) int32 and one
        output, the logits (batch, T, target_vocab) - no softmax. :func:`attention_model` gives the weights.
    """
    check_int("source_vocab", source_vocab, 3)
    check_int("target_vocab", target_vocab, 3)
    source_length = check_length("source_length", source_length)
    target_length = check_length("target_length", target_length)
    check_int("embed_dim", embed_dim)
    check_int("units", units)
    check_choice("cell", cell, CELLS)
    check_bool("bidirectional", bidirectional)
    attention_units = units if attention_units is None else check_int("attention_units", attention_units)
    dropout = check_rate("dropout", dropout)

    # === Functional Model ===
    source = keras.Input((source_length,), dtype="int32", name="source_tokens")
    target = keras.Input((target_length,), dtype="int32", name="target_tokens")
    encoded, initial_state = apply_encoder(source, source_vocab, embed_dim, units, cell, bidirectional, dropout)

    y = keras.layers.Embedding(target_vocab, embed_dim, name="decoder_embedding")(target)
    if dropout:
        y = keras.layers.Dropout(dropout, name="decoder_embedding_dropout")(y)
    decoded = _rnn(cell, units, f"decoder_{cell}")(y, initial_state=initial_state)[0]

    mask = PaddingMask(name="source_padding_mask")(source) if mask_source_padding else None
    context, _ = BahdanauAttention(attention_units, name="attention")(decoded, encoded, key_mask=mask)
    x = keras.layers.Concatenate(name="attention_concat")([decoded, context])
    x = keras.layers.Dense(units, activation="tanh", name="attentional_hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="attentional_dropout")(x)
    logits = keras.layers.Dense(target_vocab, name="logits")(x)
    return keras.Model([source, target], logits, name=name)


def attention_model(model, layer_name: str = "attention"):
    """A keras.Model from the same inputs to the attention weights (batch, T, S) of `model`'s attention layer.

    It shares the weights of `model` (nothing is copied): train `model`, then call this for heat maps.
    """
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        raise ValueError(f"{model.name} has no layer named {layer_name!r}; attention_model needs a "
                         "seq2seq_attention model (or the name of its BahdanauAttention layer).") from None
    outputs = layer.output
    if not isinstance(outputs, (list, tuple)) or len(outputs) != 2:
        raise ValueError(f"Layer {layer_name!r} of {model.name} does not return [context, weights].")
    return keras.Model(model.inputs, outputs[1], name=f"{model.name}_attention_weights")
