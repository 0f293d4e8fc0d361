"""One model's benchmarks (`kerastk bench MODEL|RUN_DIR`): Keras against onnxruntime fp32 / int8, the export
routes, the runner's training overhead (see kerastk.bench for the method)."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_BATCH_SIZES = (1, 8, 32)
#: CPU used by other processes (in cores) above which a benchmark is flagged as taken on a busy machine.
BUSY_CORES = 0.25


# ---------------------------------------------------------------------------------------------------- memory
def _proc_status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak resident memory (bytes) of this process during a `with` block: Linux's VmHWM, reset at entry
    (/proc/self/clear_refs); elsewhere the process's lifetime peak (ru_maxrss), said in `.how`."""

    def __enter__(self):
        self.how = "VmHWM reset per phase"
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.how = "process lifetime peak (ru_maxrss)"
        self.start = _proc_status("VmRSS")
        return self

    def __exit__(self, *exc):
        peak = _proc_status("VmHWM")
        if peak is None:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak = peak
        self.growth = None if self.start is None else max(0, peak - self.start)
        return False

    def figures(self) -> dict:
        """Peak resident MB of the process during the block, and how far above its size at entry it went."""
        return {"peak_mb": _mb(self.peak), "growth_mb": _mb(self.growth)}


def _children_peak_mb() -> float | None:
    """Largest peak resident memory of this process's finished child processes (None when there were none)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(peak / 1024, 1) if peak else None


class OtherLoad:
    """CPU used by *other* processes while a `with` block runs, in cores: all CPU time the kernel counted
    (/proc/stat) minus this process's own and its waited-for children's (os.times), over the wall time. A quiet
    machine reads ~0; a neighbour's training run reads ~1 or more. None where /proc/stat is missing."""

    @staticmethod
    def _busy_seconds():
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy_seconds(), self._own_seconds()
        return self

    def __exit__(self, *exc):
        busy = self._busy_seconds()
        wall = time.perf_counter() - self.t0
        self.cores = None if busy is None or self.busy0 is None or wall <= 0 else round(
            max(0.0, (busy - self.busy0) - (self._own_seconds() - self.own0)) / wall, 3)
        return False


def thread_report() -> dict:
    from kerastk.backend import thread_settings
    from kerastk.deploy.timing import default_threads

    return {"onnxruntime_intra_op_threads": default_threads(), "onnxruntime_inter_op_threads": 1,
            "keras_backend": thread_settings(), "cores_usable": default_threads(), "cpu_count": os.cpu_count()}


# ---------------------------------------------------------------------------------------------------- model
def resolve_target(target: str, builder_kwargs: dict | None = None):
    """(model, name, run_dir or None) for a registered model name or a run folder (or its model.keras)."""
    from kerastk.deploy.validate import load_keras

    path = Path(target)
    if path.is_dir() or path.suffix == ".keras":
        run_dir = path if path.is_dir() else path.parent
        keras_path = path if path.suffix == ".keras" else path / "model.keras"
        if not keras_path.is_file():
            raise FileNotFoundError(f"No model.keras in {str(run_dir)!r}; expected a run folder written by a "
                                    f"recipe (or a registered model name).")
        return load_keras(keras_path), run_dir.name, run_dir
    from kerastk.models.registry import create_model

    return create_model(target, **(builder_kwargs or {})), target, None


def _saved(run_dir, prefix: str):
    from kerastk.core.rundir import saved_arrays

    return saved_arrays(run_dir, prefix)


def _inputs_for(model, run_dir, n: int):
    """Real rows when the run folder kept them (quantization_data.npz), else random inputs fitting the model."""
    from kerastk.deploy.validate import sample_inputs

    arrays = _saved(run_dir, "x_test")
    if arrays:
        return [a[np.arange(n) % len(a)] for a in arrays], "test split rows"
    return sample_inputs(model, n, seed=0), "random inputs (latency only)"


def _calibration_for(model, run_dir, n: int = 256):
    arrays = _saved(run_dir, "x_train")
    if arrays:
        return arrays, "the run folder's training rows (quantization_data.npz)"
    from kerastk.deploy.validate import sample_inputs

    return sample_inputs(model, n, seed=1), "random inputs (random weights: latency only, accuracy meaningless)"


