"""Attention, positional encoding, seq2seq_attention, transformer and the dates data - under the backend this
process runs: numpy references, exact parameter counts, causality in the target tokens, greedy decoding from
Keras and ONNX, and the generated data's determinism, format and held-out dates."""
import datetime

import keras
import numpy as np
import pytest

import kerastk
from kerastk.layers import BahdanauAttention, PaddingMask, PositionalEncoding
from kerastk.layers.positional import sinusoidal_table
from kerastk.models.seq2seq import attention_model


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


# === BahdanauAttention ===

def bahdanau_ref(query, keys, values, w1, w2, b, v, mask=None):
    """score_ij = v . tanh(W1 q_i + W2 k_j + b); softmax over j (masked keys excluded); context = sum a_ij v_j."""
    out_c = np.zeros((query.shape[0], query.shape[1], values.shape[-1]))
    out_w = np.zeros((query.shape[0], query.shape[1], keys.shape[1]))
    for n in range(query.shape[0]):
        for i in range(query.shape[1]):
            scores = np.array([v @ np.tanh(query[n, i] @ w1 + keys[n, j] @ w2 + b) for j in range(keys.shape[1])])
            keep = np.ones(keys.shape[1], bool) if mask is None else mask[n].astype(bool)
            if not keep.any():
                continue
            e = np.where(keep, np.exp(scores - scores[keep].max()), 0.0)
            out_w[n, i] = e / e.sum()
            out_c[n, i] = out_w[n, i] @ values[n]
    return out_c, out_w


def _set_attention_weights(layer, seed=1):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.standard_normal(w.shape).astype("float32") * 0.5)
    w1, w2 = _np(layer.query_kernel), _np(layer.key_kernel)
    b = _np(layer.bias) if layer.use_bias else np.zeros(layer.units)
    return w1, w2, b, _np(layer.score_kernel)[:, 0]


def test_bahdanau_matches_numpy_and_rows_sum_to_one():
    query, keys, values = _rand(2, 3, 5, seed=0), _rand(2, 4, 6, seed=1), _rand(2, 4, 7, seed=2)
    layer = BahdanauAttention(8)
    layer(query, keys, values)
    w1, w2, b, v = _set_attention_weights(layer)
    context, weights = (_np(t) for t in layer(query, keys, values))
    ref_c, ref_w = bahdanau_ref(query, keys, values, w1, w2, b, v)
    assert context.shape == (2, 3, 7) and weights.shape == (2, 3, 4)
    np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, ref_c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert layer.compute_output_shape((2, 3, 5), (2, 4, 6), (2, 4, 7)) == [(2, 3, 7), (2, 3, 4)]


def test_bahdanau_values_default_to_keys_and_single_query():
    query, keys = _rand(2, 5, seed=3), _rand(2, 6, 4, seed=4)
    layer = BahdanauAttention(3, use_bias=False)
    layer(query, keys)
    w1, w2, b, v = _set_attention_weights(layer)
    context, weights = (_np(t) for t in layer(query, keys))
    ref_c, ref_w = bahdanau_ref(query[:, None], keys, keys, w1, w2, b, v)
    assert context.shape == (2, 4) and weights.shape == (2, 6)
    np.testing.assert_allclose(weights, ref_w[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, ref_c[:, 0], rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape((None, 5), (None, 6, 4)) == [(None, 4), (None, 6)]


def test_bahdanau_key_mask_gives_padding_zero_weight():
    query, keys = _rand(3, 2, 4, seed=5), _rand(3, 5, 4, seed=6)
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 0, 1], [0, 0, 0, 0, 0]], dtype=bool)
    layer = BahdanauAttention(6)
    layer(query, keys)
    w1, w2, b, v = _set_attention_weights(layer)
    context, weights = (_np(t) for t in layer(query, keys, key_mask=mask))
    ref_c, ref_w = bahdanau_ref(query, keys, keys, w1, w2, b, v, mask)
    np.testing.assert_allclose(weights, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, ref_c, rtol=1e-5, atol=1e-5)
    assert np.all(weights[~np.broadcast_to(mask[:, None], weights.shape)] == 0)
    np.testing.assert_allclose(weights[:2].sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[2] == 0) and np.all(context[2] == 0)  # every key masked: nothing to attend to


