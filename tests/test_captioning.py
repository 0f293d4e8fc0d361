"""Captioning: the shape-scene captions data, corpus BLEU-4, and the captioner model (shapes, parameter counts,
causality, image conditioning, the ONNX decoding loop) - under the backend this process runs."""
import math

import numpy as np
import pytest

import kerastk
from kerastk.data.captions import RELATIONS, caption_vocab, corpus_bleu, load_shape_captions, shape_scenes
from kerastk.data.generators import COLOURS, SHAPES, shape_mask

# --- data ------------------------------------------------------------------------------------------------------


def parse(caption):
    """'a red circle above a blue square' -> ([(colour, kind), ...], relation or None)."""
    words = caption.split()
    if len(words) == 3:
        assert words[0] == "a"
        return [(words[1], words[2])], None
    relation = " ".join(words[3:-3])
    assert words[0] == "a" and words[-3] == "a" and relation in RELATIONS, caption
    return [(words[1], words[2]), (words[-2], words[-1])], relation


def test_scenes_are_seeded():
    a_img, a_cap, a_scn = shape_scenes(n_samples=40, seed=3)
    b_img, b_cap, b_scn = shape_scenes(n_samples=40, seed=3)
    c_img, c_cap, _ = shape_scenes(n_samples=40, seed=4)
    np.testing.assert_array_equal(a_img, b_img)
    assert a_cap == b_cap and a_scn == b_scn
    assert not np.array_equal(a_img, c_img) and a_cap != c_cap
    assert a_img.dtype == np.float32 and a_img.shape == (40, 32, 32, 3)
    assert a_img.min() >= 0.0 and a_img.max() <= 255.0


def test_captions_describe_the_drawn_shapes():
    images, captions, scenes = shape_scenes(n_samples=300, image_size=32, noise=0.0, seed=0)
    counts = {1: 0, 2: 0}
    for image, caption, scene in zip(images, captions, scenes):
        counts[len(scene)] += 1
        named, relation = parse(caption)
        assert len(named) == len(scene)
        # every shape is drawn where the scene says, in its colour (noise 0: exact pixel values)
        for s in scene:
            mask = shape_mask(s["kind"], 32, s["cy"], s["cx"], s["radius"], s["angle"])
            assert mask.sum() > 10
            np.testing.assert_allclose(image[mask], np.tile(np.array(COLOURS[s["colour"]]) * 255, (mask.sum(), 1)),
                                       atol=1e-3)
        if len(scene) == 1:
            assert relation is None and named == [(scene[0]["colour"], scene[0]["kind"])]
            continue
        a, b = scene
        dy, dx = b["cy"] - a["cy"], b["cx"] - a["cx"]
        # the axis separating the centres most is clear (>= 1.5x the other) and gives the relation word
        assert max(abs(dy), abs(dx)) >= 1.5 * min(abs(dy), abs(dx))
        assert math.hypot(dy, dx) >= a["radius"] + b["radius"] + 1.0  # the shapes do not touch
        vertical = abs(dy) > abs(dx)
        assert relation == ("above" if vertical else "left of")
        # the first-named shape is the upper (vertical) or the left (horizontal) one
        first, second = sorted(scene, key=lambda s: s["cy"] if vertical else s["cx"])
        assert named == [(first["colour"], first["kind"]), (second["colour"], second["kind"])]
    assert 0.65 < counts[2] / 300 < 0.85  # two_shape_fraction 0.75


def test_every_kind_colour_and_relation_occurs():
    _, captions, _ = shape_scenes(n_samples=300, seed=1)
    words = {w for c in captions for w in c.split()}
    assert set(SHAPES) | set(COLOURS) | {"a", "above", "left", "of"} == words


