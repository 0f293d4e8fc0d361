"""Recurrent networks on token sequences: SimpleRNN / LSTM / GRU classifiers and a character-level language model.

    kerastk.create_model("lstm_classifier", vocab_size=20_000, num_classes=2, bidirectional=True)
    kerastk.create_model("char_rnn", vocab_size=80, cell="gru", num_layers=2)   # logits (batch, time, vocab)

Every model reads int32 token ids (id 0 = padding, an ordinary token the model learns to ignore: no Keras
masking, which complicates export). ``sequence_length=None`` accepts any length (the exported ONNX file too,
on the routes that keep the time axis dynamic).
"""
from __future__ import annotations

import keras

from kerastk.models._common import check_bool, check_choice, check_int, check_rate, classifier_model, pool_features
from kerastk.models.catalog import register_model, register_variant

#: cell name -> Keras layer. Parameters of one layer with input width `d` and `u` units:
#: SimpleRNN u(d+u)+u; LSTM 4(u(d+u)+u) (four gates); GRU 3(u(d+u)+2u) (Keras's reset_after=True keeps
#: separate input and recurrent biases, the cuDNN convention).
CELLS = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}

#: How a classifier turns the sequence of hidden states into one vector: the last state, or a mean / max over
#: time (None: keep the whole sequence - headless models only).
SEQUENCE_POOLINGS = ("last", "avg", "max", None)


def check_token_input(vocab_size, sequence_length):
    """Validate the arguments of a token input: vocabulary size (id 0 included) and length (None = any)."""
    check_int("vocab_size", vocab_size, minimum=2)
    if sequence_length is not None:
        check_int("sequence_length", sequence_length)


def check_recurrent(embed_dim, units, num_layers, dropout):
    check_int("embed_dim", embed_dim)
    check_int("units", units)
    check_int("num_layers", num_layers)
    return check_rate("dropout", dropout)


def apply_recurrent_stack(x, cell: str, units: int, num_layers: int, *, bidirectional: bool = False,
                          dropout: float = 0.0, return_sequences: bool = True, name: str = "rnn"):
    """Stack `num_layers` recurrent layers of one kind.

    Args:
        x: (batch, time, features) tensor.
        cell: "simple_rnn", "lstm" or "gru".
        units: hidden units per layer (per direction when bidirectional).
        bidirectional: wrap each layer in keras.layers.Bidirectional (forward and backward outputs concatenated).
        dropout: rate of a Dropout layer after each recurrent layer (between layers and before the head).
        return_sequences: whether the last layer returns every step (True) or only its final state.
        name: prefix of the layer names (``{name}_1_lstm``, ``{name}_1_dropout`` ...).

    Returns:
        (batch, time, units * directions) when `return_sequences`, else (batch, units * directions).
    """
    for i in range(1, num_layers + 1):
        layer_name = f"{name}_{i}_{cell}"
        layer = CELLS[cell](units, return_sequences=return_sequences or i < num_layers, name=layer_name)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"{name}_{i}_bidirectional")
        x = layer(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{name}_{i}_dropout")(x)
    return x


def _recurrent_classifier(cell, vocab_size, sequence_length, num_classes, embed_dim, units, num_layers,
                          bidirectional, dropout, include_top, pooling, model_name):
    # === Arguments ===
    check_token_input(vocab_size, sequence_length)
    dropout = check_recurrent(embed_dim, units, num_layers, dropout)
    check_int("num_classes", num_classes)
    check_bool("bidirectional", bidirectional)
    check_bool("include_top", include_top)
    check_choice("pooling", pooling, SEQUENCE_POOLINGS)
    if include_top and pooling is None:
        raise ValueError("`pooling=None` keeps the whole sequence of hidden states, which only a headless model "
                         "(include_top=False) can return; use 'last', 'avg' or 'max' with include_top=True.")

    # === Functional Model ===
    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_dim, name="embedding")(tokens)
    x = apply_recurrent_stack(x, cell, units, num_layers, bidirectional=bidirectional, dropout=dropout,
                              return_sequences=pooling != "last", name="rnn")
    x = pool_features(x, pooling if pooling != "last" else None, "rnn", rank=1)
    return classifier_model(tokens, x, num_classes, include_top, model_name)


