"""kerastk.deploy.generate: the decoding loop, over numpy stand-ins, a Keras model and its ONNX export."""
import numpy as np
import pytest

from kerastk.deploy.generate import decode_tokens, encode_text, generate, keras_predictor, onnx_predictor

VOCAB = 7


def counting_predict(arrays):
    """A fake model: the most likely next token is (last real token + 1) mod VOCAB, read causally."""
    tokens = arrays[-1]
    logits = np.full((*tokens.shape, VOCAB), -5.0)
    nxt = (tokens + 1) % VOCAB
    np.put_along_axis(logits, nxt[..., None], 5.0, axis=-1)
    return logits


def test_greedy_follows_the_logits_with_and_without_a_window():
    prefix = np.array([[3], [5]])
    expected = np.array([[3, 4, 5, 6, 0, 1], [5, 6, 0, 1, 2, 3]])
    np.testing.assert_array_equal(generate(counting_predict, prefix, 5), expected)
    np.testing.assert_array_equal(generate(counting_predict, prefix, 5, window=6), expected)
    # a window shorter than the sequence slides: still reads the last real token
    np.testing.assert_array_equal(generate(counting_predict, prefix, 5, window=2), expected)


def test_end_token_pads_finished_rows_and_stops():
    out = generate(counting_predict, np.array([[1], [4]]), 6, end_id=3, pad_id=0)
    np.testing.assert_array_equal(out, [[1, 2, 3, 0, 0, 0, 0], [4, 5, 6, 0, 1, 2, 3]])
    assert out.dtype == np.int32


def test_temperature_sampling_matches_the_softmax_and_is_seeded():
    logits = np.log(np.array([0.1, 0.2, 0.7]))

    def predict(arrays):
        return np.broadcast_to(logits, (*arrays[-1].shape, 3))

    rows = np.zeros((20000, 1), dtype=np.int32)
    draws = generate(predict, rows, 1, temperature=1.0, seed=0)[:, 1]
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / len(draws), [0.1, 0.2, 0.7], atol=0.01)
    sharp = generate(predict, rows, 1, temperature=0.25, seed=0)[:, 1]
    p = np.array([0.1, 0.2, 0.7]) ** 4
    np.testing.assert_allclose(np.bincount(sharp, minlength=3) / len(sharp), p / p.sum(), atol=0.01)
    again = generate(predict, rows, 1, temperature=1.0, seed=0)[:, 1]
    other = generate(predict, rows, 1, temperature=1.0, seed=1)[:, 1]
    assert np.array_equal(draws, again) and not np.array_equal(draws, other)


@pytest.mark.parametrize("kwargs, message", [
    (dict(prefix=np.zeros((2, 0), int), steps=1), "prefix"),
    (dict(prefix=np.zeros((2, 1), float), steps=1), "prefix"),
    (dict(prefix=np.zeros((2, 1), int), steps=-1), "steps"),
    (dict(prefix=np.zeros((2, 1), int), steps=1, temperature=-0.5), "temperature"),
    (dict(prefix=np.zeros((2, 1), int), steps=1, window=0), "window"),
    (dict(prefix=np.zeros((2, 1), int), steps=1, context=[np.zeros((3, 4))]), "context"),
])
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(counting_predict, **kwargs)


def test_a_model_that_does_not_return_sequence_logits_is_refused():
    with pytest.raises(ValueError, match=r"logits \(batch, time, vocab\)"):
        generate(lambda arrays: np.zeros((len(arrays[-1]), VOCAB)), np.zeros((2, 1), int), 2)


def test_text_round_trip():
    vocab = ["", "<s>", "</s>", "a", "b", "c"]
    ids = encode_text(["abc", "ca"], vocab, length=5)
    np.testing.assert_array_equal(ids, [[3, 4, 5, 0, 0], [5, 3, 0, 0, 0]])
    assert decode_tokens(np.array([[1, 3, 4, 2, 5]]), vocab) == ["ab"]
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        encode_text("az", vocab)


def _tiny_decoder(length):
    """Context (4 floats) -> initial GRU state; tokens -> embedding -> GRU -> logits. Causal in time."""
    import keras

    keras.utils.set_random_seed(0)
    context = keras.Input((4,), name="context")
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    state = keras.layers.Dense(16, activation="tanh", name="init_state")(context)
    x = keras.layers.Embedding(VOCAB, 8, name="embed")(tokens)
    x = keras.layers.GRU(16, return_sequences=True, name="gru")(x, initial_state=state)
    logits = keras.layers.Dense(VOCAB, name="logits")(x)
    return keras.Model([context, tokens], logits, name="tiny_decoder")


@pytest.mark.parametrize("length", [6, None], ids=["fixed", "variable"])
def test_onnx_loop_gives_the_keras_tokens(length, tmp_path):
    from kerastk.deploy import export_onnx

    model = _tiny_decoder(length)
    rng = np.random.default_rng(0)
    context = rng.standard_normal((5, 4)).astype("float32")
    sample = [context, rng.integers(0, VOCAB, (5, length or 6)).astype("int32")]
    result = export_onnx(model, tmp_path / "decoder.onnx", inputs=sample)
    assert result.validation.passed
    if length is None:  # validated at a second sequence length too
        assert result.validation.sequence_lengths == (6, 4)
    prefix = np.ones((5, 1), dtype=np.int32)
    keras_loop, onnx_loop = keras_predictor(model), onnx_predictor(tmp_path / "decoder.onnx")
    for temperature, seed in ((0.0, 0), (1.0, 3), (1.5, 4)):
        a = generate(keras_loop, prefix, 5, context=[context], temperature=temperature, seed=seed, window=6)
        b = generate(onnx_loop, prefix, 5, context=[context], temperature=temperature, seed=seed, window=6)
        np.testing.assert_array_equal(a, b)
    if length is None:  # causal: feeding only the tokens so far gives the same greedy tokens as the padded buffer
        exact = generate(onnx_loop, prefix, 5, context=[context], window=None)
        np.testing.assert_array_equal(exact, generate(keras_loop, prefix, 5, context=[context], window=6))
