"""Additive attention (Bahdanau, Cho and Bengio 2015, Neural machine translation by jointly learning to align
and translate) and the padding mask that keeps attention off padding tokens.

For each query q_i (a decoder state) and each key k_j (an encoder state):

    score_ij  = v^T tanh(W1 q_i + W2 k_j + b)          (the alignment model, a one-hidden-layer network)
    alpha_ij  = softmax_j(score_ij)                      (attention weights: each row sums to 1)
    context_i = sum_j alpha_ij * value_j                 (values are the keys unless given)

The layer scores a whole sequence of queries (batch, Tq, dq) against the keys (batch, Tk, dk) in one call, so a
teacher-forced decoder attends at every step at once; a single query (batch, dq) works too.
"""
from __future__ import annotations

import keras
from keras import ops

from kerastk.layers.checks import check_bool, check_int

#: What a masked score becomes before the softmax (as Keras's own Softmax layer does).
MASKED_SCORE = -1e9


@keras.saving.register_keras_serializable(package="kerastk")
class BahdanauAttention(keras.layers.Layer):
    """Additive (Bahdanau) attention: returns ``[context, weights]``.

    Args:
        units: size of the alignment model's hidden layer (the width of W1 q and W2 k).
        use_bias: add a learnable bias b inside the tanh (the paper has none; W1 q + W2 k with Dense layers
            would carry two biases, which are one in effect).

    Call arguments:
        query: (batch, Tq, dq) decoder states, or (batch, dq) for one query.
        keys: (batch, Tk, dk) encoder states.
        values: (batch, Tk, dv) what is averaged; the keys when None.
        key_mask: optional (batch, Tk) booleans (or 0/1), False for keys no query may attend to (padding).
            A query whose keys are all masked gets zero weights and a zero context.

    Returns:
        context (batch, Tq, dv) and weights (batch, Tq, Tk) - or (batch, dv) and (batch, Tk) for a rank-2 query.

    Weights: ``query_kernel`` W1 (dq, units), ``key_kernel`` W2 (dk, units), ``bias`` b (units,) when
    use_bias, ``score_kernel`` v (units,): (dq + dk + 1 + 1) * units parameters with the bias.
    """

    def __init__(self, units, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.units = check_int("units", units)
        check_bool("use_bias", use_bias)
        self.use_bias = use_bias

    def build(self, query_shape, keys_shape, values_shape=None, key_mask_shape=None):
        if len(query_shape) not in (2, 3) or query_shape[-1] is None:
            raise ValueError("BahdanauAttention needs a query of shape (batch, Tq, dq) or (batch, dq) with a "
                             f"known dq; received query shape {tuple(query_shape)}.")
        if len(keys_shape) != 3 or keys_shape[-1] is None:
            raise ValueError("BahdanauAttention needs keys of shape (batch, Tk, dk) with a known dk; received "
                             f"keys shape {tuple(keys_shape)}.")
        if values_shape is not None and len(values_shape) != 3:
            raise ValueError(f"`values` must have shape (batch, Tk, dv); received {tuple(values_shape)}.")
        self.query_kernel = self.add_weight(name="query_kernel", shape=(int(query_shape[-1]), self.units),
                                            initializer="glorot_uniform")
        self.key_kernel = self.add_weight(name="key_kernel", shape=(int(keys_shape[-1]), self.units),
                                          initializer="glorot_uniform")
        self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
                     if self.use_bias else None)
        # v as a (units, 1) matrix: one MatMul in every exporter's graph
        self.score_kernel = self.add_weight(name="score_kernel", shape=(self.units, 1),
                                            initializer="glorot_uniform")
        self.built = True

    def call(self, query, keys, values=None, key_mask=None):
        single = len(query.shape) == 2
        if single:
            query = ops.expand_dims(query, 1)
        values = keys if values is None else values
        q = ops.matmul(query, self.query_kernel)  # (B, Tq, U)
        k = ops.matmul(keys, self.key_kernel)  # (B, Tk, U)
        if self.bias is not None:
            k = k + self.bias
        hidden = ops.tanh(ops.expand_dims(q, 2) + ops.expand_dims(k, 1))  # (B, Tq, Tk, U)
        scores = ops.squeeze(ops.matmul(hidden, self.score_kernel), -1)  # (B, Tq, Tk)
        if key_mask is not None:
            keep = ops.expand_dims(ops.cast(key_mask, "bool"), 1)  # (B, 1, Tk)
            scores = ops.where(keep, scores, ops.cast(MASKED_SCORE, scores.dtype))
        weights = ops.softmax(scores, axis=-1)
        if key_mask is not None:
            weights = ops.where(keep, weights, ops.zeros_like(weights))
        context = ops.matmul(weights, values)  # (B, Tq, dv)
        if single:
            return [ops.squeeze(context, 1), ops.squeeze(weights, 1)]
        return [context, weights]

    def compute_output_shape(self, query_shape, keys_shape, values_shape=None, key_mask_shape=None):
        values_shape = keys_shape if values_shape is None else values_shape
        batch, tk, dv = query_shape[0], keys_shape[1], values_shape[-1]
        if len(query_shape) == 2:
            return [(batch, dv), (batch, tk)]
        return [(batch, query_shape[1], dv), (batch, query_shape[1], tk)]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="kerastk")
class PaddingMask(keras.layers.Layer):
    """Booleans that are True where a token is not padding: ``tokens != pad_id``, shape (batch, T).

    kerastk does not use Keras's implicit masking (``mask_zero``); attention layers take this mask explicitly
    (``BahdanauAttention(key_mask=...)``, ``MultiHeadAttention(value_mask=...)``), which exports as two
    plain ONNX ops.

    Args:
        pad_id: the padding token id (0 in every kerastk vocabulary).
    """

    def __init__(self, pad_id=0, **kwargs):
        super().__init__(**kwargs)
        self.pad_id = check_int("pad_id", pad_id, minimum=0)

    def call(self, tokens):
        return ops.not_equal(tokens, ops.cast(self.pad_id, tokens.dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, tokens):
        return keras.KerasTensor(tokens.shape, dtype="bool")

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}