def test_dataset_format():
    data = load_shape_captions(0, n_samples=200, image_size=32)
    vocab = data.info["vocab"]
    assert vocab[:3] == ["", "<s>", "</s>"] and vocab == caption_vocab()
    assert len(vocab) == 15 and len(set(vocab)) == 15
    assert data.task == "sequence" and data.input_shape == (32, 32, 3)
    length = data.info["caption_length"]
    assert length == 9  # "a red circle left of a blue square" + </s>
    sizes = []
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)):
        images, decoder_in = x
        sizes.append(len(images))
        assert images.dtype == np.float32 and images.shape[1:] == (32, 32, 3)
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert decoder_in.dtype == np.int32 and y.dtype == np.int32
        assert decoder_in.shape == y.shape == (len(images), length)
        assert np.all(decoder_in[:, 0] == 1)  # <s>
        for row_in, row_out in zip(decoder_in, y):
            n = int(np.sum(row_out != 0))
            assert row_out[n - 1] == 2 and np.all(row_out[n:] == 0) and 2 not in row_out[:n - 1]
            np.testing.assert_array_equal(row_in[1:n], row_out[:n - 1])  # teacher forcing: shifted by one
            assert np.all(row_in[n:] == 0) and 1 not in row_in[1:]
    assert sizes == [139, 31, 30]  # 70 / 15 / 15 by kerastk.data.split_dataset (sklearn rounding)
    from kerastk.deploy.generate import decode_tokens

    assert decode_tokens(data.y_test, vocab, sep=" ") == data.info["test_captions"]
    assert data.info["preprocessing"]["type"] == "scale"


def test_dataset_is_the_scenes_split_and_seeded():
    data = load_shape_captions(5, n_samples=100)
    again = kerastk.data.load("shape_captions", seed=5, n_samples=100)
    for a, b in zip([*data.x_train, data.y_train], [*again.x_train, again.y_train]):
        np.testing.assert_array_equal(a, b)
    images, captions, _ = shape_scenes(n_samples=100, seed=5)
    # each test image is one of the generated scenes (pixels / 255) with that scene's caption
    for img, caption in zip(data.x_test[0], data.info["test_captions"]):
        k = int(np.argmin(np.abs(images / 255.0 - img).reshape(100, -1).max(axis=1)))
        np.testing.assert_allclose(images[k] / 255.0, img, atol=1e-6)
        assert captions[k] == caption
    other = load_shape_captions(6, n_samples=100)
    assert not np.array_equal(other.x_train[0], data.x_train[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=16), "image_size"),
    (dict(kinds=("circle", "hexagon")), "kinds"),
    (dict(colours=("red", "red")), "colours"),
    (dict(noise=-1.0), "noise"),
    (dict(two_shape_fraction=1.5), "two_shape_fraction"),
    (dict(n_samples=3), "n_samples"),
])
def test_bad_data_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_shape_captions(0, **{"n_samples": 20, **kwargs})


def test_restricted_kinds_and_colours_shrink_the_vocabulary():
    data = load_shape_captions(0, n_samples=40, kinds=("circle", "square"), colours=("red", "blue"),
                               two_shape_fraction=0.0)
    assert data.info["vocab"] == ["", "<s>", "</s>", "a", "red", "blue", "circle", "square", "above", "left", "of"]
    assert data.info["caption_length"] == 4  # one shape only: "a red circle </s>"
    assert {c.split()[1] for c in data.info["test_captions"]} <= {"red", "blue"}


# --- BLEU ------------------------------------------------------------------------------------------------------

REF = "a red circle above a blue square"


def test_bleu_perfect_is_one():
    assert corpus_bleu([REF, "a green ring"], [REF, "a green ring"]) == pytest.approx(1.0, abs=1e-12)


