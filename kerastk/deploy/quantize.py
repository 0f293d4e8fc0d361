"""Quantise an exported ONNX file to int8 or float16 and measure what it costs and gains, with onnxruntime only.

    summary = quantize_run("export/mnist_lenet5", "int8")     # -> model.int8.onnx + model.int8.card.json
    print(format_summary(summary))

int8 is static quantisation (onnxruntime.quantization): the graph is pre-processed (shape inference and
optimisation), then weights are stored as int8 with one scale per output channel and activations get
QuantizeLinear / DequantizeLinear pairs (QDQ format) whose ranges come from calibration rows run through the
model. onnxruntime fuses each pair with its Conv / MatMul / Gemm into an integer kernel. The calibration rows
must look like real inputs: the runner (:func:`kerastk.training.run`) leaves 256 random training rows and the
test split in ``quantization_data.npz`` for this, and :func:`quantize_run` scores the int8 file on that test
split against the float32 one.

Choices, measured with this module on this project's CPU (AMD EPYC with AVX-512 VNNI, onnxruntime 1.32), on a
small CNN (3 convolutions + 2 dense layers, 3.3 M parameters) trained on 3,500 MNIST digits, 750 test digits -
a busy 2-core machine, so the latencies are indicative only:

- Activations **uint8** (weights int8: "U8S8"). Batch-1 latency of the int8 file: 0.18-0.24 ms with uint8
  activations against 0.53-0.55 ms with int8 ones (float32: 0.5-1.3 ms); accuracy was the same (95.73%, 0 points
  lost, 99.87% argmax agreement). MLAS's x86 integer kernels take unsigned activations and signed weights;
  with VNNI there is no saturation problem, so no ``reduce_range``. Override with ``activation="int8"``.
- Calibration **MinMax**. Percentile (99.999%) and Entropy gave the same accuracy on that model (and on the
  8x8 digits), and calibrate about 2x slower (histograms per tensor; more on bigger models). MinMax keeps each
  activation's full observed range, which suits ReLU networks fed the rows they were trained on. Override
  with ``calibrate_method="percentile"`` or ``"entropy"`` when a few outlier activations waste the range.

float16 (``mode="fp16"``) halves the file; inputs and outputs stay float32, so callers feed the same arrays.
On a CPU without fp16 arithmetic (this one) it runs no faster than float32 (0.9-1.2x measured): it is a size
format, and a GPU one.

Every file is written to a temporary name beside the output and moved into place only once onnxruntime loads
it: a failure leaves nothing at the output path.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from kerastk.core.rundir import (  # noqa: F401 - the run folder's data: public here too
    QUANTIZATION_DATA,
    TEST_ROWS_CAP,
    arrays_named,
    load_quantization_data,
    run_test_rows,
    save_quantization_data,
)

#: Quantisation modes and the file name each one gets beside the float32 model (model.onnx -> model.int8.onnx).
MODES = ("int8", "fp16")
#: Activation types for int8 (see the module docstring for the choice).
ACTIVATION_TYPES = ("uint8", "int8")
DEFAULT_ACTIVATION = "uint8"
#: Calibration methods for int8 (see the module docstring for the choice).
CALIBRATE_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIBRATE_METHOD = "minmax"
CALIBRATION_BATCH = 32  # rows per calibration batch: small enough for any model's memory, large enough to be quick
#: The int8 target: at least this much faster at batch 1 and at most this many accuracy points lost.
TARGET_SPEEDUP = 2.0
TARGET_MAX_DROP_POINTS = 1.0
#: Tasks whose test-split metrics kerastk.metrics.task_metrics computes from the first output.
SCORED_TASKS = ("classification", "binary", "multilabel", "regression", "sequence", "segmentation", "embedding")


# --- quantising one file --------------------------------------------------------------------------------------


def _model_inputs(model):
    """(name, shape with None for dynamic axes, numpy dtype) of a ModelProto's real inputs (not initializers)."""
    import onnx

    initializers = {i.name for i in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        t = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        out.append((value.name, shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)))
    return out


