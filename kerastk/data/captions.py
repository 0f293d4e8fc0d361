"""Image captioning data: generated scenes of one or two coloured shapes, each with the sentence describing it.

    data = kerastk.data.load("shape_captions", seed=0)
    images, decoder_in = data.x_train          # (N, H, W, 3) floats in [0, 1]; (N, T) int32 "<s> a red circle ..."
    data.y_train                               # (N, T) int32 "a red circle ... </s>", padded with 0
    data.info["vocab"][5]                      # the word of token id 5

Sentences follow one rule, so a caption is a function of the image and exact match is a fair metric: one shape
is "a <colour> <shape>"; two shapes are described in reading order - the upper one first when their centres are
further apart vertically ("a red circle above a blue square"), the left one first when further apart
horizontally ("a green triangle left of a red square"). Scenes whose two shapes are about as far apart in both
directions are not drawn, so the relation is never ambiguous. Shapes and colours come from
kerastk.data.generators (``shape_mask``, ``SHAPES``, ``COLOURS``).

``corpus_bleu`` scores generated captions against references (corpus-level BLEU-4, Papineni et al. 2002).
"""
from __future__ import annotations

import collections
import math

import numpy as np

from kerastk.data.generators import COLOURS, SHAPES, shape_mask

__all__ = ["RELATIONS", "caption_vocab", "corpus_bleu", "load_shape_captions", "shape_scenes"]

PAD, START, END = "", "<s>", "</s>"
RELATIONS = ("above", "left of")  # reading order: the first-named shape is the upper / the left one
RADIUS = (0.17, 0.25)  # shape radius range, fraction of the image side (5.4-8 px at 32x32)
DOMINANCE = 1.5  # the relation's axis must separate the centres at least 1.5x more than the other axis
GAP = 1.0  # pixels kept free between two shapes' enclosing circles


def _check_choices(name, values, allowed):
    values = tuple(values)
    if not values or any(v not in allowed for v in values) or len(set(values)) != len(values):
        raise ValueError(f"`{name}` must be distinct values from {list(allowed)}; received {name}={values!r}.")
    return values


def _words(shape) -> str:
    return f"a {shape['colour']} {shape['kind']}"


def _describe(shapes_in_scene) -> str:
    """The caption of a scene: shapes are dicts with kind, colour, cy, cx."""
    if len(shapes_in_scene) == 1:
        return _words(shapes_in_scene[0])
    a, b = shapes_in_scene
    dy, dx = b["cy"] - a["cy"], b["cx"] - a["cx"]
    if abs(dy) > abs(dx):  # vertical relation: name the upper shape first (image rows grow downwards)
        first, second = (a, b) if dy > 0 else (b, a)
        return f"{_words(first)} above {_words(second)}"
    first, second = (a, b) if dx > 0 else (b, a)
    return f"{_words(first)} left of {_words(second)}"


def _place_pair(rng, image_size, radii, max_tries=1000):
    """Centres of two shapes: inside the image, apart, and separated clearly more along one axis."""
    for _ in range(max_tries):
        centres = [rng.uniform(r, image_size - r, size=2) for r in radii]
        dy, dx = np.abs(centres[1] - centres[0])
        apart = math.hypot(dy, dx) >= radii[0] + radii[1] + GAP
        if apart and max(dy, dx) >= DOMINANCE * min(dy, dx):
            return centres
    raise RuntimeError(f"could not place two shapes in a {image_size}x{image_size} image")  # pragma: no cover


