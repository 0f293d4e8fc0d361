"""Latency measurement shared by the export route choice, quantisation and `kerastk bench` (numpy + onnxruntime).

Every figure is the median of repeated calls after warm-up calls, in one process, with the thread settings
below; ratios are only meaningful between figures measured in the same run on a quiet machine.
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np


def default_threads() -> int:
    """Threads onnxruntime gets for one inference: every core this process may use (its affinity mask)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def ort_session(path, threads: int | None = None):
    """An onnxruntime CPU session with all graph optimisations, `threads` intra-op threads (default: every
    core), one inter-op thread and sequential execution - the settings every kerastk latency uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or default_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_call(fn, warmup: int = 3, repeats: int = 20, max_seconds: float = 20.0) -> dict:
    """Median / min / p90 milliseconds of `fn()` over `repeats` calls after `warmup` calls (fewer repeats, at
    least 3, when the calls would take longer than `max_seconds`)."""
    for _ in range(max(0, warmup)):
        fn()
    times = []
    budget_end = time.perf_counter() + max_seconds
    for i in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if i >= 2 and time.perf_counter() > budget_end:
            break
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 6), "min_ms": round(ordered[0], 6),
            "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 6), "runs": len(ordered)}


def feed_for(session, batch_size: int, inputs=None, seed: int = 0) -> dict:
    """Input feed of `batch_size` rows: rows of `inputs` (repeated as needed) or random values fitting the
    session's inputs (normal floats, small integer ids; dynamic non-batch axes get 8)."""
    from kerastk.deploy.runtime import ort_dtype

    rng = np.random.default_rng(seed)
    given = None if inputs is None else (list(inputs) if isinstance(inputs, (list, tuple)) else [inputs])
    feed = {}
    for i, arg in enumerate(session.get_inputs()):
        dtype = np.dtype(ort_dtype(arg.type))
        if given is not None:
            a = np.asarray(given[i])
            feed[arg.name] = a[np.arange(batch_size) % len(a)].astype(dtype, copy=False)
            continue
        shape = [batch_size] + [d if isinstance(d, int) else 8 for d in arg.shape[1:]]
        feed[arg.name] = (rng.integers(0, 2, size=shape) if dtype.kind in "iu" else rng.standard_normal(shape)
                          ).astype(dtype)
    return feed


def ort_latency(path_or_session, batch_size: int = 1, inputs=None, threads: int | None = None, warmup: int = 3,
                repeats: int = 20, max_seconds: float = 20.0) -> dict:
    """Median latency of one onnxruntime call on `batch_size` rows (see :func:`time_call`), plus ms per row."""
    session = path_or_session if hasattr(path_or_session, "run") else ort_session(path_or_session, threads)
    feed = feed_for(session, batch_size, inputs)
    result = time_call(lambda: session.run(None, feed), warmup, repeats, max_seconds)
    result["batch_size"] = int(batch_size)
    result["ms_per_row"] = round(result["median_ms"] / batch_size, 6)
    return result


def interleaved_latency(sessions: dict, *, rounds: int = 3, batch_size: int = 1, inputs=None, warmup: int = 2,
                        repeats: int = 20, max_seconds: float = 20.0) -> dict:
    """Latency of several sessions (or paths) timed in interleaved rounds - A, B, C, A, B, C, ... - so drift on
    a shared machine hits each alike: {key: [one :func:`ort_latency` result per round]}."""
    sessions = {k: s if hasattr(s, "run") else ort_session(s) for k, s in sessions.items()}
    samples = {k: [] for k in sessions}
    for _ in range(max(1, rounds)):
        for k, session in sessions.items():
            samples[k].append(ort_latency(session, batch_size, inputs=inputs, warmup=warmup, repeats=repeats,
                                          max_seconds=max_seconds))
    return samples
