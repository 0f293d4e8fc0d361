"""Export, validation, model cards and the numpy + onnxruntime runtime.

``from kerastk.deploy import OnnxModel`` imports numpy and onnxruntime only; the export side (which needs
keras) is imported on first use.
"""
from __future__ import annotations

import importlib

from kerastk.deploy.runtime import OnnxModel

_LAZY = {
    "export_onnx": "kerastk.deploy.export",
    "ExportResult": "kerastk.deploy.export",
    "ExportError": "kerastk.deploy.export",
    "validate_onnx": "kerastk.deploy.validate",
    "ValidationReport": "kerastk.deploy.validate",
    "write_card": "kerastk.deploy.card",
}

__all__ = ["OnnxModel", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'kerastk.deploy' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
