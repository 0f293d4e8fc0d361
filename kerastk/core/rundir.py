"""The run folder's layout: what a training run leaves in ``<out>/<name>/`` and where each file's name is set.

    model.keras  best.keras  backup/  history.csv  curves.png  model.onnx  card.json  quantization_data.npz
    report.md

The runner writes them; ``kerastk quantize``, ``kerastk bench``, ``kerastk validate`` and the deployment side
read them through the names and functions here. ``quantization_data.npz`` holds calibration rows drawn from the
training split and the first test rows with their labels (a multi-input model's arrays as ``x_train_0``,
``x_train_1``, ...), so a run folder can be quantised and scored later without its data set.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kerastk.core.files import atomic_path
from kerastk.core.rows import num_rows, take_rows

MODEL_KERAS = "model.keras"
BEST_KERAS = "best.keras"
BACKUP_DIR = "backup"
HISTORY = "history.csv"
CURVES = "curves.png"
MODEL_ONNX = "model.onnx"
CARD = "card.json"
REPORT = "report.md"
#: The file the runner leaves in a run folder for quantisation: calibration rows and the test split.
QUANTIZATION_DATA = "quantization_data.npz"
TEST_ROWS_CAP = 2000  # test rows kept in quantization_data.npz (the first 2,000: keeps the file small)


def card_path_for(onnx_path) -> Path:
    """Where an ONNX file's card lives: `card.json` beside a run folder's `model.onnx`, else `<stem>.card.json`."""
    onnx_path = Path(onnx_path)
    return onnx_path.parent / (CARD if onnx_path.name == MODEL_ONNX else f"{onnx_path.stem}.card.json")


def named_arrays(prefix: str, x) -> dict:
    """{prefix: x} for one array, {prefix_0: x[0], prefix_1: x[1], ...} for a multi-input list."""
    if isinstance(x, (list, tuple)):
        return {f"{prefix}_{i}": np.asarray(a) for i, a in enumerate(x)}
    return {prefix: np.asarray(x)}


def arrays_named(npz, prefix: str):
    """The arrays saved by :func:`named_arrays` (an array, a list of arrays, or None when absent)."""
    if prefix in npz.files:
        return npz[prefix]
    parts = sorted((k for k in npz.files if k.startswith(prefix + "_") and k[len(prefix) + 1:].isdigit()),
                   key=lambda k: int(k[len(prefix) + 1:]))
    return [npz[k] for k in parts] or None


def save_quantization_data(run_dir, data, rows: int = 256, seed: int = 0) -> Path:
    """Leave in `run_dir` what quantising its model needs: ``quantization_data.npz`` with `rows` calibration
    rows drawn at random (seeded) from the training split (``x_train``; ``x_train_0``, ``x_train_1``... for a
    multi-input model), the first 2,000 test rows and their labels (``x_test``, ``y_test``) and the task.

    Args:
        run_dir: the run folder.
        data: the run's kerastk.data.Dataset (already preprocessed, as the model sees it).
        rows: calibration rows (fewer when the training split is smaller).
        seed: seed of the random draw.

    Returns:
        The path written (atomically).
    """
    run_dir = Path(run_dir)
    n_train = num_rows(data.x_train)
    idx = np.sort(np.random.default_rng(seed).choice(n_train, size=min(rows, n_train), replace=False))
    n_test = min(TEST_ROWS_CAP, num_rows(data.x_test))
    arrays = {**named_arrays("x_train", take_rows(data.x_train, idx)),
              **named_arrays("x_test", take_rows(data.x_test, n_test)),
              "task": np.array(str(data.task)), "seed": np.array(seed), "train_rows": np.array(n_train)}
    if isinstance(data.y_test, (np.ndarray, list, tuple)):  # labels other than arrays (e.g. dicts) are left out
        arrays.update(named_arrays("y_test", take_rows(data.y_test, n_test)))
    path = run_dir / QUANTIZATION_DATA
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def load_quantization_data(path) -> dict:
    """{"x_train", "x_test", "y_test" (arrays, lists for several inputs, or None), "task"} from a
    quantization_data.npz; an empty dict when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as npz:
        return {"x_train": arrays_named(npz, "x_train"), "x_test": arrays_named(npz, "x_test"),
                "y_test": arrays_named(npz, "y_test"), "task": npz["task"].item() if "task" in npz.files else None}


def saved_arrays(run_dir, prefix: str):
    """`prefix` arrays (x_test, x_train) of a run folder's quantization_data.npz as a list, or None."""
    if run_dir is None:
        return None
    arrays = load_quantization_data(Path(run_dir) / QUANTIZATION_DATA).get(prefix)
    return None if arrays is None else (list(arrays) if isinstance(arrays, list) else [arrays])


def run_test_rows(run_dir, rows: int = 64):
    """The first `rows` test rows a run folder kept in ``quantization_data.npz`` (an array, or a list for a
    multi-input model), or None when the folder has none: real inputs for a parity check."""
    x = load_quantization_data(Path(run_dir) / QUANTIZATION_DATA).get("x_test")
    if x is None:
        return None
    return [a[:rows] for a in x] if isinstance(x, list) else x[:rows]
