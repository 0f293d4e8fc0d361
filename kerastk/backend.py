"""Which Keras backend is active, the versions that matter for export, seeding and threads.

Importing this module imports keras (and so fixes the backend for the process). The backend is chosen
with the ``KERAS_BACKEND`` environment variable *before* Python starts: ``KERAS_BACKEND=jax kerastk info``.
"""
from __future__ import annotations

import importlib.metadata
import os

BACKENDS = ("tensorflow", "jax", "torch")

#: The package that exports each backend's graphs to ONNX (Keras's ``Model.export(format="onnx")`` calls it).
EXPORTERS = {"tensorflow": "tf2onnx", "jax": "jax2onnx", "torch": "onnxscript"}


def check_backend_env() -> None:
    """Raise a ValueError naming the supported backends when KERAS_BACKEND holds something else.

    Keras itself only says "Unable to import backend : <name>" on import; kerastk calls this before importing
    keras (the registry, the runner, this module's functions) so the message says what to set instead.
    """
    import sys

    if "keras" in sys.modules:  # imported already: the backend is fixed for this process
        return
    value = os.environ.get("KERAS_BACKEND")
    if value is not None and value not in BACKENDS:
        raise ValueError(f"KERAS_BACKEND={value!r} is not a backend kerastk runs on; expected one of "
                         f"{', '.join(BACKENDS)}. Set it before Python starts, e.g. `KERAS_BACKEND=jax kerastk info` "
                         "(unset, Keras uses tensorflow).")


def active_backend() -> str:
    """Name of the backend keras was imported with ("tensorflow", "jax" or "torch")."""
    check_backend_env()
    import keras

    return keras.backend.backend()


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def backend_available(name: str) -> bool:
    """True when the backend and its ONNX exporter are both installed."""
    return package_version(name) is not None and package_version(EXPORTERS[name]) is not None


def versions() -> dict:
    """Versions of everything on the export path, for `kerastk info`, cards and reports."""
    backend = active_backend()
    return {
        "backend": backend,
        "keras": package_version("keras"),
        backend: package_version(backend),
        "exporter": f"{EXPORTERS[backend]} {package_version(EXPORTERS[backend])}",
        "onnx": package_version("onnx"),
        "onnxruntime": package_version("onnxruntime"),
        "numpy": package_version("numpy"),
    }


def set_seed(seed: int) -> None:
    """Seed Python, numpy and the active backend (Keras's own utility)."""
    check_backend_env()
    import keras

    keras.utils.set_random_seed(int(seed))


def thread_settings() -> dict:
    """Threads each runtime uses here. kerastk keeps every library's default (one thread per core);
    reported so benchmark figures can be read against it."""
    info = {"cpu_count": os.cpu_count()}
    backend = active_backend()
    if backend == "torch":
        import torch

        info["torch_intra_op_threads"] = torch.get_num_threads()
    elif backend == "tensorflow":
        import tensorflow as tf

        info["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    return info
