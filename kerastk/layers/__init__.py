"""Curriculum layers Keras lacks (one file per idea). Each is registered serializable."""
from __future__ import annotations

import keras

from kerastk.layers.attention import BahdanauAttention, PaddingMask
from kerastk.layers.detection import AnchorGrid, DecodeGrid
from kerastk.layers.drop_connect import DropConnectDense
from kerastk.layers.layer_scale import LayerScale
from kerastk.layers.lrn import LocalResponseNormalization
from kerastk.layers.maxout import Maxout
from kerastk.layers.positional import PositionalEncoding
from kerastk.layers.sampling import Sampling
from kerastk.layers.squeeze_excite import SqueezeExcite
from kerastk.layers.stochastic_depth import StochasticDepth
from kerastk.layers.unpooling import MaxUnpooling2D


def instance_normalization(name=None, epsilon=1e-3, **kwargs):
    """Instance normalisation (Ulyanov et al. 2016): Keras's ``GroupNormalization(groups=-1)``.

    With one group per channel, each sample's channel is normalised over its spatial axes alone, then scaled
    and shifted by a learnable per-channel gamma and beta. Keras ships it, so kerastk does not define a layer;
    this function only names the idea.

    Args:
        name: layer name.
        epsilon: added to the variance.
        **kwargs: any other GroupNormalization argument (center, scale, initializers, axis, ...).

    Returns:
        a ``keras.layers.GroupNormalization`` layer with ``groups=-1``.
    """
    if "groups" in kwargs:
        raise ValueError(f"`groups` is fixed to -1 for instance normalisation; received groups={kwargs['groups']!r}.")
    return keras.layers.GroupNormalization(groups=-1, epsilon=epsilon, name=name, **kwargs)


__all__ = [
    "AnchorGrid",
    "BahdanauAttention",
    "DecodeGrid",
    "PaddingMask",
    "PositionalEncoding",
    "DropConnectDense",
    "LayerScale",
    "LocalResponseNormalization",
    "Maxout",
    "MaxUnpooling2D",
    "Sampling",
    "SqueezeExcite",
    "StochasticDepth",
    "instance_normalization",
]