def _calibration_arrays(calibration, inputs, rows: int) -> list[np.ndarray]:
    """The calibration rows as one array per model input, cast to each input's dtype and checked."""
    arrays = list(calibration) if isinstance(calibration, (list, tuple)) else [calibration]
    if len(arrays) != len(inputs):
        raise ValueError(f"Calibration data must give one array per model input ({len(inputs)}: "
                         f"{', '.join(n for n, _, _ in inputs)}); received {len(arrays)}.")
    out = []
    for (name, shape, dtype), a in zip(inputs, arrays):
        a = np.asarray(a)
        if a.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape[1:], a.shape[1:])):
            expected = "(" + ", ".join("batch" if d is None else str(d) for d in shape) + ")"
            raise ValueError(f"Calibration rows for input {name!r} must have shape {expected}; received {a.shape}.")
        if len(a) == 0:
            raise ValueError(f"Calibration data for input {name!r} has no rows; give at least one.")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"Calibration data for input {name!r} contains NaN or inf; give finite values.")
        out.append(a[:rows].astype(dtype, copy=False))
    if len({len(a) for a in out}) > 1:
        raise ValueError(f"Calibration arrays must have the same number of rows; received {[len(a) for a in out]}.")
    return out


def _calibration_reader(arrays, inputs, batch: int):
    """An onnxruntime CalibrationDataReader yielding batches of `batch` rows (the model's batch size if fixed)."""
    from onnxruntime.quantization import CalibrationDataReader

    fixed = inputs[0][1][0] if inputs[0][1] else None
    step = fixed or batch
    n = len(arrays[0])
    if fixed:  # a fixed batch axis takes exactly `fixed` rows per call: drop the incomplete tail
        n = max(fixed, n - n % fixed)
        arrays = [a[np.arange(n) % len(a)] for a in arrays]
    feeds = [{name: a[i:i + step] for (name, _, _), a in zip(inputs, arrays)} for i in range(0, n, step)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(feeds)

    return Reader()


def _preprocess(src: Path, dst: Path) -> str:
    """onnxruntime's quant_pre_process (shape inference + optimisation) into `dst`; falls back to ONNX shape
    inference alone, then to no pre-processing. Returns what was done (recorded in the summary)."""
    import shutil

    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts = (("shape inference (symbolic + onnx) and optimisation", {}),
                ("onnx shape inference and optimisation", {"skip_symbolic_shape": True}))
    for what, kwargs in attempts:
        try:
            quant_pre_process(str(src), str(dst), **kwargs)
            return what
        except Exception:  # symbolic shape inference fails on some graphs; the next attempt does less
            continue
    shutil.copyfile(src, dst)
    return "none (pre-processing failed; quantised as exported)"


def _check_loads(path) -> None:
    from kerastk.deploy.validate import make_session

    make_session(path)


@contextlib.contextmanager
def _atomic_output(out_path: Path):
    """Yields a temporary folder beside `out_path`; the caller writes `<tmp>/out.onnx`, which is moved to
    `out_path` when the block ends without error. On any error (KeyboardInterrupt included) nothing is left
    at `out_path` - a file from an earlier run is removed, as it would not describe this request."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".kerastk-quantize-", dir=out_path.parent) as tmp:
            yield Path(tmp)
            os.replace(Path(tmp) / "out.onnx", out_path)
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise


def quantize_onnx(onnx_path, out_path, mode: str = "int8", calibration=None, *, per_channel: bool = True,
                  calibration_rows: int = 256, activation: str = DEFAULT_ACTIVATION,
                  calibrate_method: str = DEFAULT_CALIBRATE_METHOD) -> dict:
    """Write an int8 (static, QDQ) or float16 copy of an ONNX file.

    Args:
        onnx_path: the float32 ONNX file.
        out_path: where the quantised file goes (written atomically).
        mode: "int8" or "fp16".
        calibration: int8 only: real input rows (an array, or a list of arrays for a multi-input model), e.g.
            ``quantization_data.npz``'s ``x_train`` from a run folder. Batches of 32 rows run through the model.
        per_channel: int8 weights with one scale per output channel (False: one per tensor).
        calibration_rows: at most this many rows of `calibration` are used (the first ones).
        activation: int8 activation type, "uint8" (default, see the module docstring) or "int8".
        calibrate_method: "minmax" (default), "percentile" or "entropy".

    Returns:
        A dict: mode, file, bytes, seconds and the method details (format, types, per_channel, calibration
        method and rows, pre-processing done) for int8; fp16 records keep_io_types.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if mode not in MODES:
        raise ValueError(f"Unknown quantisation mode {mode!r}; expected one of {', '.join(MODES)}.")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"No ONNX model at {str(onnx_path)!r}.")
    if out_path.resolve() == onnx_path.resolve():
        raise ValueError(f"The quantised file must not replace its source {str(onnx_path)!r}; choose another "
                         "out_path (e.g. model.int8.onnx).")
    if mode == "int8":
        if calibration is None:
            raise ValueError("int8 quantisation needs calibration data: real input rows (an array, or a list of "
                             f"arrays for several inputs). A training run leaves them in its {QUANTIZATION_DATA} "
                             "(x_train); elsewhere pass rows from the training set, e.g. --calibration X.npy.")
        if activation not in ACTIVATION_TYPES:
            raise ValueError(f"Unknown activation type {activation!r}; expected one of {', '.join(ACTIVATION_TYPES)}.")
        if calibrate_method not in CALIBRATE_METHODS:
            raise ValueError(f"Unknown calibrate_method {calibrate_method!r}; expected one of "
                             f"{', '.join(CALIBRATE_METHODS)}.")
        if isinstance(calibration_rows, bool) or not isinstance(calibration_rows, int) or calibration_rows < 1:
            raise ValueError(f"calibration_rows must be a positive integer; received {calibration_rows!r}.")
    import onnx

    start = time.perf_counter()
    if mode == "int8":  # checked before anything is written: a bad argument leaves the output path alone
        inputs = _model_inputs(onnx.load(str(onnx_path), load_external_data=False))
        arrays = _calibration_arrays(calibration, inputs, calibration_rows)
    with _atomic_output(out_path) as tmp:
        if mode == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
            onnx.save(model, str(tmp / "out.onnx"))
            details = {"keep_io_types": True, "io_dtype": "float32", "weights": "float16"}
        else:
            from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

            pre = tmp / "pre.onnx"
            preprocessing = _preprocess(onnx_path, pre)
            method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                      "entropy": CalibrationMethod.Entropy}[calibrate_method]
            quantize_static(str(pre), str(tmp / "out.onnx"), _calibration_reader(arrays, inputs, CALIBRATION_BATCH),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
                            weight_type=QuantType.QInt8, calibrate_method=method,
                            extra_options={"CalibTensorRangeSymmetric": False})
            details = {"format": "QDQ", "weight_type": "int8", "activation_type": activation,
                       "per_channel": per_channel, "calibrate_method": calibrate_method,
                       "calibration_rows": len(arrays[0]), "calibration_batch": CALIBRATION_BATCH,
                       "preprocessing": preprocessing}
        _check_loads(tmp / "out.onnx")
    return {"mode": mode, "file": out_path.name, "source": onnx_path.name, "bytes": out_path.stat().st_size,
            "seconds": round(time.perf_counter() - start, 2), **details}