def test_bahdanau_parameter_count_config_and_errors():
    layer = BahdanauAttention(10, name="att")
    layer(_rand(1, 2, 7), _rand(1, 3, 9))
    assert layer.count_params() == (7 + 9 + 1 + 1) * 10
    no_bias = BahdanauAttention(10, use_bias=False)
    no_bias(_rand(1, 2, 7), _rand(1, 3, 9))
    assert no_bias.count_params() == (7 + 9 + 1) * 10
    clone = BahdanauAttention.from_config(layer.get_config())
    assert (clone.units, clone.use_bias, clone.name) == (10, True, "att")
    with pytest.raises(ValueError, match="units"):
        BahdanauAttention(0)
    with pytest.raises(ValueError, match="use_bias"):
        BahdanauAttention(4, use_bias="yes")
    with pytest.raises(ValueError, match="keys"):
        BahdanauAttention(4)(_rand(1, 2, 3), _rand(1, 3))


def test_padding_mask():
    tokens = np.array([[3, 1, 0, 0], [0, 2, 0, 5]], dtype="int32")
    np.testing.assert_array_equal(_np(PaddingMask()(tokens)), tokens != 0)
    np.testing.assert_array_equal(_np(PaddingMask(pad_id=2)(tokens)), tokens != 2)
    assert PaddingMask(pad_id=3).get_config()["pad_id"] == 3
    with pytest.raises(ValueError, match="pad_id"):
        PaddingMask(pad_id=-1)


# === PositionalEncoding ===

def test_positional_encoding_matches_the_formula():
    d, length = 16, 64
    table = sinusoidal_table(length, d)
    t = np.arange(length)
    # spot values written straight from Vaswani et al. section 3.5
    np.testing.assert_allclose(table[:, 0], np.sin(t))
    np.testing.assert_allclose(table[:, 1], np.cos(t))
    np.testing.assert_allclose(table[:, 6], np.sin(t / 10000 ** (6 / d)))
    np.testing.assert_allclose(table[:, 15], np.cos(t / 10000 ** (14 / d)))
    x = _rand(2, length, d)
    y = _np(PositionalEncoding()(x))
    np.testing.assert_allclose(y - x, np.broadcast_to(table, y.shape), atol=3e-5)
    scaled = _np(PositionalEncoding(scale_inputs=True, max_wavelength=100.0)(x))
    np.testing.assert_allclose(scaled, x * 4.0 + sinusoidal_table(length, d, 100.0), atol=3e-5)


def test_positional_encoding_any_length_in_one_model():
    inputs = keras.Input((None, 6))
    model = keras.Model(inputs, PositionalEncoding()(inputs))
    for length in (1, 5, 40):
        np.testing.assert_allclose(_np(model(np.zeros((1, length, 6), "float32")))[0], sinusoidal_table(length, 6),
                                   atol=2e-5)
    layer = PositionalEncoding(max_wavelength=500.0, scale_inputs=True)
    assert PositionalEncoding.from_config(layer.get_config()).get_config() == layer.get_config()
    assert layer.compute_output_shape((None, None, 6)) == (None, None, 6)
    with pytest.raises(ValueError, match="max_wavelength"):
        PositionalEncoding(max_wavelength=1.0)
    with pytest.raises(ValueError, match="features"):
        PositionalEncoding()(np.zeros((2, 3), "float32"))


# === parameter counts by formula ===

def _gru(inp, units):  # Keras GRU, reset_after=True: two bias vectors per gate
    return 3 * (inp * units + units * units + 2 * units)


def _lstm(inp, units):
    return 4 * (inp * units + units * units + units)


