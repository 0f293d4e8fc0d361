"""Quantising a run folder's model and scoring it: ``model.int8.onnx`` (or fp16) from ``model.onnx``, its card,
the float32 card's record, and what the copy costs and gains on the run's test split - size, accuracy points,
argmax agreement, batch-1 latency against float32, and for int8 whether the target is met.

    summary = quantize_run("export/mnist_lenet5", "int8")     # -> model.int8.onnx + model.int8.card.json
    print(format_summary(summary))

The quantisation of the file itself is kerastk.deploy.quantize_file.quantize_onnx (re-exported here, with the
file side's modes and options).
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from kerastk.core.rundir import QUANTIZATION_DATA, arrays_named, load_quantization_data
from kerastk.deploy.quantize_file import (  # noqa: F401 - the file side, public here too
    ACTIVATION_TYPES,
    CALIBRATE_METHODS,
    CALIBRATION_BATCH,
    DEFAULT_ACTIVATION,
    DEFAULT_CALIBRATE_METHOD,
    MODES,
    TEST_ROWS_CAP,
    quantize_onnx,
    run_test_rows,
    save_quantization_data,
)

#: The int8 target: at least this much faster at batch 1 and at most this many accuracy points lost.
TARGET_SPEEDUP = 2.0
TARGET_MAX_DROP_POINTS = 1.0
#: Tasks whose test-split metrics kerastk.metrics.task_metrics computes from the first output.
SCORED_TASKS = ("classification", "binary", "multilabel", "regression", "sequence", "segmentation", "embedding")


def _resolve_onnx(path) -> Path:
    path = Path(path)
    if path.is_dir():
        onnx_path = path / "model.onnx"
    elif path.suffix == ".keras":
        onnx_path = path.with_suffix(".onnx")
    else:
        onnx_path = path
    if not onnx_path.is_file():
        hint = (f" Export it first: kerastk export {path}" if path.suffix == ".keras" else
                " Expected a run folder holding model.onnx, a model.onnx file, or a .keras file exported beside it.")
        raise FileNotFoundError(f"No ONNX model at {str(onnx_path)!r}.{hint}")
    return onnx_path


def _load_calibration(calibration):
    """Calibration given to quantize_run: arrays, or a .npy / .npz file (its arrays in file order)."""
    if calibration is None or not isinstance(calibration, (str, os.PathLike)):
        return calibration, "arrays given by the caller"
    path = Path(calibration)
    if not path.is_file():
        raise FileNotFoundError(f"No calibration file at {str(path)!r} (expected a .npy or .npz of input rows).")
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return loaded, path.name
    with loaded:
        x = arrays_named(loaded, "x_train")
        if x is None:
            x = [loaded[k] for k in loaded.files]
    return x, path.name


def _run_outputs(session, x) -> np.ndarray:
    """First output of `session` on all rows of `x` (an array or a list of arrays), in batches of 256."""
    arrays = list(x) if isinstance(x, (list, tuple)) else [x]
    names = [i.name for i in session.get_inputs()]
    n = len(arrays[0])
    parts = [session.run(None, {k: a[i:i + 256] for k, a in zip(names, arrays)})[0] for i in range(0, n, 256)]
    return np.concatenate(parts)


def _input_dtypes(session) -> list:
    from kerastk.deploy.runtime import ort_dtype

    return [np.dtype(ort_dtype(i.type)) for i in session.get_inputs()]


def _cast(x, dtypes):
    arrays = list(x) if isinstance(x, (list, tuple)) else [x]
    cast = [np.asarray(a).astype(d, copy=False) for a, d in zip(arrays, dtypes)]
    return cast if isinstance(x, (list, tuple)) else cast[0]


def _latency_pair(fp32_path, quant_path, inputs, rounds: int = 2) -> tuple[dict, dict]:
    """Batch-1 median latency of both files in this process, alternating `rounds` times (the better median of
    each file is kept, so a burst of load on a shared machine hits both alike)."""
    from kerastk.deploy.timing import interleaved_latency

    samples = interleaved_latency({"fp32": fp32_path, "quantized": quant_path}, rounds=rounds, inputs=inputs,
                                  warmup=3, repeats=50, max_seconds=10.0)
    best = {k: min(v, key=lambda r: r["median_ms"]) for k, v in samples.items()}
    return best["fp32"], best["quantized"]


def _target(mode, speedup, drop_points, no_accuracy: str = "") -> dict | None:
    if mode != "int8":
        return None
    why = []
    if speedup is None:
        why.append("no latency measured")
    elif speedup < TARGET_SPEEDUP:
        why.append(f"speed: {speedup:.2f}x the float32 speed, short of {TARGET_SPEEDUP:g}x by "
                   f"{TARGET_SPEEDUP - speedup:.2f}x")
    if drop_points is None:
        why.append(f"accuracy: not checked ({no_accuracy})" if no_accuracy else
                   f"accuracy: no test-split accuracy to check (needs {QUANTIZATION_DATA} with x_test / y_test)")
    elif drop_points > TARGET_MAX_DROP_POINTS:
        why.append(f"accuracy: {drop_points:.2f} points lost, over the {TARGET_MAX_DROP_POINTS:g}-point limit by "
                   f"{drop_points - TARGET_MAX_DROP_POINTS:.2f}")
    met = not why
    if met:
        why = [f"{speedup:.2f}x faster (>= {TARGET_SPEEDUP:g}x) and {drop_points:.2f} points lost "
               f"(<= {TARGET_MAX_DROP_POINTS:g})"]
    return {"met": met, "why": "; ".join(why), "speedup_needed": TARGET_SPEEDUP,
            "max_drop_points": TARGET_MAX_DROP_POINTS}


def _test_split_figures(fp32_session, quant_session, x_test, y_test, task, threshold) -> dict:
    """Both files on the saved test split: task metrics, accuracy points lost, argmax agreement, max abs diff,
    and a note when something could not be measured."""
    from kerastk.metrics import task_metrics

    y32 = _run_outputs(fp32_session, x_test)
    yq = _run_outputs(quant_session, x_test).astype(np.float32)
    out = {"metrics_fp32": None, "metrics_quantized": None, "accuracy_drop_points": None,
           "argmax_agreement": float(np.mean(np.argmax(y32, -1) == np.argmax(yq, -1)))
           if y32.ndim >= 2 and y32.shape[-1] > 1 else None,
           "max_abs_diff": float(np.max(np.abs(y32.astype(np.float64) - yq))), "note": ""}
    if task and task not in SCORED_TASKS:
        out["note"] = f"test metrics not computed: task {task!r} needs its own scoring (not task_metrics)"
    elif y_test is None or not task or isinstance(y_test, list):
        out["note"] = "no labels or task for the test split: metrics not computed"
    else:
        try:
            out["metrics_fp32"] = task_metrics(task, y_test, y32, threshold)
            out["metrics_quantized"] = task_metrics(task, y_test, yq, threshold)
        except (ValueError, TypeError, IndexError) as exc:
            out["metrics_fp32"] = None
            out["note"] = f"test metrics not computed for task {task!r}: {exc}"
    if out["metrics_quantized"] and "accuracy" in out["metrics_fp32"]:
        out["accuracy_drop_points"] = round(100 * (out["metrics_fp32"]["accuracy"]
                                                   - out["metrics_quantized"]["accuracy"]), 4)
    elif out["metrics_quantized"]:
        out["note"] = f"the {task} task has no accuracy; compare metrics_fp32 with metrics_quantized"
    return out


def quantize_run(path, mode: str = "int8", out=None, calibration=None, **quantize_kwargs) -> dict:
    """Quantise a run's model, score both files on the saved test split, time them, and record it all.

    Args:
        path: a run folder, its model.onnx, or a .keras file with its exported .onnx beside it.
        mode: "int8" or "fp16".
        out: the quantised file (default ``model.int8.onnx`` / ``model.fp16.onnx`` beside the source).
        calibration: int8 calibration rows (arrays, or a .npy / .npz path); default: ``x_train`` of the run
            folder's quantization_data.npz.
        quantize_kwargs: passed to :func:`quantize_onnx` (per_channel, calibration_rows, activation,
            calibrate_method).

    Returns:
        The summary (also in the quantised file's card under "quantization" and in the float32 card under
        "quantized": {mode: ...}): sizes and ratio, test-split metrics of both files and the drop in points,
        batch-1 latency of both and the speedup, argmax agreement with float32, and for int8 the target
        (>= 2x faster and <= 1 point lost) with what failed and by how much.
    """
    from kerastk.core.card import ModelCard
    from kerastk.core.rundir import card_path_for
    from kerastk.deploy.card import io_spec, sha256
    from kerastk.deploy.timing import ort_session

    if mode not in MODES:
        raise ValueError(f"Unknown quantisation mode {mode!r}; expected one of {', '.join(MODES)}.")
    onnx_path = _resolve_onnx(path)
    out = Path(out) if out else onnx_path.with_name(f"{onnx_path.stem}.{mode}.onnx")
    card_path = card_path_for(onnx_path)
    card = ModelCard.beside(onnx_path)
    data_path = onnx_path.parent / card.quantization_data
    saved = load_quantization_data(data_path)
    calibration, source = _load_calibration(calibration)
    if mode == "int8" and calibration is None:
        if saved.get("x_train") is None:
            raise ValueError(f"int8 quantisation needs calibration rows: looked for {str(data_path)!r} (a training "
                             "run leaves it in its folder) and found none. Pass real input rows instead with "
                             "--calibration FILE.npy (calibration=array in Python).")
        calibration, source = saved["x_train"], f"{data_path.name} (random training rows)"

    stale_card = card_path_for(out)
    stale_card.unlink(missing_ok=True)  # an earlier card must never sit beside the new file
    try:  # until the new card is written, a failure or Ctrl-C leaves neither file nor card
        info = quantize_onnx(onnx_path, out, mode, calibration if mode == "int8" else None, **quantize_kwargs)
        if mode == "int8":
            info["calibration_source"] = source
        # onnxruntime copied the fp32 file's metadata: the quantised file describes itself, without the fp32
        # file's parity (it is not proven equal to Keras; its card compares it with the fp32 file)
        from kerastk.deploy import metadata

        metadata.embed(out, metadata.essentials({**card, "parity": {"verdict": "undecided"}}))
        info["bytes"] = out.stat().st_size

        fp32_session, quant_session = ort_session(onnx_path), ort_session(out)
        task = card.task or saved.get("task")
        x_test = saved.get("x_test")
        if x_test is not None:
            x_test = _cast(x_test, _input_dtypes(fp32_session))
            figures = _test_split_figures(fp32_session, quant_session, x_test, saved.get("y_test"), task,
                                          card.decision_threshold)
        else:
            figures = {"metrics_fp32": None, "metrics_quantized": None, "accuracy_drop_points": None,
                       "argmax_agreement": None, "max_abs_diff": None,
                       "note": f"no test split ({data_path.name} not found): metrics and agreement not measured"}
        note = figures.pop("note")
        latency_inputs = x_test if x_test is not None else (
            _cast(calibration, _input_dtypes(fp32_session)) if calibration is not None else None)
        del fp32_session, quant_session
        lat32, latq = _latency_pair(onnx_path, out, latency_inputs)
        speedup = round(lat32["median_ms"] / latq["median_ms"], 3) if latq["median_ms"] > 0 else None
        fp32_bytes = onnx_path.stat().st_size
        summary = {
            **info,
            "fp32_file": onnx_path.name,
            "bytes_fp32": fp32_bytes, "bytes_quantized": info["bytes"],
            "size_ratio": round(fp32_bytes / info["bytes"], 3),
            "test_rows": None if x_test is None else int(len(x_test[0] if isinstance(x_test, list) else x_test)),
            "task": task, **figures,
            "latency_batch1_ms": {"fp32": lat32["median_ms"], "quantized": latq["median_ms"]},
            "speedup": speedup, "latency_note": "medians measured in one process, alternating the two files; "
                                                "compare only on a quiet machine",
            "target": _target(mode, speedup, figures["accuracy_drop_points"], note if x_test is not None else ""),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if note:
            summary["note"] = note

        card.quantized_card(file=out.name, sha256=sha256(out), io_spec=io_spec(out), summary=summary,
                            reference=onnx_path.name).write(stale_card)
    except BaseException:
        out.unlink(missing_ok=True)
        stale_card.unlink(missing_ok=True)
        raise
    if card:
        card.record_quantized(mode, summary)
        card.write(card_path)
    return summary


def format_summary(summary: dict) -> str:
    """One line: file, size ratio, accuracy before -> after, batch-1 latency before -> after, agreement, target."""
    parts = [f"{summary['mode']}: {summary['file']} {summary['bytes_quantized'] / 1e6:.2f} MB "
             f"({summary['size_ratio']:.2f}x smaller)"]
    m32, mq = summary.get("metrics_fp32") or {}, summary.get("metrics_quantized") or {}
    if "accuracy" in m32:
        parts.append(f"accuracy {m32['accuracy']:.4f} -> {mq['accuracy']:.4f} "
                     f"({-summary['accuracy_drop_points']:+.2f} points)")
    elif "mse" in m32:
        parts.append(f"mse {m32['mse']:.4g} -> {mq['mse']:.4g}")
    lat = summary["latency_batch1_ms"]
    parts.append(f"batch-1 {lat['fp32']:.3f} -> {lat['quantized']:.3f} ms ({summary['speedup']:.2f}x)")
    if summary.get("argmax_agreement") is not None:
        parts.append(f"argmax agreement {100 * summary['argmax_agreement']:.2f}%")
    if summary.get("target"):
        t = summary["target"]
        parts.append(("target met: " if t["met"] else "target NOT met: ") + t["why"])
    return " | ".join(parts)


