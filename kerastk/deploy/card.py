"""The model card: everything a deployment needs to know about an ONNX file, as JSON beside it."""
from __future__ import annotations

import datetime
from pathlib import Path

from kerastk.core.card import ModelCard
from kerastk.core.files import sha256  # noqa: F401 - public here too
from kerastk.core.rundir import card_path_for


def io_spec(onnx_path) -> dict:
    """Input and output names, shapes (None for dynamic axes) and dtypes, read from the file itself."""
    from kerastk.deploy.runtime import ort_dtype
    from kerastk.deploy.validate import make_session

    session = make_session(onnx_path)

    def spec(arg):
        return {"name": arg.name, "shape": [d if isinstance(d, int) else None for d in arg.shape],
                "dtype": ort_dtype(arg.type)}

    return {"inputs": [spec(a) for a in session.get_inputs()], "outputs": [spec(a) for a in session.get_outputs()]}


def write_card(onnx_path, *, name, export_result=None, preprocessing=None, class_names=None, task=None,
               metrics_keras=None, metrics_onnx=None, extra=None, card_path=None) -> Path:
    """Write card.json beside the ONNX file and return its path.

    The card's essentials (task, class names, preprocessing, input layout, versions, route, opset, parity
    verdict: kerastk.deploy.metadata) are embedded in the ONNX file's metadata_props first, so the file alone
    describes itself; the card's sha256 is that of the final file."""
    from kerastk import __version__
    from kerastk.backend import versions
    from kerastk.deploy import metadata

    onnx_path = Path(onnx_path)
    spec = io_spec(onnx_path)
    card = {
        "name": name,
        "file": onnx_path.name,
        "sha256": None,  # of the file with its metadata, below
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"kerastk": __version__, **versions()},
        **spec,
        "input_layout": metadata.input_layouts(spec["inputs"], channels_first=_channels_first()),
        "task": task,
        "preprocessing": preprocessing or {"type": "none"},
        "class_names": class_names,
        "metrics": {"keras": metrics_keras, "onnx": metrics_onnx},
    }
    if export_result is not None:
        card.update({
            "backend": export_result.backend,
            "route": export_result.route,
            "opset": export_result.opset,
            "export_seconds": export_result.seconds,
            "parity": export_result.validation.to_dict(),
            "export_attempts": [a.to_dict() for a in export_result.attempts],
            "optimize": export_result.optimize,
            # route, node and Transpose counts (as exported and as shipped), bytes, batch-1 onnxruntime latency
            "graph": {"route": export_result.route, **export_result.graph},
        })
    card.update(extra or {})
    if export_result is not None and isinstance(card.get("parity"), dict) and "verdict" not in card["parity"]:
        report = export_result.validation
        card["parity"]["verdict"] = getattr(report, "verdict", "passed" if report.passed else "failed")
    metadata.embed(onnx_path, metadata.essentials(card))
    card["sha256"] = sha256(onnx_path)
    card_path = Path(card_path) if card_path else card_path_for(onnx_path)
    return ModelCard(card).write(card_path)


def _channels_first() -> bool:
    """Whether Keras (when this process has imported it) builds channels-first image models."""
    import sys

    keras = sys.modules.get("keras")
    try:
        return keras is not None and keras.config.image_data_format() == "channels_first"
    except Exception:
        return False