@pytest.mark.parametrize("cell, bidirectional", [("gru", True), ("lstm", True), ("gru", False), ("lstm", False)])
def test_seq2seq_parameter_count(cell, bidirectional):
    vs, vt, e, u, a = 23, 14, 8, 12, 10
    model = kerastk.create_model("seq2seq_attention", source_vocab=vs, target_vocab=vt, embed_dim=e, units=u,
                                 cell=cell, bidirectional=bidirectional, attention_units=a)
    rnn = _gru if cell == "gru" else _lstm
    enc_dim = 2 * u if bidirectional else u
    expected = (vs * e + (2 if bidirectional else 1) * rnn(e, u)
                + (2 * u * u + u) * (2 if cell == "lstm" else 1) * bidirectional  # tanh bridge per state
                + vt * e + rnn(e, u)  # decoder
                + (u + enc_dim + 2) * a  # attention: W1, W2, b, v
                + (u + enc_dim) * u + u  # attentional hidden state
                + u * vt + vt)  # logits
    assert model.count_params() == expected
    assert model.output_shape == (None, None, vt)
    assert [t.name for t in model.inputs] == ["source_tokens", "target_tokens"]


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_parameter_count(norm_first):
    vs, vt, d, f, layers = 23, 14, 16, 24, 2
    model = kerastk.create_model("transformer", source_vocab=vs, target_vocab=vt, num_layers=layers, d_model=d,
                                 num_heads=4, ff_dim=f, norm_first=norm_first)
    mha = 4 * (d * d + d)  # query, key, value and output projections with biases
    ffn = d * f + f + f * d + d
    encoder = mha + ffn + 2 * 2 * d
    decoder = 2 * mha + ffn + 3 * 2 * d
    expected = (vs + vt) * d + layers * (encoder + decoder) + d * vt + vt + (4 * d if norm_first else 0)
    assert model.count_params() == expected
    assert model.output_shape == (None, None, vt)


def test_transformer_classifier_count_and_head():
    model = kerastk.create_model("transformer_classifier", vocab_size=30, num_classes=3, num_layers=1, d_model=8,
                                 num_heads=2, ff_dim=16)
    d, f = 8, 16
    assert model.count_params() == 30 * d + 4 * (d * d + d) + (d * f + f + f * d + d) + 4 * d + d * 3 + 3
    assert model.output_shape == (None, 3)
    probs = _np(model(np.array([[4, 5, 6, 0, 0]], "int32")))
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-6)
    # padding is masked out of attention and of the average: trailing pads do not change the prediction
    np.testing.assert_allclose(_np(model(np.array([[4, 5, 6]], "int32"))), probs, atol=1e-6)
    headless = kerastk.create_model("transformer_classifier", vocab_size=30, include_top=False, pooling=None,
                                    num_layers=1, d_model=8, num_heads=2, ff_dim=16)
    assert headless.output_shape == (None, None, 8)