# --- quantising a run folder's model and measuring it ---------------------------------------------------------


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
    from kerastk.deploy.timing import ort_latency, ort_session

    sessions = (ort_session(fp32_path), ort_session(quant_path))
    best = [None, None]
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            r = ort_latency(s, 1, inputs=inputs, repeats=50, max_seconds=10.0)
            if best[i] is None or r["median_ms"] < best[i]["median_ms"]:
                best[i] = r
    return best[0], best[1]


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


# --- command line (wired into `kerastk export` by kerastk.cli) -----------------------------------------------


def add_arguments(parser):
    """`--quantize int8|fp16` and `--calibration FILE` for `kerastk export`."""
    parser.add_argument("--quantize", choices=MODES, default=None,
                        help="also write a quantised copy (model.int8.onnx / model.fp16.onnx + card) and measure it")
    parser.add_argument("--calibration", default=None, metavar="FILE",
                        help=f"int8 calibration rows (.npy or .npz of real inputs); default: the run folder's "
                             f"{QUANTIZATION_DATA}")
    return parser


def command(args, onnx_path=None) -> int:
    """After `kerastk export` wrote `onnx_path`: quantise it when --quantize was given and print the summary
    line. Exit status 1 (message on stderr) when quantisation cannot run; 0 otherwise."""
    import sys

    if not getattr(args, "quantize", None):
        return 0
    onnx_path = onnx_path or (Path(args.output) if getattr(args, "output", None)
                              else Path(args.model).with_suffix(".onnx"))
    try:
        summary = quantize_run(onnx_path, args.quantize, calibration=args.calibration)
    except (ValueError, OSError, RuntimeError) as exc:  # onnxruntime's failures are RuntimeErrors
        print(f"kerastk export --quantize: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0
