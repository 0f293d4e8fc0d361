"""Does every registered model's ONNX file run in OpenVINO, and give onnxruntime's outputs?

    KERAS_BACKEND=tensorflow kerastk bench registry-openvino [--models 'resnet*,vgg16'] [--json ov.json]

Each model is built with its registry `test_kwargs` (as tests/test_models.py builds it; random weights), exported
under the active backend with `kerastk.deploy.export_onnx` (validated in onnxruntime, as every export is) into a
temporary folder, and the file is run in onnxruntime and in OpenVINO (`kerastk.deploy.openvino.make_session`:
CPU, fp32 precision hint, one dynamic-shape session) on the same random inputs
(`kerastk.deploy.feeds.sample_inputs`) at batch sizes 1 and 8. Per model: whether OpenVINO runs it (the error
if not), the largest absolute difference and the largest relative difference |ov - ort| / (|ort| + std(ort))
(std over that output tensor) over every output and both batch sizes; `min_output_std` (at batch 8) flags an
output that is constant (random weights can saturate an untrained network), where a zero difference proves
little. Totals: how many models run, how many match within a relative 1e-4, the largest relative difference. A
model that does not export is listed apart (nothing to compare). On 2 cores the whole registry takes ~17 minutes
(the export dominates); run it with `nice` beside other work.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from kerastk.bench.registry import model_names

MATCH_REL = 1e-4
BATCH_SIZES = (1, 8)


def compare(expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(max abs diff, max |got - expected| / (|expected| + std(expected))); NaN where only one side is NaN: inf."""
    e, g = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    if e.shape != g.shape:
        raise ValueError(f"output shape differs: onnxruntime {e.shape}, OpenVINO {g.shape}")
    diff = np.abs(g - e)
    both_nan = np.isnan(e) & np.isnan(g)
    diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
    scale = np.abs(np.where(np.isfinite(e), e, 0.0)) + np.std(e[np.isfinite(e)]) if np.isfinite(e).any() else 1.0
    rel = diff / np.maximum(scale, np.finfo(np.float64).tiny)
    return float(np.max(diff, initial=0.0)), float(np.max(rel, initial=0.0))


def check_model(name: str, folder: Path) -> dict:
    import keras

    import kerastk
    from kerastk.deploy import export_onnx
    from kerastk.deploy.feeds import sample_inputs
    from kerastk.deploy.openvino import make_session
    from kerastk.deploy.validate import make_session as ort_session

    row = {"model": name, "exported": False, "route": None, "openvino_runs": None, "error": None,
           "max_abs_diff": None, "max_rel_diff": None, "outputs": None}
    t0 = time.perf_counter()
    model = kerastk.create_model(name, **kerastk.model_info(name).get("test_kwargs", {}))
    path = folder / f"{name}.onnx"
    try:
        result = export_onnx(model, path)
    except Exception as exc:  # nothing to compare: listed apart
        row["error"] = f"export: {type(exc).__name__}: {str(exc).strip()[:300]}"
        row["seconds"] = round(time.perf_counter() - t0, 1)
        return row
    row.update(exported=True, route=getattr(result, "route", None))
    failed = [a for a in result.attempts if a.route != row["route"]]
    if failed:  # routes tried before the one that shipped, and why they did not
        row["routes_failed"] = {a.route: a.why_not()[:200] for a in failed}
    worst_abs = worst_rel = 0.0
    try:
        ort = ort_session(path)
        names = [i.name for i in ort.get_inputs()]
        ov = make_session(path)
        row["dynamic"] = ov.dynamic
        for batch in BATCH_SIZES:
            feed = dict(zip(names, sample_inputs(model, batch, seed=batch)))
            expected, got = ort.run(None, feed), ov.run(None, feed)
            if len(got) != len(expected):
                raise ValueError(f"OpenVINO gives {len(got)} outputs, onnxruntime {len(expected)}")
            row["outputs"] = len(got)
            for e, g in zip(expected, got):
                a, r = compare(e, g)
                worst_abs, worst_rel = max(worst_abs, a), max(worst_rel, r)
                if batch == max(BATCH_SIZES):  # (one row of one unit has std 0 whatever the model)
                    spread = float(np.std(np.asarray(e, np.float64)))
                    row["min_output_std"] = min(row.get("min_output_std", spread), spread)
    except Exception as exc:
        row.update(openvino_runs=False, error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:500]}")
    else:
        row.update(openvino_runs=True, max_abs_diff=worst_abs, max_rel_diff=worst_rel)
    finally:
        for f in folder.glob(f"{name}*"):  # the file and its card: the next model starts on a clean folder
            if f.is_file():
                f.unlink()
        keras.backend.clear_session()
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def totals(table: list[dict]) -> dict:
    exported = [r for r in table if r["exported"]]
    runs = [r for r in exported if r["openvino_runs"]]
    match = [r for r in runs if r["max_rel_diff"] <= MATCH_REL]
    worst = max(runs, key=lambda r: r["max_rel_diff"], default=None)
    return {"models": len(table), "exported": len(exported), "openvino_runs": len(runs),
            "match_within_rel_1e-4": len(match), "largest_rel_diff": worst and worst["max_rel_diff"],
            "largest_rel_diff_model": worst and worst["model"],
            "largest_abs_diff": max((r["max_abs_diff"] for r in runs), default=None),
            "not_running": [r["model"] for r in exported if not r["openvino_runs"]],
            "not_matching": [r["model"] for r in runs if r["max_rel_diff"] > MATCH_REL],
            "not_exported": [r["model"] for r in table if not r["exported"]]}