@pytest.mark.parametrize("name, kwargs, message", [
    ("seq2seq_attention", dict(cell="rnn"), "cell"),
    ("seq2seq_attention", dict(units=0), "units"),
    ("seq2seq_attention", dict(source_length=0), "source_length"),
    ("seq2seq_attention", dict(target_vocab=2), "target_vocab"),
    ("seq2seq_attention", dict(dropout=1.0), "dropout"),
    ("transformer", dict(d_model=30, num_heads=4), "divisible"),
    ("transformer", dict(num_layers=0), "num_layers"),
    ("transformer", dict(norm_first="yes"), "norm_first"),
    ("transformer_classifier", dict(pooling=None), "pooling"),
    ("transformer_classifier", dict(sequence_length=-3), "sequence_length"),
])
def test_bad_arguments_name_the_argument(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerastk.create_model(name, **kwargs)


# === causality: the logits at step t depend on target tokens <= t only ===

SMALL = {"seq2seq_attention": dict(source_vocab=15, target_vocab=12, embed_dim=8, units=8),
         "seq2seq_attention_lstm": dict(source_vocab=15, target_vocab=12, embed_dim=8, units=8, cell="lstm"),
         "transformer": dict(source_vocab=15, target_vocab=12, num_layers=2, d_model=16, num_heads=2, ff_dim=16,
                             dropout=0.0),
         "transformer_post_norm": dict(source_vocab=15, target_vocab=12, num_layers=1, d_model=16, num_heads=2,
                                       ff_dim=16, norm_first=False)}


def _small(key, **extra):
    name = "seq2seq_attention" if key.startswith("seq2seq") else "transformer"
    return kerastk.create_model(name, **SMALL[key], **extra)


@pytest.mark.parametrize("key", sorted(SMALL))
def test_decoder_is_causal(key):
    model = _small(key)
    rng = np.random.default_rng(0)
    source = rng.integers(1, 15, size=(3, 9)).astype("int32")
    target = rng.integers(1, 12, size=(3, 7)).astype("int32")
    positions = (0, 3, 6)
    variants = []
    for k in positions:
        changed = target.copy()
        changed[:, k] = (changed[:, k] % 11) + 1  # a different non-padding token at position k
        variants.append(changed)
    other_source = source.copy()
    other_source[:, -1] = (other_source[:, -1] % 14) + 1
    # one call (eager JAX is slow per call): the original, one row group per changed position, a changed source
    sources = np.concatenate([source] * (len(positions) + 1) + [other_source])
    targets = np.concatenate([target, *variants, target])
    out = _np(model([sources, targets])).reshape(len(positions) + 2, 3, 7, 12)
    base = out[0]
    for i, k in enumerate(positions):
        np.testing.assert_allclose(out[i + 1][:, :k], base[:, :k], rtol=0, atol=1e-5)  # earlier steps: unchanged
        assert np.max(np.abs(out[i + 1][:, k:] - base[:, k:])) > 1e-4  # position k and later steps change
    assert np.max(np.abs(out[-1][:, 0] - base[:, 0])) > 1e-4  # step 0 already sees the source


def test_transformer_ignores_source_padding():
    model = _small("transformer")
    source = np.array([[5, 6, 7, 8]], "int32")
    target = np.array([[1, 3, 4]], "int32")
    padded = np.array([[5, 6, 7, 8, 0, 0, 0]], "int32")
    np.testing.assert_allclose(_np(model([padded, target])), _np(model([source, target])), atol=1e-5)


def test_attention_model_gives_the_weights():
    model = _small("seq2seq_attention")
    source = np.array([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11]], "int32")
    target = np.array([[1, 3, 4], [1, 5, 6]], "int32")
    weights = _np(attention_model(model)([source, target]))
    assert weights.shape == (2, 3, 5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[0, :, 3:] == 0)  # padding gets no attention
    with pytest.raises(ValueError, match="no layer named"):
        attention_model(kerastk.create_model("transformer", **SMALL["transformer"]))


# === greedy decoding: Keras and the exported ONNX file give the same tokens ===

@pytest.mark.parametrize("key", ["seq2seq_attention", "transformer"])
def test_greedy_decoding_keras_and_onnx_agree(key, tmp_path):
    from kerastk.deploy import export_onnx
    from kerastk.deploy.generate import generate, keras_predictor, onnx_predictor

    model = _small(key, source_length=9, target_length=6)
    rng = np.random.default_rng(1)
    source = rng.integers(3, 15, size=(5, 9)).astype("int32")
    result = export_onnx(model, tmp_path / "model.onnx")
    assert result.validation.passed
    start = np.ones((5, 1), "int32")
    keras_tokens = generate(keras_predictor(model), start, 6, context=[source], window=6)
    onnx_tokens = generate(onnx_predictor(tmp_path / "model.onnx"), start, 6, context=[source], window=6)
    np.testing.assert_array_equal(keras_tokens, onnx_tokens)
    assert keras_tokens.shape == (5, 7)
    sampled = [generate(p, start, 6, context=[source], window=6, temperature=1.0, seed=3)
               for p in (keras_predictor(model), onnx_predictor(tmp_path / "model.onnx"))]
    np.testing.assert_array_equal(*sampled)


