"""Convolutional variational autoencoder (Kingma & Welling 2014, Auto-Encoding Variational Bayes).

    model = kerastk.create_model("vae", latent_dim=2)
    model.compile("adam", loss=kerastk.losses.ReconstructionLoss())    # + the KL that the Sampling layer adds
    model.fit(x, x)                                                      # loss = negative ELBO per image
    decoder = model.get_layer("decoder")                                 # latent (B, latent_dim) -> image
    z_mean, z_log_var = model.get_layer("encoder").predict(x)

The registered model maps an image to its reconstruction: encoder -> Sampling -> decoder. The encoder and
decoder are nested functional models, so each can be used - and exported - alone: the decoder turns points of
the latent space into images (samples: decode z ~ N(0, I)), the encoder gives the latent map.
"""
from __future__ import annotations

import keras

from kerastk.layers import Sampling
from kerastk.layers.checks import check_float, check_seed
from kerastk.models._common import (
    check_activation,
    check_choice,
    check_input_shape,
    check_int,
)
from kerastk.models.catalog import register_model

UPSAMPLING = ("transpose", "nearest")


def build_encoder(input_shape, latent_dim, filters, hidden_units, activation="relu", name="encoder"):
    """Image -> [z_mean, z_log_var]: stride-2 3x3 convolutions (one per entry of `filters`), a dense layer.

    Returns:
        a functional keras.Model with two outputs of shape (batch, latent_dim).
    """
    inputs = keras.Input(input_shape, name=f"{name}_image")
    x = inputs
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation=activation,
                                name=f"{name}_block{i + 1}_conv")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(hidden_units, activation=activation, name=f"{name}_dense")(x)
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    return keras.Model(inputs, [z_mean, z_log_var], name=name)


def build_decoder(output_shape, latent_dim, filters, activation="relu", upsampling="transpose", name="decoder"):
    """Latent point -> image: a dense layer to the encoder's last feature map, one x2 upsampling 3x3
    convolution per encoder convolution (mirrored), and a 3x3 sigmoid convolution to the image's channels.

    `upsampling`: "transpose" - stride-2 Conv2DTranspose (the Keras example); "nearest" - UpSampling2D then a
    'same' Conv2D: the same parameters, no checkerboard artifacts (Odena et al. 2016), 4x the multiplies.

    Returns:
        a functional keras.Model mapping (batch, latent_dim) to (batch, *output_shape) in [0, 1].
    """
    h, w, channels = output_shape
    scale = 2 ** len(filters)
    start = (h // scale, w // scale, filters[-1])
    inputs = keras.Input((latent_dim,), name="latent")
    x = keras.layers.Dense(start[0] * start[1] * start[2], activation=activation, name=f"{name}_dense")(inputs)
    x = keras.layers.Reshape(start, name=f"{name}_reshape")(x)
    for i, f in reversed(list(enumerate(filters))):
        if upsampling == "transpose":
            x = keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation=activation,
                                             name=f"{name}_block{i + 1}_deconv")(x)
        else:
            x = keras.layers.UpSampling2D(2, interpolation=upsampling, name=f"{name}_block{i + 1}_upsample")(x)
            x = keras.layers.Conv2D(f, 3, padding="same", activation=activation, name=f"{name}_block{i + 1}_conv")(x)
    outputs = keras.layers.Conv2DTranspose(channels, 3, padding="same", activation="sigmoid",
                                           name=f"{name}_output")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model(family="vae", paper="Kingma & Welling 2014, Auto-Encoding Variational Bayes",
                default_input_shape=(28, 28, 1), preprocessing="pixels / 255 (targets in [0, 1] for the "
                "Bernoulli likelihood)", reference_params=134_165, reference_macs=None,
                reference_source="keras-io example 'Variational AutoEncoder' (fchollet): encoder 69,076 + "
                "decoder 65,089 parameters for 28x28x1, latent_dim 2, filters (32, 64), dense 16",
                test_kwargs=dict(input_shape=(8, 8, 1), latent_dim=2, filters=(4, 8), hidden_units=8))
def vae(input_shape=(28, 28, 1), latent_dim=2, filters=(32, 64), hidden_units=16, beta=1.0, activation="relu",
        upsampling="transpose", seed=None):
    """Convolutional VAE: image -> encoder -> Sampling (+ KL loss) -> decoder -> reconstruction (sigmoid).

    Args:
        input_shape: (height, width, channels); height and width must be divisible by 2 ** len(filters)
            (each encoder convolution halves them, each decoder one doubles them back).
        latent_dim: size of z (2 lets you draw the latent space).
        filters: filters of the stride-2 encoder convolutions (the decoder mirrors them).
        hidden_units: the encoder's dense layer before z_mean / z_log_var.
        beta: weight of the KL term (1: the ELBO; see kerastk.layers.Sampling).
        activation: hidden activation.
        upsampling: the decoder's x2 steps: "transpose" (stride-2 Conv2DTranspose, as the Keras example) or
            "nearest" (UpSampling2D + Conv2D; same parameter count). Under JAX on CPU "nearest" trains about
            2.4x faster: XLA's CPU transposed convolutions are slow (jax-ml/jax#23783); TensorFlow and torch are
            faster with "transpose".
        seed: seed of the sampling noise (None: random).

    Returns:
        keras.Model "vae" with nested sub-models "encoder" (image -> [z_mean, z_log_var]) and "decoder"
        (latent -> image). Train it with ``kerastk.losses.ReconstructionLoss`` against y = x: Keras adds the
        KL term, so the loss is the negative ELBO. At inference z = z_mean (deterministic).
    """
    filters = tuple(filters) if isinstance(filters, (list, tuple)) else filters
    if not isinstance(filters, tuple) or not filters:
        raise ValueError(f"`filters` must be a non-empty tuple of ints; received filters={filters!r}.")
    for i, f in enumerate(filters):
        check_int(f"filters[{i}]", f)
    scale = 2 ** len(filters)
    shape = check_input_shape(input_shape, rank=3, min_spatial=scale)
    if shape[0] % scale or shape[1] % scale:
        raise ValueError(f"`input_shape` height and width must be divisible by {scale} (2 ** len(filters), so the "
                         f"decoder restores the size); received input_shape={input_shape!r}.")
    check_int("latent_dim", latent_dim)
    check_int("hidden_units", hidden_units)
    check_float("beta", beta, minimum=0.0)
    check_activation("activation", activation)
    check_choice("upsampling", upsampling, UPSAMPLING)
    check_seed(seed)

    # === Functional Model ===
    encoder = build_encoder(shape, latent_dim, filters, hidden_units, activation)
    decoder = build_decoder(shape, latent_dim, filters, activation, upsampling)
    inputs = keras.Input(shape, name="image")
    z_mean, z_log_var = encoder(inputs)
    z = Sampling(beta=beta, seed=seed, name="sampling")([z_mean, z_log_var])
    return keras.Model(inputs, decoder(z), name="vae")