# ---------------------------------------------------------------------------------------------------- timing
def keras_latency(model, arrays, warmup: int, repeats: int, max_seconds: float) -> dict:
    """Median ms of `model.predict_on_batch(x)` and of `model(x, training=False)` (eager call) on one batch."""
    import keras

    from kerastk.deploy.timing import time_call

    feed = arrays[0] if len(arrays) == 1 else arrays
    tensors = keras.tree.map_structure(keras.ops.convert_to_tensor, feed)

    def call():
        y = model(tensors, training=False)
        keras.tree.map_structure(keras.ops.convert_to_numpy, y)  # wait for the result (JAX is asynchronous)

    return {"predict_on_batch": time_call(lambda: model.predict_on_batch(feed), warmup, repeats, max_seconds),
            "call": time_call(call, warmup, repeats, max_seconds)}


def bench_inference(target, *, builder_kwargs=None, batch_sizes=DEFAULT_BATCH_SIZES, int8=True, warmup=5,
                    repeats=30, max_seconds=15.0, out_dir=None, verbose=True) -> dict:
    """Keras (active backend) against onnxruntime fp32 (and int8) at each batch size, export time, peak memory.

    Returns the JSON-ready result: `rows` (engine, batch size, median / min / p90 ms, ms per row, speed-up over
    Keras's predict_on_batch at the same batch size), `export` (route, seconds, graph), `memory`, `threads`,
    `load` (before / after) and `quiet`.
    """
    from kerastk.backend import active_backend, versions
    from kerastk.deploy.export import export_onnx
    from kerastk.deploy.timing import ort_latency, ort_session

    other = OtherLoad().__enter__()
    model, name, run_dir = resolve_target(target, builder_kwargs)
    batch_sizes = tuple(int(b) for b in batch_sizes)
    arrays, input_source = _inputs_for(model, run_dir, max(batch_sizes))
    say = print if verbose else (lambda *a, **k: None)
    result = {"target": str(target), "name": name, "backend": active_backend(), "versions": versions(),
              "threads": thread_report(), "inputs": input_source, "batch_sizes": list(batch_sizes),
              "params": int(model.count_params()), "warmup": warmup, "repeats": repeats, "rows": [],
              "memory": {}}
    tmp = tempfile.TemporaryDirectory(prefix="kerastk-bench-")
    work = Path(out_dir) if out_dir else Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    try:
        keras_ms = {}
        with PeakMemory() as mem:
            for b in batch_sizes:
                batch = [a[:b] for a in arrays]
                timings = keras_latency(model, batch, warmup, repeats, max_seconds)
                keras_ms[b] = timings["predict_on_batch"]["median_ms"]
                for engine, t in timings.items():
                    result["rows"].append(_row(f"keras {engine}", b, t, keras_ms[b]))
                say(f"  keras ({active_backend()}) batch {b}: predict_on_batch {keras_ms[b]:.3f} ms, "
                    f"model(x) {timings['call']['median_ms']:.3f} ms", file=sys.stderr)
        result["memory"]["keras_inference"] = mem.figures()
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            export = export_onnx(model, work / "model.onnx", inputs=[a[:8] for a in arrays])
            export_seconds = time.perf_counter() - t0
        result["memory"]["export"] = mem.figures()
        # a route run in a subprocess (the TensorFlow route from JAX / torch) peaks there, not here
        result["memory"]["export_subprocess_peak_mb"] = (_children_peak_mb() if export.route != active_backend()
                                                         else None)
        result["memory"]["how"] = mem.how
        result["export"] = {"route": export.route, "optimize": export.optimize, "seconds": round(export_seconds, 2),
                            "graph": export.graph, "max_abs_diff": export.validation.max_abs_diff}
        say(f"  export: route {export.route}, {export_seconds:.1f} s, {export.graph.get('nodes')} nodes / "
            f"{export.graph.get('transposes')} Transposes", file=sys.stderr)
        files = {"onnxruntime fp32": work / "model.onnx"}
        if int8:
            from kerastk.deploy.quantize import quantize_onnx

            calibration, source = _calibration_for(model, run_dir)
            t0 = time.perf_counter()
            quantize_onnx(work / "model.onnx", work / "model.int8.onnx", "int8",
                          calibration=calibration if len(calibration) > 1 else calibration[0])
            result["int8"] = {"calibration": source, "seconds": round(time.perf_counter() - t0, 2),
                              "bytes": (work / "model.int8.onnx").stat().st_size,
                              "fp32_bytes": (work / "model.onnx").stat().st_size}
            files["onnxruntime int8"] = work / "model.int8.onnx"
        for engine, path in files.items():
            with PeakMemory() as mem:
                session = ort_session(path)
                for b in batch_sizes:
                    t = ort_latency(session, b, inputs=[a[:b] for a in arrays], warmup=warmup, repeats=repeats,
                                    max_seconds=max_seconds)
                    result["rows"].append(_row(engine, b, t, keras_ms[b]))
                    say(f"  {engine} batch {b}: {t['median_ms']:.3f} ms ({keras_ms[b] / t['median_ms']:.2f}x "
                        f"Keras)", file=sys.stderr)
            result["memory"][f"onnxruntime_{engine.split()[-1]}"] = mem.figures()
    finally:
        tmp.cleanup()
    _record_load(result, other)
    return result