def test_bleu_one_wrong_word():
    # "blue" -> "green": unigrams 6/7, bigrams 4/6, trigrams 3/5, 4-grams 2/4; same length so no penalty
    got = corpus_bleu([REF], ["a red circle above a green square"])
    assert got == pytest.approx((6 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25, abs=1e-12)
    assert got == pytest.approx(0.643459, abs=1e-6)


def test_bleu_brevity_penalty():
    # every n-gram of the 6-word candidate is in the 7-word reference: BLEU = BP = exp(1 - 7/6)
    assert corpus_bleu([REF], ["a red circle above a blue"]) == pytest.approx(math.exp(1 - 7 / 6), abs=1e-12)
    # a longer candidate is not penalised for length, only through precision: 7/8, 6/7, 5/6, 4/5
    longer = corpus_bleu([REF], [REF + " square"])
    assert longer == pytest.approx((7 / 8 * 6 / 7 * 5 / 6 * 4 / 5) ** 0.25, abs=1e-12)


def test_bleu_is_corpus_level_and_clips_counts():
    # matches and totals are summed over the corpus before the precisions are formed
    got = corpus_bleu([REF, REF], [REF, "a red circle above a green square"])
    assert got == pytest.approx((13 / 14 * 10 / 12 * 8 / 10 * 6 / 8) ** 0.25, abs=1e-12)
    # "a" occurs twice in the reference: a candidate repeating it 3 times gets 2 unigram matches of 3
    assert corpus_bleu(["a red a"], ["a a a"], max_n=1) == pytest.approx(2 / 3, abs=1e-12)
    assert corpus_bleu([REF], ["square blue a above circle red a"]) == 0.0  # no 4-gram in common
    # several references: clipped by the most occurrences in any one; the closest reference length counts
    assert corpus_bleu([["a red circle", "a a blue"]], ["a a circle"], max_n=1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="references"):
        corpus_bleu([REF], [REF, REF])


# --- the captioner model ---------------------------------------------------------------------------------------

SMALL = dict(input_shape=(16, 16, 3), vocab_size=12, embed_dim=8, units=8, filters=(8, 8))


def _inputs(batch=3, length=7, vocab=12, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, (batch, 16, 16, 3)).astype("float32"),
            rng.integers(0, vocab, (batch, length)).astype("int32")]


