"""Autoregressive decoding (greedy or temperature sampling) over a Keras model or an ONNX file.

Every kerastk sequence generator (char_rnn, seq2seq_attention, transformer, captioner) is one teacher-forced
model: inputs ``[context..., tokens]`` with the decoder tokens last, first output the logits (batch, time,
vocab), causal in time (an RNN decoder or a causal attention mask). Decoding re-runs that model on the tokens
so far and reads the logits at the last real position - so the exported ONNX file needs no separate encoder or
step graph, and a graph with a fixed decoder length works too (the tokens are right-padded to ``window``).

This module imports numpy only: ``onnx_predictor`` needs onnxruntime, ``keras_predictor`` keras.

    from kerastk.deploy.generate import generate, onnx_predictor
    tokens = generate(onnx_predictor("export/seq2seq_dates/model.onnx"), prefix=np.ones((n, 1)), steps=10,
                      context=[source_tokens], window=10)
"""
from __future__ import annotations

import numpy as np

__all__ = ["decode_tokens", "encode_text", "generate", "greedy_exact_match", "keras_onnx_greedy", "keras_predictor", "onnx_predictor"]


def keras_predictor(model):
    """A predict callable over a Keras model: list of arrays -> logits of its first output (numpy)."""
    import keras

    def predict(arrays):
        y = model.predict_on_batch(arrays[0] if len(arrays) == 1 else list(arrays))
        return np.asarray(keras.ops.convert_to_numpy(keras.tree.flatten(y)[0]))

    return predict


def onnx_predictor(model):
    """A predict callable over an ONNX file (or a kerastk.deploy.OnnxModel): list of arrays -> first output."""
    from kerastk.deploy.runtime import OnnxModel

    session = model if isinstance(model, OnnxModel) else OnnxModel(model, card={})

    def predict(arrays):
        y = session.predict(list(arrays))
        return y[0] if isinstance(y, list) else y

    return predict


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; received {name}={value!r}.")


def _sample(logits: np.ndarray, temperature: float, rng) -> np.ndarray:
    draws = rng.random(len(logits))  # drawn every step, so both predictors consume the same random numbers
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    scaled = logits / temperature
    p = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    return np.minimum((cdf < draws[:, None]).sum(axis=-1), logits.shape[-1] - 1)


def generate(predict, prefix, steps: int, *, context=(), temperature: float = 0.0, seed: int = 0,
             end_id: int | None = None, window: int | None = None, pad_id: int = 0) -> np.ndarray:
    """Extend `prefix` by `steps` tokens, one at a time.

    Args:
        predict: callable(list of arrays) -> logits (batch, time, vocab): :func:`keras_predictor` or
            :func:`onnx_predictor`.
        prefix: (batch, P) int tokens to start from (a start token, or a prompt); a 1-D array is one row.
        steps: number of tokens to add.
        context: arrays fed before the token buffer (a source sentence, an image), batch-first.
        temperature: 0 picks the most likely token (greedy); > 0 samples from softmax(logits / temperature).
        seed: seeds the sampling; the same seed gives the same tokens from any predictor with equal logits.
        end_id: once a row emits it, the row is padded from then on and decoding stops when every row has.
        window: length of the token buffer the model is fed: the decoder length of a fixed-length model
            (right-padded with `pad_id`), or the context window of a language model (the last `window`
            tokens). None feeds exactly the tokens so far (the model needs a variable time axis).
        pad_id: the padding token.

    Returns:
        (batch, P + steps) int32 tokens, the prefix first.
    """
    prefix = np.asarray(prefix)
    if prefix.ndim == 1:
        prefix = prefix[None]
    if prefix.ndim != 2 or prefix.shape[1] < 1 or not np.issubdtype(prefix.dtype, np.integer):
        raise ValueError(f"`prefix` must be integer tokens of shape (batch, P >= 1); received dtype "
                         f"{prefix.dtype}, shape {prefix.shape}.")
    _check_int("steps", steps, 0)
    if window is not None:
        _check_int("window", window, 1)
    if not np.isscalar(temperature) or not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"`temperature` must be a finite number >= 0; received temperature={temperature!r}.")
    context = [np.asarray(c) for c in context]
    for i, c in enumerate(context):
        if len(c) != len(prefix):
            raise ValueError(f"context[{i}] has {len(c)} rows; the prefix has {len(prefix)}.")
    rng = np.random.default_rng(seed)
    batch, p = prefix.shape
    tokens = np.full((batch, p + steps), pad_id, dtype=np.int32)
    tokens[:, :p] = prefix
    done = np.zeros(batch, dtype=bool)
    for t in range(p, p + steps):
        seen = tokens[:, max(0, t - window) if window else 0:t]
        if window:
            buffer = np.full((batch, window), pad_id, dtype=np.int32)
            buffer[:, :seen.shape[1]] = seen
        else:
            buffer = seen
        logits = np.asarray(predict([*context, buffer]), dtype=np.float64)
        if logits.ndim != 3 or logits.shape[:2] != buffer.shape:
            raise ValueError(f"the model must return logits (batch, time, vocab) for tokens {buffer.shape}; "
                             f"it returned shape {logits.shape}.")
        chosen = _sample(logits[:, seen.shape[1] - 1], float(temperature), rng)
        if end_id is not None:
            chosen = np.where(done, pad_id, chosen)
            done |= chosen == end_id
        tokens[:, t] = chosen
        if end_id is not None and done.all():
            break
    return tokens