def _record_load(result: dict, other: OtherLoad) -> None:
    other.__exit__(None, None, None)
    result["other_processes_cores"] = other.cores
    result["quiet"] = None if other.cores is None else other.cores <= BUSY_CORES


def _row(engine, batch, t, keras_ms) -> dict:
    return {"engine": engine, "batch_size": batch, "median_ms": t["median_ms"], "min_ms": t["min_ms"],
            "p90_ms": t["p90_ms"], "ms_per_row": round(t["median_ms"] / batch, 6), "runs": t["runs"],
            "speedup_vs_keras": round(keras_ms / t["median_ms"], 3) if t["median_ms"] else None}


def _mb(n) -> float | None:
    return None if n is None else round(n / 2**20, 1)


# ---------------------------------------------------------------------------------------------------- routes
def bench_routes(target, *, builder_kwargs=None, repeats=30, rounds=3, verbose=True) -> dict:
    """Export through every installed route (each optimised as the default export does), time each file at
    batch 1 in this process, and compare the route the rule picks with the fastest: `rule_ratio` is the rule's
    latency over the best route's (the target is <= 1.1)."""
    from kerastk.backend import BACKENDS, active_backend, backend_available
    from kerastk.deploy.export import ExportError, export_onnx, route_order
    from kerastk.deploy.timing import interleaved_latency

    other = OtherLoad().__enter__()
    model, name, _ = resolve_target(target, builder_kwargs)
    active = active_backend()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="kerastk-routes-") as tmp:
        for r in [b for b in BACKENDS if b == active or backend_available(b)]:
            t0 = time.perf_counter()
            try:
                res = export_onnx(model, Path(tmp) / f"{r}.onnx", route=r)
            except ExportError as exc:
                rows[r] = {"error": str(exc)[:300]}
                continue
            rows[r] = {"export_seconds": round(time.perf_counter() - t0, 2), **{
                k: res.graph.get(k) for k in ("nodes", "transposes", "bytes")},
                "exported_nodes": res.graph["exported"]["nodes"],
                "exported_transposes": res.graph["exported"]["transposes"]}
        # timed after every export, in interleaved rounds (A, B, C, A, B, C, ...): drift hits every route alike
        samples = interleaved_latency({r: Path(tmp) / f"{r}.onnx" for r, v in rows.items() if "error" not in v},
                                      rounds=rounds, warmup=2, repeats=repeats)
        for r, values in samples.items():
            rows[r]["latency_ms_batch1"] = float(np.median([v["median_ms"] for v in values]))
            if verbose:
                v = rows[r]
                print(f"  {name} route {r}: {v['latency_ms_batch1']:.3f} ms, {v['nodes']} nodes / "
                      f"{v['transposes']} Transposes (exported {v['exported_nodes']} / "
                      f"{v['exported_transposes']}), export {v['export_seconds']} s", file=sys.stderr)
    timed = {r: v["latency_ms_batch1"] for r, v in rows.items() if "latency_ms_batch1" in v}
    rule = next((r for r in route_order("auto", active, optimize=True) if r in timed), None)
    best = min(timed, key=timed.get) if timed else None
    result = {"target": str(target), "name": name, "backend": active, "routes": rows, "rule_route": rule,
              "best_route": best, "rule_ratio": round(timed[rule] / timed[best], 3) if rule and best else None}
    _record_load(result, other)
    return result