def run(models: str = "*", json_path=None) -> int:
    """Check every model matching `models` (comma-separated fnmatch patterns), print the table and totals, and
    write them to `json_path` (JSON) when given."""
    import keras
    import onnxruntime
    import openvino

    backend = keras.backend.backend()
    print(f"KERAS_BACKEND={backend}, openvino {openvino.__version__}, onnxruntime {onnxruntime.__version__}",
          flush=True)
    print(f"{'model':24s} {'route':10s} {'OpenVINO':8s} {'max abs':>10s} {'max rel':>10s}  {'s':>6s}", flush=True)
    table = []
    with tempfile.TemporaryDirectory(prefix="kerastk-ov-") as tmp:
        for name in model_names(models):
            row = check_model(name, Path(tmp))
            table.append(row)
            if not row["exported"]:
                status, figures = "no export", ""
            elif row["openvino_runs"]:
                status = "yes" if row["max_rel_diff"] <= MATCH_REL else "DIFFERS"
                figures = f"{row['max_abs_diff']:10.3g} {row['max_rel_diff']:10.3g}"
                if row.get("min_output_std") == 0:  # a zero difference on a constant output proves little
                    figures += "  (an output is constant: std 0)"
            else:
                status, figures = "NO", ""
            print(f"{name:24s} {str(row['route']):10s} {status:8s} {figures:21s}  {row['seconds']:6.1f}"
                  + (f"  {row['error']}" if row["error"] else ""), flush=True)
    summary = totals(table)
    print(f"\n{summary['models']} models, {summary['exported']} exported; {summary['openvino_runs']} run in OpenVINO; "
          f"{summary['match_within_rel_1e-4']} match onnxruntime within a relative {MATCH_REL:g}; largest relative "
          f"difference {summary['largest_rel_diff']:.3g} ({summary['largest_rel_diff_model']}), largest absolute "
          f"{summary['largest_abs_diff']:.3g}" if summary["openvino_runs"] else "nothing ran in OpenVINO")
    for key in ("not_running", "not_matching", "not_exported"):
        if summary[key]:
            print(f"{key.replace('_', ' ')}: {', '.join(summary[key])}")
    if json_path:
        Path(json_path).write_text(json.dumps({"backend": backend, "openvino": openvino.__version__,
                                               "onnxruntime": onnxruntime.__version__, "match_rel": MATCH_REL,
                                               "batch_sizes": list(BATCH_SIZES), "totals": summary,
                                               "models": table}, indent=1) + "\n")
    return 0