def _logits(model, x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


# parameter counts by hand, for 16x16x3 images, filters (8, 8), embed 8, units 8, vocab 12:
#   encoder: 3x3 convs 3->8, 8->8 (stride 2), 8->8, 8->8 (stride 2): 224 + 584 * 3 = 1976 -> 4x4x8 = 128 features
#   embedding 12 * 8 = 96; logits 8 * 12 + 12 = 108
#   "state": init_h 128 * 8 + 8 = 1032 (LSTM: + init_c 1032); "step": image_to_step 128 * 8 + 8 = 1032
#   GRU (reset_after): 3 * (8 * 8 + 8 * 8 + 2 * 8) = 432; LSTM: 4 * (8 * 8 + 8 * 8 + 8) = 544
@pytest.mark.parametrize("cell, condition, params", [
    ("gru", "both", 1976 + 96 + 108 + 1032 + 1032 + 432),
    ("gru", "state", 1976 + 96 + 108 + 1032 + 432),
    ("gru", "step", 1976 + 96 + 108 + 1032 + 432),
    ("lstm", "both", 1976 + 96 + 108 + 1032 * 3 + 544),
    ("lstm", "step", 1976 + 96 + 108 + 1032 + 544),
])
def test_captioner_shapes_and_parameters(cell, condition, params):
    model = kerastk.create_model("captioner", cell=cell, condition=condition, **SMALL)
    assert model.count_params() == params
    assert [tuple(t.shape) for t in model.inputs] == [(None, 16, 16, 3), (None, None)]
    assert str(model.inputs[1].dtype) == "int32"
    for length in (1, 5, 9):  # any caption length
        assert _logits(model, _inputs(length=length)).shape == (3, length, 12)


def test_captioner_pooling_fixed_length_and_headless():
    avg = kerastk.create_model("captioner", pooling="avg", **SMALL)
    assert avg.count_params() == 1976 + 96 + 108 + 2 * (8 * 8 + 8) + 432  # 8 pooled features
    fixed = kerastk.create_model("captioner", caption_length=6, **SMALL)
    assert tuple(fixed.inputs[1].shape) == (None, 6) and fixed.output.shape == (None, 6, 12)
    headless = kerastk.create_model("captioner", include_top=False, **SMALL)
    assert _logits(headless, _inputs(length=4)).shape == (3, 4, 8)  # decoder states
    info = kerastk.model_info("captioner")
    assert info["default_input_shape"] == (64, 64, 3) and info["defaults"]["input_shape"] == (64, 64, 3)
    assert info["defaults"]["caption_length"] is None and info["defaults"]["cell"] == "gru"


def test_captioner_with_a_registered_backbone():
    model = kerastk.create_model("captioner", input_shape=(28, 28, 3), vocab_size=12, embed_dim=8, units=8,
                                 backbone="mnist_cnn", pooling="avg")
    encoder = model.get_layer("mnist_cnn")
    assert encoder.count_params() == 3 * 3 * 3 * 32 + 32 + 3 * 3 * 32 * 64 + 64  # headless: its two convs
    assert model.count_params() == encoder.count_params() + 12 * 8 + 2 * (64 * 8 + 8) + 432 + 108
    x = [np.zeros((2, 28, 28, 3), "float32"), np.ones((2, 4), "int32")]
    assert _logits(model, x).shape == (2, 4, 12)


@pytest.mark.parametrize("cell, condition", [("gru", "both"), ("lstm", "state"), ("lstm", "step")])
def test_captioner_is_causal_and_sees_the_image(cell, condition):
    model = kerastk.create_model("captioner", cell=cell, condition=condition, **SMALL)
    image, tokens = _inputs(length=7)
    base = _logits(model, [image, tokens])
    for k in (0, 3, 6):
        changed = tokens.copy()
        changed[:, k] = (changed[:, k] + 5) % 12
        out = _logits(model, [image, changed])
        np.testing.assert_array_equal(out[:, :k], base[:, :k])  # earlier steps: bit-identical
        assert np.max(np.abs(out[:, k:] - base[:, k:])) > 1e-6  # from step k on: changed
        # and the logits of a prefix are the logits of the full sequence cut there
        np.testing.assert_allclose(_logits(model, [image, tokens[:, :k + 1]]), base[:, :k + 1], atol=1e-5)
    same_tokens = np.repeat(tokens[:1], 3, axis=0)
    per_image = _logits(model, [image, same_tokens])
    assert np.max(np.abs(per_image[0, 0] - per_image[1, 0])) > 1e-6  # the first word depends on the image


@pytest.mark.parametrize("kwargs, message", [
    (dict(cell="rnn"), "cell"),
    (dict(condition="attention"), "condition"),
    (dict(vocab_size=1), "vocab_size"),
    (dict(caption_length=0), "caption_length"),
    (dict(units=0), "units"),
    (dict(filters=()), "filters"),
    (dict(filters=(8, 8, 8, 8, 8)), "at least 32x32"),  # five halvings
    (dict(backbone="resnet_51"), "backbone"),
    (dict(pooling="sum"), "pooling"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_captioner_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerastk.create_model("captioner", **{**SMALL, **kwargs})


def test_onnx_greedy_captions_equal_the_keras_ones(tmp_path):
    import keras

    from kerastk.deploy import export_onnx
    from kerastk.deploy.generate import generate, keras_predictor, onnx_predictor

    keras.utils.set_random_seed(1)
    model = kerastk.create_model("captioner", **SMALL)
    image, tokens = _inputs(batch=6, length=9)
    result = export_onnx(model, tmp_path / "captioner.onnx", inputs=[image, tokens])
    assert result.validation.passed and result.validation.sequence_lengths == (9, 6)
    start = np.ones((6, 1), dtype=np.int32)
    keras_loop, onnx_loop = keras_predictor(model), onnx_predictor(tmp_path / "captioner.onnx")
    # Keras on a right-padded buffer of 9 (one traced shape), ONNX on exactly the tokens so far: the same
    # tokens, since the decoder is causal and the ONNX graph takes any length
    by_keras = generate(keras_loop, start, 8, context=[image], window=9)
    by_onnx = generate(onnx_loop, start, 8, context=[image])
    np.testing.assert_array_equal(by_keras, by_onnx)
    assert by_keras.shape == (6, 9) and len({tuple(r) for r in by_keras}) > 1  # images give different captions
    sampled = [generate(p, start, 8, context=[image], temperature=1.0, seed=2, window=9)
               for p in (keras_loop, onnx_loop)]
    np.testing.assert_array_equal(*sampled)
