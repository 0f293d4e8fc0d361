"""kerastk: Keras 3 builders for a deep-learning course, trained by recipes, exported to ONNX and validated
in onnxruntime under any backend (``KERAS_BACKEND=tensorflow|jax|torch``).

    import kerastk
    model = kerastk.create_model("lenet5")
    kerastk.list_models("*")

Attributes are imported lazily: ``import kerastk.deploy.runtime`` (numpy + onnxruntime only) must not pull in
keras or a backend.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "create_model": "kerastk.models.registry",
    "list_models": "kerastk.models.registry",
    "model_info": "kerastk.models.registry",
    "register_model": "kerastk.models.registry",
    "count_flops": "kerastk.flops",
}
_SUBMODULES = {"data", "models", "deploy", "training", "backend", "layers", "losses", "metrics", "cli", "viz",
               "callbacks", "diagnostics", "distribute", "rl"}

__all__ = sorted([*_LAZY, *_SUBMODULES])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"kerastk.{name}")
    else:
        raise AttributeError(f"module 'kerastk' has no attribute {name!r}")
    globals()[name] = value
    return value
