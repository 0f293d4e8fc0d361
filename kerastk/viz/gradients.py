"""Backend-specific gradient adapter: the one place in kerastk.viz that imports tensorflow, jax or torch.

Keras 3 gives every backend the same forward pass (a Keras model called on a backend tensor returns a backend
tensor) but no backend-neutral ``grad``. :func:`scalar_and_gradients` hides the three ways of asking for one:
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


def scalar_and_gradients(fn, values, has_aux: bool = False):
    """A scalar function of several tensors and its gradient with respect to each, on the active backend.

    Args:
        fn: ``fn(list of backend tensors) -> scalar backend tensor`` (or ``(scalar, aux)`` with ``has_aux``);
            it may close over other backend tensors, which are treated as constants.
        values: list of numpy arrays or backend tensors: the point at which to differentiate.

    Returns:
        (scalar as float, aux as numpy or None, [gradient per value as numpy]); a value ``fn`` does not depend on
        gets a zero gradient.
    """
    backend = _active_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        values = [tf.convert_to_tensor(v) for v in values]
        with tf.GradientTape() as tape:
            tape.watch(values)
            out = fn(values)
            scalar, aux = out if has_aux else (out, None)
        grads = tape.gradient(scalar, values)
        grads = [np.zeros(v.shape, v.dtype.as_numpy_dtype) if g is None else g.numpy() for g, v in zip(grads, values)]
        return float(scalar), None if aux is None else np.asarray(aux), grads
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        out, grads = jax.value_and_grad(fn, has_aux=has_aux)([jnp.asarray(v) for v in values])
        scalar, aux = out if has_aux else (out, None)
        return float(scalar), None if aux is None else np.asarray(aux), [np.asarray(g) for g in grads]
    import keras
    import torch

    # Through keras.ops so the tensors land on the device Keras uses for this backend.
    values = [keras.ops.convert_to_tensor(v).detach().clone().requires_grad_(True) for v in values]
    with torch.enable_grad():
        out = fn(values)
        scalar, aux = out if has_aux else (out, None)
        grads = [None] * len(values)
        if scalar.requires_grad:  # False when fn ignores its inputs: nothing to differentiate
            grads = torch.autograd.grad(scalar, values, allow_unused=True)
    grads = [np.zeros(tuple(v.shape), np.float32) if g is None else g.detach().cpu().numpy()
             for g, v in zip(grads, values)]
    return float(scalar.detach().cpu()), None if aux is None else aux.detach().cpu().numpy(), grads


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
    import keras

    def total(values):
        value = fn(values[0])
        return keras.ops.sum(value), value

    _, value, (grad,) = scalar_and_gradients(total, [np.asarray(x, dtype=np.float32)], has_aux=True)
    return np.asarray(value, dtype=np.float32), np.asarray(grad, dtype=np.float32)


def gradients(fn, x) -> np.ndarray:
    """The gradient of ``sum(fn(x))`` with respect to ``x`` as a numpy array (see :func:`value_and_gradients`)."""
    return value_and_gradients(fn, x)[1]