# === the dates data ===

def test_dates_are_deterministic_and_well_formed():
    from kerastk.data import load
    from kerastk.data.dates import FORMATS, SOURCE_VOCAB, TARGET_VOCAB, format_date
    from kerastk.deploy.generate import decode_tokens

    a, b = load("dates", seed=3, n_samples=600), load("dates", seed=3, n_samples=600)
    c = load("dates", seed=4, n_samples=600)
    for x, y in ((a.x_train[0], b.x_train[0]), (a.x_test[1], b.x_test[1]), (a.y_val, b.y_val)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.x_train[0], c.x_train[0])
    assert a.task == "sequence" and len(a.y_train) + len(a.y_val) + len(a.y_test) == 600
    s_len = a.info["source_length"]
    assert [x.shape[1:] for x in a.x_train] == [(s_len,), (11,)] and a.y_train.shape[1:] == (11,)
    assert all(x.dtype == np.int32 for x in (*a.x_train, *a.x_test, a.y_train))
    assert SOURCE_VOCAB[:3] == TARGET_VOCAB[:3] == ["", "<s>", "</s>"] == a.info["target_vocab"][:3]
    # decoder input = <s> + target[:-1]; every target is ten characters then </s>
    np.testing.assert_array_equal(a.x_train[1][:, 0], 1)
    np.testing.assert_array_equal(a.x_train[1][:, 1:], a.y_train[:, :-1])
    np.testing.assert_array_equal(a.y_train[:, -1], 2)
    # the raw test strings are the encoded sources, and each writes its target's date in one of the formats
    sources = decode_tokens(a.x_test[0], SOURCE_VOCAB, skip=(0,))
    assert sources == a.info["test_source_text"]
    for text, iso in zip(sources, decode_tokens(a.y_test, TARGET_VOCAB)):
        date = datetime.date.fromisoformat(iso)
        assert 1950 <= date.year <= 2049
        assert text in {format_date(date, f) for f in FORMATS}, (text, iso)
    longest = datetime.date(2020, 9, 30)  # a Wednesday in September with a two-digit day
    assert longest.weekday() == 2 and s_len == max(len(format_date(longest, f)) for f in FORMATS) == 27


def test_dates_formats_and_two_digit_years():
    from kerastk.data.dates import format_date

    d = datetime.date(2019, 3, 5)
    assert format_date(d, "d month yyyy") == "5 march 2019"
    assert format_date(d, "Mon d, yyyy") == "Mar 5, 2019"
    assert format_date(d, "dd/mm/yy") == "05/03/19"
    assert format_date(d, "Weekday d Month yyyy") == "Tuesday 5 March 2019"
    assert format_date(datetime.date(2011, 11, 22), "Month dth, yyyy") == "November 22nd, 2011"
    assert format_date(datetime.date(1999, 1, 11), "the dth of month yyyy") == "the 11th of january 1999"
    with pytest.raises(ValueError, match="Unknown date format"):
        format_date(d, "yyyy")


def test_dates_test_split_dates_are_held_out():
    from kerastk.data import load
    from kerastk.deploy.generate import decode_tokens

    data = load("dates", seed=0, n_samples=6000)
    vocab = data.info["target_vocab"]
    train, val, test = (set(decode_tokens(y, vocab)) for y in (data.y_train, data.y_val, data.y_test))
    assert not train & test and not train & val and not val & test
    assert len(test) == len(data.y_test)  # fewer test samples than held-out dates: each date once
    per_split = data.info["dates_per_split"]
    assert sum(per_split.values()) == (datetime.date(2049, 12, 31) - datetime.date(1950, 1, 1)).days + 1
    with pytest.raises(ValueError, match="n_samples"):
        load("dates", n_samples=0)
    with pytest.raises(ValueError, match="formats"):
        load("dates", formats=["nope"])
