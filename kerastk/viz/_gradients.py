"""Backend-specific gradient adapter: the one place in kerastk.viz that imports tensorflow, jax or torch.

Keras 3 gives every backend the same forward pass (a Keras model called on a backend tensor returns a backend
tensor) but no backend-neutral ``grad``. :func:`value_and_gradients` hides the three ways of asking for one:
``tf.GradientTape`` (TensorFlow), ``jax.value_and_grad`` (JAX, the model is called on traced arrays and its
variables are read as constants) and ``torch.autograd.grad`` (torch). Each backend module is imported inside
the function, so importing kerastk.viz loads none of them.
"""
from __future__ import annotations

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")


def _active_backend() -> str:
    import keras

    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(f"kerastk.viz needs gradients, which it takes with tensorflow, jax or torch; the active "
                         f"Keras backend is {backend!r}. Set KERAS_BACKEND to one of {', '.join(BACKENDS)}.")
    return backend


def value_and_gradients(fn, x):
    """``fn(x)`` and the gradient of ``sum(fn(x))`` with respect to ``x``, both as float32 numpy arrays.

    Args:
        fn: a function of one backend tensor returning a backend tensor (e.g. ``lambda t: model(t)[:, 3]``);
            it may close over other backend tensors, which are treated as constants.
        x: numpy array (or anything ``np.asarray`` accepts): the point at which to differentiate.

    Returns:
        (value, gradient): ``value`` has the shape of ``fn(x)``, ``gradient`` the shape of ``x``; an ``x`` that
        ``fn`` does not depend on gets a zero gradient. Summing the outputs means a per-sample score summed over
        the batch gives each sample its own gradient (samples do not interact in inference mode).
    """
    x = np.asarray(x, dtype=np.float32)
    backend = _active_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = fn(xt)
            total = tf.reduce_sum(value)
        grad = tape.gradient(total, xt)
        grad = np.zeros_like(x) if grad is None else grad.numpy()
        return np.asarray(value, dtype=np.float32), np.asarray(grad, dtype=np.float32)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(z):
            value = fn(z)
            return jnp.sum(value), value

        (_, value), grad = jax.value_and_grad(total, has_aux=True)(jnp.asarray(x))
        return np.asarray(value, dtype=np.float32), np.asarray(grad, dtype=np.float32)
    import keras
    import torch

    # Through keras.ops so the tensor lands on the device Keras uses for this backend.
    xt = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        value = fn(xt)
        grad = None
        if value.requires_grad:  # False when fn ignores x: nothing to differentiate
            (grad,) = torch.autograd.grad(value.sum(), xt, allow_unused=True)
    grad = np.zeros_like(x) if grad is None else grad.detach().cpu().numpy()
    return value.detach().cpu().numpy().astype(np.float32), np.asarray(grad, dtype=np.float32)


def gradients(fn, x) -> np.ndarray:
    """The gradient of ``sum(fn(x))`` with respect to ``x`` as a numpy array (see :func:`value_and_gradients`)."""
    return value_and_gradients(fn, x)[1]
