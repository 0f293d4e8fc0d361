"""Does the export rule ship (nearly) the fastest graph for every registered model? The check behind
`export_onnx(optimize=True)`'s route rule, in two phases so that only the timing needs a quiet machine:

    KERAS_BACKEND=tensorflow kerastk bench registry-routes export runs/routes   # each backend's own route,
    KERAS_BACKEND=jax        kerastk bench registry-routes export runs/routes   # optimised and validated
    KERAS_BACKEND=torch      kerastk bench registry-routes export runs/routes
    kerastk bench registry-routes time runs/routes [--json runs/routes.json]    # quiet machine: batch 1

`time` measures every route's file of a model in interleaved rounds (route A, B, C, A, B, C, ...) and reports the
median per route, the fastest, and the route the rule ships (the first of TensorFlow, JAX, torch whose file
validates - the same from every training backend: kerastk.deploy.export.BEST_GRAPH_ORDER) and its ratio to the
fastest (target <= 1.1). Each model is built at its registry default input size (random weights: the graph is what matters).
`--models PATTERNS` picks some (comma-separated fnmatch patterns, e.g. 'resnet*,vgg16'), `--budget-seconds` stops
the export phase from starting new models after that long.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from kerastk.bench.registry import model_names

RULE_ORDER = ("tensorflow", "jax", "torch")  # kerastk.deploy.export.BEST_GRAPH_ORDER
BACKENDS = ("tensorflow", "jax", "torch")


def rule_route(trained_on: str, exported) -> str | None:
    """The route export_onnx(optimize=True) ships (from any training backend): the first in the rule's order
    that exported and validated."""
    return next((r for r in RULE_ORDER if r in exported), None)


def export_phase(out: Path, pattern: str, budget_seconds: float | None = None) -> int:
    import keras

    from kerastk.deploy.export import ExportError, export_onnx
    from kerastk.models.registry import create_model

    route = keras.backend.backend()
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + budget_seconds if budget_seconds else None
    for name in model_names(pattern):
        if deadline and time.perf_counter() > deadline:
            print(f"budget spent: {name} and the models after it not exported on the {route} route", flush=True)
            break
        target = out / name / f"{route}.onnx"
        if target.is_file():
            continue
        target.parent.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        try:
            result = export_onnx(create_model(name), target, route=route)
        except ExportError as exc:
            record = {"error": str(exc)[:500]}
        else:
            record = {"seconds": round(time.perf_counter() - t0, 2), **result.graph,
                      "max_abs_diff": result.validation.max_abs_diff}
        (out / name / f"{route}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name:24s} {route:10s} {record.get('error') or str(record['seconds']) + ' s'}", flush=True)
        keras.backend.clear_session()
    return 0


def time_phase(out: Path, pattern: str, rounds: int, repeats: int, json_path) -> int:
    import fnmatch

    from kerastk.deploy.timing import interleaved_latency

    table, worst = [], 0.0
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and fnmatch.fnmatch(p.name, pattern)):
        files = {r: folder / f"{r}.onnx" for r in RULE_ORDER if (folder / f"{r}.onnx").is_file()}
        if not files:
            continue
        samples = interleaved_latency(files, rounds=rounds, warmup=2, repeats=repeats, max_seconds=5)
        med = {r: statistics.median(v["median_ms"] for v in values) for r, values in samples.items()}
        best = min(med, key=med.get)
        rules = {b: rule_route(b, med) for b in BACKENDS}
        ratios = {b: round(med[r] / med[best], 3) for b, r in rules.items()}
        ratio = max(ratios.values())
        rule = "/".join(sorted(set(rules.values())))
        worst = max(worst, ratio)
        graphs = {r: json.loads((folder / f"{r}.json").read_text()) for r in files}
        row = {"model": folder.name, "latency_ms": {r: round(v, 4) for r, v in med.items()}, "rule": rules,
               "best": best, "ratio_by_training_backend": ratios, "ratio": round(ratio, 3),
               "nodes": {r: g.get("nodes") for r, g in graphs.items()},
               "transposes": {r: g.get("transposes") for r, g in graphs.items()},
               "export_seconds": {r: g.get("seconds") for r, g in graphs.items()},
               "missing": [r for r in RULE_ORDER if r not in files]}
        table.append(row)
        lat = "  ".join(f"{r[:2]} {v:8.3f}" for r, v in med.items())
        print(f"{folder.name:24s} {lat}   rule {rule} best {best} ratio {ratio:.3f}", flush=True)
    print(f"{len(table)} models; worst rule/best ratio {worst:.3f} (target <= 1.1); over 1.1: "
          f"{[r['model'] for r in table if r['ratio'] > 1.1]}")
    if json_path:
        Path(json_path).write_text(json.dumps(table, indent=1) + "\n")
    return 0