def encode_text(texts, vocab, length: int | None = None, pad_id: int = 0, unknown: int | None = None,
                split=None) -> np.ndarray:
    """Token ids of each text (characters, or words with `split=" "`), right-padded to `length`."""
    index = {tok: i for i, tok in enumerate(vocab)}
    rows = []
    for text in ([texts] if isinstance(texts, str) else texts):
        units = text.split(split) if split else list(text)
        missing = [u for u in units if u not in index]
        if missing and unknown is None:
            raise ValueError(f"{missing[0]!r} is not in the vocabulary ({len(vocab)} tokens) of text {text!r}.")
        rows.append([index.get(u, unknown) for u in units])
    length = length or max(len(r) for r in rows)
    if any(len(r) > length for r in rows):
        raise ValueError(f"a text is longer than {length} tokens: {max(len(r) for r in rows)}.")
    out = np.full((len(rows), length), pad_id, dtype=np.int32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def decode_tokens(tokens, vocab, end_id: int | None = 2, skip=(0, 1), sep: str = "") -> list[str]:
    """Text of each row of token ids: stops at `end_id`, drops the `skip` ids (padding, start)."""
    texts = []
    for row in np.atleast_2d(np.asarray(tokens)):
        units = []
        for tok in row:
            if end_id is not None and tok == end_id:
                break
            if tok not in skip:
                units.append(vocab[int(tok)])
        texts.append(sep.join(units))
    return texts


def greedy_exact_match(predict, context, targets, vocab, *, sep: str = "", start_id: int = 1, end_id: int = 2):
    """Greedy-decode one sequence per row of `context` (start token first, as long as `targets`) and score it.

    Returns (tokens (N, 1 + T), fraction of rows whose decoded text equals the target's, decoded texts)."""
    targets = np.asarray(targets)
    start = np.full((len(targets), 1), start_id, dtype=np.int32)
    tokens = generate(predict, start, targets.shape[1], context=context, window=targets.shape[1], end_id=end_id)
    predicted = decode_tokens(tokens[:, 1:], vocab, end_id=end_id, sep=sep)
    truth = decode_tokens(targets, vocab, end_id=end_id, sep=sep)
    return tokens, float(np.mean([p == t for p, t in zip(predicted, truth)])), predicted


def keras_onnx_greedy(model, onnx_path, context, targets, vocab, *, sep: str = "") -> dict:
    """:func:`greedy_exact_match` from a Keras model and from its ONNX export, side by side.

    Returns keras_exact_match, onnx_exact_match, keras_onnx_same_tokens (fraction of rows with identical tokens),
    keras_tokens and predicted (the Keras model's decoded texts)."""
    keras_tokens, keras_exact, predicted = greedy_exact_match(keras_predictor(model), context, targets, vocab,
                                                              sep=sep)
    onnx_tokens, onnx_exact, _ = greedy_exact_match(onnx_predictor(onnx_path), context, targets, vocab, sep=sep)
    return {"keras_exact_match": keras_exact, "onnx_exact_match": onnx_exact,
            "keras_onnx_same_tokens": float(np.mean(np.all(keras_tokens == onnx_tokens, axis=1))),
            "keras_tokens": keras_tokens, "predicted": predicted}
