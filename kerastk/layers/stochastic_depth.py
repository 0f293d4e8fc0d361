"""Stochastic depth (Huang et al. 2016, Deep Networks with Stochastic Depth), a.k.a. DropPath.

During training each sample's residual branch is dropped with probability ``rate`` (the block becomes the
identity for that sample) and kept branches are scaled by 1 / (1 - rate), so the expected output is unchanged;
at inference the block is the plain sum ``shortcut + residual``.
"""
from __future__ import annotations

import keras

from kerastk.layers.checks import check_rate, check_seed


def _broadcast(a, b):
    """Broadcast two static shapes (None for unknown sizes)."""
    a, b = tuple(a), tuple(b)
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1 or y is None:
            out.append(x)
        elif x is None or x == y:
            out.append(y)
        else:
            raise ValueError(f"StochasticDepth inputs have incompatible shapes {a} and {b}.")
    return tuple(out)


@keras.saving.register_keras_serializable(package="kerastk")
class StochasticDepth(keras.layers.Layer):
    """Add a residual branch to its shortcut, dropping the branch per sample while training.

    Args:
        rate: probability of dropping a sample's residual branch, in [0, 1).
        seed: seed of the layer's SeedGenerator (None: random).

    Call arguments:
        inputs: ``[shortcut, residual]``, tensors of the same (or broadcastable) shape.
        training: drop branches only when True.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate("rate", rate)
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed) if self.rate > 0 else None

    @staticmethod
    def _split(inputs, shapes=False):
        """``[shortcut, residual]`` (tensors, or their shapes when ``shapes``), else a ValueError."""
        ok = isinstance(inputs, (list, tuple)) and len(inputs) == 2
        if ok and shapes:  # a single tensor's shape such as (batch, 3) is a 2-tuple of ints, not two shapes
            ok = all(isinstance(s, (list, tuple)) for s in inputs)
        if not ok:
            what = f"shape {tuple(inputs)}" if shapes and isinstance(inputs, (list, tuple)) else repr(inputs)[:80]
            raise ValueError(f"StochasticDepth is called on a list [shortcut, residual]; received {what}.")
        return inputs

    def build(self, input_shape):
        shortcut, residual = self._split(input_shape, shapes=True)
        _broadcast(shortcut, residual)
        self.built = True

    def call(self, inputs, training=None):
        shortcut, residual = self._split(inputs)
        if not training or self.rate == 0.0:
            return shortcut + residual
        # One Bernoulli(1 - rate) draw per sample, broadcast over the other axes; kept rows scaled by 1/(1-rate).
        noise_shape = (None, *([1] * (len(residual.shape) - 1)))
        return shortcut + keras.random.dropout(residual, self.rate, noise_shape=noise_shape,
                                               seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        shortcut, residual = self._split(input_shape, shapes=True)
        return _broadcast(shortcut, residual)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