# ---------------------------------------------------------------------------------------------------- training
class EpochTimer:
    """Wall time of each epoch (a Keras callback built on first use, so this module imports without keras)."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._t0)

        return _Timer()


def bench_training(model_name, *, dataset=None, epochs=4, batch_size=64, rows=None, builder_kwargs=None,
                   verbose=True) -> dict:
    """Training throughput of kerastk's runner (`training.run`: its callbacks - backup, plateau LR, early
    stopping, checkpoint, CSV log - on the same data) against a bare `model.fit` with validation, same model
    and seed. The first epoch (tracing / compilation) is left out; throughput = training rows / median epoch
    seconds, an epoch including its validation pass (the same in both);    seconds; `runner_overhead` = runner epoch / bare epoch - 1 (target <= 0.05)."""
    import dataclasses

    from kerastk import data as kdata
    from kerastk.backend import active_backend, set_seed
    from kerastk.models.registry import create_model, model_info
    from kerastk.training import run, take_rows

    if epochs < 2:
        raise ValueError(f"`epochs` must be >= 2 (the first epoch compiles and is left out); received {epochs}.")
    info = model_info(model_name)
    shape = tuple(info.get("default_input_shape", ()))
    dataset = dataset or ("mnist" if shape[-1:] == (1,) or len(shape) == 1 else "cifar10")
    data = kdata.load(dataset)
    if rows:
        data = dataclasses.replace(data, x_train=take_rows(data.x_train, rows), y_train=data.y_train[:rows])
    kwargs = {"input_shape": data.input_shape, "num_classes": data.num_classes, **(builder_kwargs or {})}
    n = len(data.y_train)

    def fresh():
        set_seed(0)
        return create_model(model_name, **kwargs)

    other = OtherLoad().__enter__()
    loss, results = "sparse_categorical_crossentropy", {}
    for attempt in range(2):  # bare, runner, bare, runner: the median of each, order effects averaged
        for kind in ("bare", "runner"):
            model, timer = fresh(), EpochTimer()
            if kind == "bare":
                model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
                model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                          batch_size=batch_size, verbose=0, shuffle=True, callbacks=[timer])
            else:
                with tempfile.TemporaryDirectory(prefix="kerastk-bench-train-") as tmp:
                    run(model, data, "bench", loss=loss, epochs=epochs, batch_size=batch_size, out=tmp,
                        patience=epochs + 1, export=False, verbose=0, callbacks=[timer])
            results.setdefault(kind, []).extend(timer.seconds[1:])
            if verbose:
                print(f"  {kind} fit, pass {attempt + 1}: epochs {[round(s, 2) for s in timer.seconds]} s",
                      file=sys.stderr)
    median = {k: float(np.median(v)) for k, v in results.items()}
    result = {"model": model_name, "dataset": dataset, "backend": active_backend(), "train_rows": n,
              "epochs": epochs, "batch_size": batch_size,
              "epoch_seconds": {k: round(v, 6) for k, v in median.items()},
              "samples_per_second": {k: round(n / v, 1) for k, v in median.items()},
              "runner_overhead": round(median["runner"] / median["bare"] - 1, 4), "threads": thread_report()}
    _record_load(result, other)
    return result


# ---------------------------------------------------------------------------------------------------- output
def format_table(result: dict) -> str:
    lines = [f"{result['name']} on {result['backend']} ({result['params']:,} parameters; inputs: {result['inputs']})",
             f"{'engine':28s} {'batch':>5s} {'median ms':>10s} {'ms/row':>9s} {'vs Keras':>9s}"]
    for r in result["rows"]:
        lines.append(f"{r['engine']:28s} {r['batch_size']:5d} {r['median_ms']:10.3f} {r['ms_per_row']:9.3f} "
                     f"{r['speedup_vs_keras']:8.2f}x")
    e = result.get("export", {})
    if e:
        g = e.get("graph", {})
        lines.append(f"export: route {e['route']} ({e['optimize']}), {e['seconds']} s, {g.get('nodes')} nodes / "
                     f"{g.get('transposes')} Transposes, max abs diff {e['max_abs_diff']:.2g}")
    if "int8" in result:
        q = result["int8"]
        lines.append(f"int8: {q['bytes'] / 2**20:.2f} MB vs {q['fp32_bytes'] / 2**20:.2f} MB fp32, calibration: "
                     f"{q['calibration']}")
    mem = result.get("memory", {})
    lines.append("peak memory, MB (growth above the phase's start): " + ", ".join(
        f"{k} {v['peak_mb']} (+{v['growth_mb']})" for k, v in mem.items() if isinstance(v, dict))
        + f"; export subprocess {mem.get('export_subprocess_peak_mb') or '-'} [{mem.get('how', '')}]")
    t = result["threads"]
    lines.append(f"threads: onnxruntime {t['onnxruntime_intra_op_threads']} intra-op / 1 inter-op; Keras backend "
                 f"defaults {t['keras_backend']}")
    lines.append(load_line(result))
    return "\n".join(lines)


def load_line(result) -> str:
    cores = result.get("other_processes_cores")
    text = f"other processes used {cores} cores during the run" if cores is not None else "machine load unknown"
    return text + ("  ** BUSY MACHINE: re-run these timings **" if result.get("quiet") is False else " (quiet)")
