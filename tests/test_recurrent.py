"""Recurrent models (SimpleRNN / LSTM / GRU classifiers, char_rnn) and the token datasets (text, memory, imdb)."""
import numpy as np
import pytest

import kerastk
from kerastk import data as kdata
from kerastk.data.text import _NEGATIVE, _POSITIVE, generated_reviews, memory_task

D, U, V = 6, 5, 13  # embedding width, units, vocabulary


def cell_params(cell, d, u):
    """Parameters of one recurrent layer with input width d and u units, counted by hand."""
    return {"simple_rnn": u * (d + u) + u,  # W (d x u), U (u x u), b
            "lstm": 4 * (u * (d + u) + u),  # four gates: input, forget, cell, output
            "gru": 3 * (u * (d + u) + 2 * u)}[cell]  # three gates, reset_after: separate input and recurrent biases


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_classifier_parameter_counts(cell, bidirectional, num_layers):
    model = kerastk.create_model(f"{cell}_classifier", vocab_size=V, num_classes=3, embed_dim=D, units=U,
                                 num_layers=num_layers, bidirectional=bidirectional)
    directions = 2 if bidirectional else 1
    expected = V * D  # embedding
    width = D
    for _ in range(num_layers):
        expected += directions * cell_params(cell, width, U)
        width = directions * U
    expected += width * 3 + 3  # softmax head
    assert model.count_params() == expected
    assert model.output_shape == (None, 3)
    assert model.input_shape == (None, None) and model.inputs[0].dtype == "int32"


@pytest.mark.parametrize("cell, layers", [("lstm", 2), ("gru", 1), ("simple_rnn", 3)])
def test_char_rnn_parameter_count_and_logits(cell, layers):
    model = kerastk.create_model("char_rnn", vocab_size=V, embed_dim=D, units=U, num_layers=layers, cell=cell)
    expected = V * D + cell_params(cell, D, U) + (layers - 1) * cell_params(cell, U, U) + U * V + V
    assert model.count_params() == expected
    assert model.output_shape == (None, None, V)
    assert model.layers[-1].get_config()["activation"] == "linear"  # logits, not probabilities
    fixed = kerastk.create_model("char_rnn", vocab_size=V, sequence_length=7, embed_dim=D, units=U, cell=cell)
    assert fixed.output_shape == (None, 7, V)


def test_char_rnn_is_causal():
    """Changing the token at step t leaves the logits before t untouched (generation relies on it)."""
    import keras

    keras.utils.set_random_seed(0)
    model = kerastk.create_model("char_rnn", vocab_size=V, embed_dim=D, units=U, num_layers=2)
    x = np.random.default_rng(0).integers(1, V, (2, 9)).astype("int32")
    changed = x.copy()
    changed[:, 5] = (changed[:, 5] + 1) % V
    a, b = (np.asarray(model.predict_on_batch(t)) for t in (x, changed))
    np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert np.max(np.abs(a[:, 5:] - b[:, 5:])) > 1e-4


def test_classifier_heads_and_headless_features():
    kw = dict(vocab_size=V, num_classes=4, embed_dim=D, units=U, sequence_length=11)
    bi = dict(kw, bidirectional=True)
    assert kerastk.create_model("gru_classifier", **bi).output_shape == (None, 4)
    for pooling, shape in (("last", (None, 2 * U)), ("avg", (None, 2 * U)), ("max", (None, 2 * U)),
                           (None, (None, 11, 2 * U))):
        model = kerastk.create_model("lstm_classifier", **bi, include_top=False, pooling=pooling)
        assert model.output_shape == shape, pooling
    pooled = kerastk.create_model("simple_rnn_classifier", **kw, pooling="max")
    assert pooled.output_shape == (None, 4)
    kinds = [type(layer).__name__ for layer in pooled.layers]
    assert "GlobalMaxPooling1D" in kinds and pooled.get_layer("rnn_1_simple_rnn").return_sequences
    stacked = kerastk.create_model("gru_classifier", **kw, num_layers=3, dropout=0.2)
    assert [type(layer).__name__ for layer in stacked.layers].count("Dropout") == 3
    assert [stacked.get_layer(f"rnn_{i}_gru").return_sequences for i in (1, 2, 3)] == [True, True, False]
    assert kerastk.model_info("lstm_classifier")["summary"].startswith("LSTM sequence classifier")
    assert kerastk.model_info("char_rnn")["family"] == "recurrent"