def shape_scenes(n_samples: int = 3000, image_size: int = 32, noise: float = 0.05, seed: int = 0,
                 kinds=SHAPES, colours=tuple(COLOURS), two_shape_fraction: float = 0.75):
    """Seeded images of one or two shapes and the sentence describing each.

    Args:
        n_samples: number of images.
        image_size: side in pixels (>= 24: two shapes must fit apart).
        noise: standard deviation of the Gaussian pixel noise (pixel values in [0, 1] before scaling).
        seed: the same seed always draws the same scenes.
        kinds: shape names from kerastk.data.generators.SHAPES.
        colours: colour names from kerastk.data.generators.COLOURS.
        two_shape_fraction: probability that a scene has two shapes (else one).

    Returns:
        (images, captions, scenes): images float32 (n, H, W, 3) with values 0..255, captions a list of str,
        scenes a list (one per image) of lists of dicts {kind, colour, cy, cx, radius, angle} in drawing order.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"`n_samples` must be an integer >= 1; received n_samples={n_samples!r}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 24:
        raise ValueError(f"`image_size` must be an integer >= 24 (two shapes must fit apart); "
                         f"received image_size={image_size!r}.")
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or noise < 0:
        raise ValueError(f"`noise` must be a number >= 0; received noise={noise!r}.")
    if not isinstance(two_shape_fraction, (int, float)) or not 0.0 <= two_shape_fraction <= 1.0:
        raise ValueError(f"`two_shape_fraction` must be in [0, 1]; received two_shape_fraction={two_shape_fraction!r}.")
    kinds = _check_choices("kinds", kinds, SHAPES)
    colours = _check_choices("colours", colours, tuple(COLOURS))
    rng = np.random.default_rng(seed)
    images = np.empty((n_samples, image_size, image_size, 3), dtype=np.float32)
    captions, scenes = [], []
    for i in range(n_samples):
        img = np.broadcast_to(rng.uniform(0.0, 0.3, size=3), (image_size, image_size, 3)).copy()
        count = 2 if rng.random() < two_shape_fraction else 1
        radii = rng.uniform(*RADIUS, size=count) * image_size
        centres = _place_pair(rng, image_size, radii) if count == 2 else [rng.uniform(radii[0], image_size - radii[0],
                                                                                     size=2)]
        scene = []
        for r, (cy, cx) in zip(radii, centres):
            shape = {"kind": kinds[rng.integers(len(kinds))], "colour": colours[rng.integers(len(colours))],
                     "cy": float(cy), "cx": float(cx), "radius": float(r), "angle": float(rng.uniform(0, 2 * np.pi))}
            img[shape_mask(shape["kind"], image_size, cy, cx, r, shape["angle"])] = COLOURS[shape["colour"]]
            scene.append(shape)
        img += rng.normal(0.0, noise, size=img.shape)
        images[i] = np.clip(img, 0.0, 1.0) * 255.0
        captions.append(_describe(scene))
        scenes.append(scene)
    return images, captions, scenes


def caption_vocab(kinds=SHAPES, colours=tuple(COLOURS)) -> list[str]:
    """Word list, index = token id: 0 padding, 1 "<s>", 2 "</s>", then "a", colours, shapes, relation words."""
    relation_words = [w for rel in RELATIONS for w in rel.split()]
    return [PAD, START, END, "a", *colours, *kinds, *dict.fromkeys(relation_words)]


def _encode(captions, vocab, length):
    """decoder input "<s> w1 .. wn" and target "w1 .. wn </s>", both right-padded with 0 to `length`."""
    index = {w: i for i, w in enumerate(vocab)}
    decoder_in = np.zeros((len(captions), length), dtype=np.int32)
    target = np.zeros((len(captions), length), dtype=np.int32)
    for row, caption in enumerate(captions):
        ids = [index[w] for w in caption.split()]
        decoder_in[row, :len(ids) + 1] = [index[START], *ids]
        target[row, :len(ids) + 1] = [*ids, index[END]]
    return decoder_in, target


def load_shape_captions(seed, n_samples: int = 3000, image_size: int = 32, noise: float = 0.05, kinds=SHAPES,
                        colours=tuple(COLOURS), two_shape_fraction: float = 0.75):
    """Captioning dataset (see the module docstring): x = [images, decoder_in], y = targets, task "sequence".

    Splits 70/15/15 from `seed`. info carries the vocabulary ("vocab"), the token buffer length
    ("caption_length" = longest caption + 1), the special ids, and the raw captions of the test split
    ("test_captions") for scoring generated sentences.
    """
    from kerastk.data import Dataset, split_dataset

    if isinstance(n_samples, int) and not isinstance(n_samples, bool) and n_samples < 7:
        raise ValueError(f"`n_samples` must be >= 7 to make train, validation and test splits; "
                         f"received n_samples={n_samples}.")
    images, captions, _ = shape_scenes(n_samples=n_samples, image_size=image_size, noise=noise, seed=seed,
                                       kinds=kinds, colours=colours, two_shape_fraction=two_shape_fraction)
    kinds, colours = tuple(kinds), tuple(colours)
    vocab = caption_vocab(kinds, colours)
    length = max(len(c.split()) for c in captions) + 1
    order = np.arange(n_samples)
    train, _, val, _, test, _ = split_dataset(order, order, seed, stratify=False)
    factor = 1.0 / 255.0
    images = (images * np.float32(factor)).astype(np.float32)
    decoder_in, target = _encode(captions, vocab, length)
    xs = [[images[idx], decoder_in[idx]] for idx in (train, val, test)]
    ys = [target[idx] for idx in (train, val, test)]
    info = {
        "task": "sequence",
        "source": f"kerastk.data.captions.shape_scenes ({n_samples} images {image_size}x{image_size}, "
                  f"1-2 shapes, seed {seed})",
        "input_shape": [image_size, image_size, 3],
        "preprocessing": {"type": "scale", "factor": factor, "applies_to": "image",
                          "tokens": "word ids of `vocab`; decoder input starts with <s> (1), padding 0"},
        "vocab": vocab,
        "caption_length": length,
        "pad_id": 0, "start_id": 1, "end_id": 2,
        "test_captions": [captions[i] for i in test],
    }
    return Dataset("shape_captions", xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], info)


# --- scoring -------------------------------------------------------------------------------------------------


def _ngrams(words, n) -> collections.Counter:
    return collections.Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(references, hypotheses, max_n: int = 4) -> float:
    """Corpus-level BLEU (Papineni et al. 2002), uniform weights over 1..max_n-grams, no smoothing.

    Clipped n-gram matches and candidate n-gram counts are summed over the whole corpus before the modified
    precisions p_n are formed; BLEU = BP * exp(mean log p_n), with brevity penalty BP = exp(1 - r/c) when the
    total candidate length c is below r, the sum of the reference lengths closest to each candidate's.
    Any p_n of zero gives 0.

    Args:
        references: one entry per hypothesis: a reference sentence (str), or a list of references.
        hypotheses: generated sentences (str; words split on whitespace).
        max_n: highest n-gram order (4 for BLEU-4).

    Returns:
        BLEU in [0, 1].
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses; need one entry each.")
    if isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1:
        raise ValueError(f"`max_n` must be an integer >= 1; received max_n={max_n!r}.")
    matches, totals = np.zeros(max_n), np.zeros(max_n)
    hyp_len = ref_len = 0
    for refs, hyp in zip(references, hypotheses):
        refs = [refs] if isinstance(refs, str) else list(refs)
        refs = [r.split() for r in refs]
        hyp = hyp.split()
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]  # closest length, shorter on ties
        for n in range(1, max_n + 1):
            counts = _ngrams(hyp, n)
            most = collections.Counter()
            for r in refs:
                most |= _ngrams(r, n)  # the most times each n-gram occurs in any one reference
            matches[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            totals[n - 1] += sum(counts.values())
    if hyp_len == 0 or np.any(matches == 0):
        return 0.0
    log_precision = np.mean(np.log(matches / totals))
    brevity = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return float(brevity * math.exp(log_precision))
