"""The VAE's reparameterisation trick (Kingma & Welling 2014, Auto-Encoding Variational Bayes).

While training, ``z = z_mean + exp(0.5 * z_log_var) * eps`` with ``eps ~ N(0, I)``: the sample is a
differentiable function of the encoder's outputs, so gradients reach the encoder through the noise. At
inference the layer returns ``z_mean`` (the posterior's mode), so a trained VAE - and its ONNX export - is
deterministic.

The layer also adds the ELBO's KL term, ``beta * mean_batch KL(q(z|x) || N(0, I))``, with ``add_loss``, so a
VAE compiled with a reconstruction loss trains on the negative ELBO. The KL is added at evaluation too (it
needs no sampling): ``val_loss`` is then the same objective, computed with z = z_mean.
"""
from __future__ import annotations

import keras
from keras import ops

from kerastk.layers.checks import check_float, check_seed
from kerastk.losses import kl_divergence


@keras.saving.register_keras_serializable(package="kerastk")
class Sampling(keras.layers.Layer):
    """Sample z from N(z_mean, exp(z_log_var)) while training; return z_mean at inference; add the KL loss.

    Args:
        beta: weight of the KL term (1.0: the ELBO; > 1: beta-VAE, Higgins et al. 2017; 0: no KL loss,
            a plain noisy autoencoder).
        seed: seed of the layer's SeedGenerator (None: random).

    Call arguments:
        inputs: ``[z_mean, z_log_var]``, two tensors of shape (batch, latent_dim).
        training: sample when True; return z_mean otherwise.
    """

    def __init__(self, beta=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.beta = check_float("beta", beta, minimum=0.0)
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def _split(inputs, shapes=False):
        ok = isinstance(inputs, (list, tuple)) and len(inputs) == 2
        if ok and shapes:
            ok = all(isinstance(s, (list, tuple)) for s in inputs)
        if ok:
            a, b = (tuple(s) for s in inputs) if shapes else (tuple(t.shape) for t in inputs)
            ok = a == b
        if not ok:
            raise ValueError("Sampling is called on a list [z_mean, z_log_var] of two tensors of the same shape; "
                             f"received {repr(inputs)[:120]}.")
        return inputs

    def build(self, input_shape):
        self._split(input_shape, shapes=True)
        self.built = True

    def call(self, inputs, training=None):
        z_mean, z_log_var = self._split(inputs)
        if self.beta > 0.0:
            self.add_loss(self.beta * ops.mean(kl_divergence(z_mean, z_log_var)))
        if not training:
            return z_mean
        eps = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype, seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def compute_output_shape(self, input_shape):
        return tuple(self._split(input_shape, shapes=True)[0])

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "seed": self.seed}