_CLASSIFIER_DOC = """{title} sequence classifier: token embedding -> `num_layers` {cell} layer(s) -> softmax.

    Args:
        vocab_size: number of token ids (id 0 = padding included).
        sequence_length: fixed input length, or None for any length.
        num_classes: softmax outputs (2 for a yes/no task: argmax is the label).
        embed_dim: width of the token embedding.
        units: hidden units per recurrent layer (per direction when bidirectional).
        num_layers: stacked recurrent layers (all but the last return every step).
        bidirectional: read the sequence both ways (keras.layers.Bidirectional); the features double.
        dropout: Dropout rate after each recurrent layer.
        include_top: add the softmax head; False returns the pooled features (or the sequence, pooling=None).
        pooling: "last" (the final hidden state), "avg" / "max" over time, or None (headless only).
"""


_VOCAB_INFO = dict(family="recurrent", default_input_shape=(None,), preprocessing="int32 token ids, 0 = padding",
                   reference_params=None, reference_macs=None,
                   reference_source="no paper figure: size depends on the vocabulary")


def _register_classifier(cell: str, title: str, cell_name: str, paper: str, **test_kwargs):
    """Register the `cell` sequence classifier (`<cell>_classifier`): the three share their arguments and
    docstring; the registry's tests build each with its `test_kwargs`."""
    name = f"{cell}_classifier"

    def builder(vocab_size=20_000, sequence_length=None, num_classes=2, embed_dim=64, units=64, num_layers=1,
                bidirectional=False, dropout=0.0, include_top=True, pooling="last"):
        return _recurrent_classifier(cell, vocab_size, sequence_length, num_classes, embed_dim, units, num_layers,
                                     bidirectional, dropout, include_top, pooling, name)

    return register_variant(builder, name, _CLASSIFIER_DOC.format(title=title, cell=cell_name), paper=paper,
                            test_kwargs=dict(vocab_size=20, num_classes=3, embed_dim=8, units=8, **test_kwargs),
                            **_VOCAB_INFO)


simple_rnn_classifier = _register_classifier("simple_rnn", "Elman (SimpleRNN)", "SimpleRNN",
                                             "Elman 1990, Finding structure in time")
lstm_classifier = _register_classifier("lstm", "LSTM", "LSTM", "Hochreiter & Schmidhuber 1997, Long short-term memory",
                                       bidirectional=True)
gru_classifier = _register_classifier("gru", "GRU", "GRU", "Cho et al. 2014, Learning phrase representations using "
                                      "RNN encoder-decoder for statistical machine translation", num_layers=2)


@register_model(family="recurrent", paper="Karpathy 2015, The unreasonable effectiveness of recurrent neural "
                "networks (char-rnn); Graves 2013, Generating sequences with recurrent neural networks",
                default_input_shape=(None,), preprocessing="int32 character ids, 0 = padding",
                reference_params=None, reference_macs=None,
                reference_source="no paper figure: size depends on the vocabulary",
                test_kwargs=dict(vocab_size=20, embed_dim=8, units=8, num_layers=2))
def char_rnn(vocab_size=96, sequence_length=None, embed_dim=32, units=256, num_layers=2, cell="lstm", dropout=0.0):
    """Character-level language model: embedding -> `num_layers` stacked LSTM/GRU layers -> next-token logits.

    Causal by construction (a forward RNN), so the logits at step t depend only on tokens <= t: train with
    teacher forcing on (window, window shifted by one) pairs and decode with kerastk.deploy.generate.

    Args:
        vocab_size: number of token ids (id 0 = padding included).
        sequence_length: fixed window length, or None for any length.
        embed_dim: width of the character embedding.
        units: hidden units per recurrent layer.
        num_layers: stacked recurrent layers.
        cell: "lstm" or "gru" ("simple_rnn" also builds, for comparison).
        dropout: Dropout rate after each recurrent layer.

    Returns:
        keras.Model: tokens (batch, time) int32 -> logits (batch, time, vocab_size), no softmax
        (temperature sampling divides the logits; train with SparseCategoricalCrossentropy(from_logits=True)).
    """
    check_token_input(vocab_size, sequence_length)
    dropout = check_recurrent(embed_dim, units, num_layers, dropout)
    check_choice("cell", cell, tuple(CELLS))

    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, embed_dim, name="embedding")(tokens)
    x = apply_recurrent_stack(x, cell, units, num_layers, dropout=dropout, return_sequences=True, name="rnn")
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(tokens, logits, name="char_rnn")
