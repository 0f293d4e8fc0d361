"""Quantise an exported ONNX file to int8 or float16 and measure what it costs and gains, with onnxruntime only.

    quantize_onnx("model.onnx", "model.int8.onnx", "int8", calibration=x_rows)    # one file
    kerastk.deploy.quantize.quantize_run("export/mnist_lenet5", "int8")          # a run folder: file, card, scores

int8 is static quantisation (onnxruntime.quantization): the graph is pre-processed (shape inference and
optimisation), then weights are stored as int8 with one scale per output channel and activations get
QuantizeLinear / DequantizeLinear pairs (QDQ format) whose ranges come from calibration rows run through the
model. onnxruntime fuses each pair with its Conv / MatMul / Gemm into an integer kernel. The calibration rows
must look like real inputs: the runner (:func:`kerastk.training.run`) leaves 256 random training rows and the
test split in ``quantization_data.npz`` for this, and :func:`quantize_run` scores the int8 file on that test
split against the float32 one (kerastk.deploy.quantize: scoring a run, apart from quantising a file here).

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
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from kerastk.core.rundir import (  # noqa: F401 - the run folder's data: public here too
    QUANTIZATION_DATA,
    TEST_ROWS_CAP,
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