@pytest.mark.parametrize("name, kwargs, message", [
    ("lstm_classifier", dict(vocab_size=1), r"vocab_size.*vocab_size=1"),
    ("lstm_classifier", dict(sequence_length=0), r"sequence_length=0"),
    ("gru_classifier", dict(units=0), r"units=0"),
    ("gru_classifier", dict(num_layers=2.0), r"num_layers=2.0"),
    ("simple_rnn_classifier", dict(dropout=1.0), r"dropout=1.0"),
    ("simple_rnn_classifier", dict(embed_dim=-3), r"embed_dim=-3"),
    ("lstm_classifier", dict(num_classes=0), r"num_classes=0"),
    ("lstm_classifier", dict(bidirectional="yes"), r"bidirectional='yes'"),
    ("lstm_classifier", dict(pooling="sum"), r"pooling='sum'"),
    ("lstm_classifier", dict(pooling=None), r"pooling=None.*include_top=False"),
    ("gru_classifier", dict(include_top=1), r"include_top=1"),
    ("char_rnn", dict(cell="rnn"), r"cell='rnn'"),
    ("char_rnn", dict(vocab_size=0), r"vocab_size=0"),
    ("char_rnn", dict(dropout=-0.1), r"dropout=-0.1"),
])
def test_bad_arguments_are_named(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerastk.create_model(name, **kwargs)


# --- data ----------------------------------------------------------------------------------------------------


def test_text_windows_are_next_character_pairs_and_deterministic():
    a = kdata.load("text", seed=0, sequence_length=32, max_chars=40_000)
    b = kdata.load("text", seed=0, sequence_length=32, max_chars=40_000)
    c = kdata.load("text", seed=1, sequence_length=32, max_chars=40_000)
    vocab = a.info["vocab"]
    assert a.task == "sequence" and vocab[0] == "" and len(set(vocab)) == len(vocab)
    assert a.info["input_shape"] == [32] and a.info["sequence_length"] == 32
    assert a.info["preprocessing"]["type"] == "tokens" and "standard-library" in a.info["source"]
    for split in ("train", "val", "test"):
        x, y = getattr(a, f"x_{split}"), getattr(a, f"y_{split}")
        assert x.dtype == np.int32 and y.dtype == np.int32 and x.shape == y.shape and x.shape[1] == 32
        assert x.min() >= 1 and x.max() < len(vocab)  # id 0 is padding: never a character
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets = inputs shifted by one
        np.testing.assert_array_equal(x, getattr(b, f"x_{split}"))
    n = len(a.x_train) + len(a.x_val) + len(a.x_test)
    assert n == (40_000 - 1) // 32 and 0.07 < len(a.x_test) / n < 0.13
    assert not np.array_equal(a.x_test, c.x_test)  # the seed deals the blocks
    text = "".join(vocab[i] for i in a.x_train[0])
    assert sum(ch.isalpha() for ch in text) > 16  # English, not noise


def test_text_from_a_user_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    data = kdata.load("text", seed=0, text=str(path), sequence_length=10, block_windows=2)
    assert data.info["vocab"] == [""] + sorted(set("the quick brown fox jumps over the lazy dog. "))
    assert "corpus.txt" in data.info["source"]
    with pytest.raises(FileNotFoundError, match="no_such.txt"):
        kdata.load("text", text=str(tmp_path / "no_such.txt"))
    path.write_text("too short")
    with pytest.raises(ValueError, match="too short"):
        kdata.load("text", text=str(path), sequence_length=10)
    with pytest.raises(ValueError, match="sequence_length=1"):
        kdata.load("text", sequence_length=1)


def test_memory_task_format():
    x, y, position, vocab = memory_task(n_samples=500, length=12, min_gap=3, seed=0)
    assert x.shape == (500, 12) and x.dtype == np.int32 and vocab[:3] == ["", "A", "B"]
    markers = x <= 2
    assert np.all(markers.sum(axis=1) == 1)  # exactly one marker per sequence
    np.testing.assert_array_equal(np.argmax(markers, axis=1), position)
    np.testing.assert_array_equal(x[np.arange(500), position], y + 1)  # the label is the marker
    assert position.max() <= 12 - 1 - 3 and position.min() == 0
    assert 0.4 < y.mean() < 0.6
    d = kdata.load("memory", seed=3, n_samples=400, length=20)
    again = kdata.load("memory", seed=3, n_samples=400, length=20)
    np.testing.assert_array_equal(d.x_train, again.x_train)
    assert d.x_train.dtype == np.int32 and d.x_train.shape[1] == 20 and d.num_classes == 2
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 400 and d.task == "classification"
    with pytest.raises(ValueError, match="min_gap"):
        kdata.load("memory", length=5, min_gap=5)


def test_imdb_offline_uses_generated_reviews(capsys):
    data = kdata.load("imdb", seed=0, maxlen=60, n_samples=300)  # conftest sets KERASTK_OFFLINE=1: no attempt
    assert "generated_reviews" in data.info["source"] and capsys.readouterr().err == ""
    assert data.class_names == ["negative", "positive"] and data.x_train.shape[1] == 60
    assert data.x_train.dtype == np.int32 and set(np.unique(data.y_train)) == {0, 1}
    vocab = data.info["vocab"]
    assert vocab[:3] == ["", "<s>", "<unk>"]
    x, y, _ = generated_reviews(200, maxlen=60, seed=0)
    for row, label in zip(x[:50], y[:50]):
        words = [vocab[t] for t in row if t]
        assert words[0] == "<s>" and row[-1] != 0  # padded at the start, like pad_sequences(padding="pre")
        # the label follows the opinions: count each "was [not] ... adjective" sentence
        score, text = 0, " ".join(words[1:])
        for sentence in text.split(" was ")[1:]:  # only opinions use "was"
            head = sentence.split()
            adjective = next(w for w in head if w in _POSITIVE + _NEGATIVE)
            score += 1 if (adjective in _POSITIVE) != (head[0] == "not") else -1
        assert label == int(score > 0)
    np.testing.assert_array_equal(x, generated_reviews(200, maxlen=60, seed=0)[0])


def test_imdb_notice_when_keras_unreachable_and_real_loader_format(monkeypatch, capsys):
    import keras

    def offline(**kwargs):
        raise OSError("no network")

    monkeypatch.setenv("KERASTK_OFFLINE", "0")
    monkeypatch.setattr(keras.datasets.imdb, "load_data", offline)
    data = kdata.load("imdb", seed=0, maxlen=30, n_samples=100)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "imdb unavailable (OSError)" in err[0] and "generated" in err[0]
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 100
    with pytest.raises(OSError):
        kdata.load("imdb", source="keras")

    # the real path: keras.datasets.imdb's lists of word ids, padded at the start, 5,000 validation reviews
    rng = np.random.default_rng(0)
    reviews = [[1] + list(rng.integers(3, 50, rng.integers(5, 40))) for _ in range(5200)]
    labels = rng.integers(0, 2, 5200)
    monkeypatch.setattr(keras.datasets.imdb, "load_data", lambda num_words: (
        (np.array(reviews[:5100], dtype=object), labels[:5100]), (np.array(reviews[5100:], dtype=object),
                                                                  labels[5100:])))
    monkeypatch.setattr(keras.datasets.imdb, "get_word_index", lambda: {"good": 1, "bad": 2})
    real = kdata.load("imdb", seed=0, maxlen=20, num_words=50)
    assert real.info["source"].startswith("keras.datasets.imdb") and capsys.readouterr().err == ""
    assert (len(real.x_train), len(real.x_val), len(real.x_test)) == (100, 5000, 100)
    assert real.x_train.dtype == np.int32 and real.x_train.shape == (100, 20)
    assert real.info["vocab"][:5] == ["", "<s>", "<unk>", "<unk>", "good"] and len(real.info["vocab"]) == 50
    first_short = next(i for i, r in enumerate(reviews[5100:]) if len(r) < 20)
    short, row = reviews[5100 + first_short], real.x_test[first_short]
    np.testing.assert_array_equal(row[20 - len(short):], short)  # padded at the start
    assert np.all(row[:20 - len(short)] == 0)


# --- learning ------------------------------------------------------------------------------------------------


def test_lstm_learns_the_memory_task_on_short_sequences():
    import keras

    keras.utils.set_random_seed(0)
    data = kdata.load("memory", seed=0, n_samples=600, length=8)
    model = kerastk.create_model("lstm_classifier", vocab_size=len(data.info["vocab"]), sequence_length=8,
                                 num_classes=2, embed_dim=8, units=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=6, batch_size=32, verbose=0)
    accuracy = model.evaluate(data.x_test, data.y_test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy >= 0.95, accuracy
