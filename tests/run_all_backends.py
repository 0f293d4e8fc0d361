"""Run the test suite once per Keras backend, each in its own process (the backend is fixed at import).

    python tests/run_all_backends.py                 # tensorflow, jax, torch
    python tests/run_all_backends.py jax -- -k export
    python tests/run_all_backends.py -- tests/test_parity.py   # named test files only
    python tests/run_all_backends.py --jobs 1        # one backend after another
    python tests/run_all_backends.py --quick         # the quick tier: TensorFlow, no slow or heavy tests (< 5 min)
Exits non-zero when any backend's run fails; prints a per-backend summary and a total line.

Backends run two at a time by default (`--jobs`, at most one per CPU core), each process limited to its share
of the cores (OMP / MKL / TensorFlow / XLA thread settings), so two processes never fight over the same
threads: much of a test's time is single-threaded Python (tracing, exporting, converting, importing a backend
in an export subprocess), which a second process overlaps.

Tests marked `paper` (parameter counts and mult-adds at the paper's resolution: graph construction only, the
same numbers on every backend) and tests marked `backend_independent` (checks whose result no backend can
change, e.g. OpenVINO against onnxruntime on one exported file) run under the first backend only.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("tensorflow", "jax", "torch")
#: Left out of the quick tier (--quick): every registered model and every recipe end to end, the export route
#: matrices (the registry's and any model's), the mutation tests and the paper-scale model families - the full
#: command runs them.
HEAVY_FILES = ("test_models.py", "test_recipes.py", "test_export.py", "test_parity.py", "test_cnn_families.py",
               "test_resnet_family.py", "test_bench.py", "test_distribute.py", "test_any_model.py")


def _environment(backend: str, threads: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if threads:
        n = str(threads)
        env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, TF_NUM_INTRAOP_THREADS=n,
                   TF_NUM_INTEROP_THREADS=n,
                   XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                             f"intra_op_parallelism_threads={n}".strip())
    return env


def _parse_args(argv):
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else list(argv)
    jobs = None
    quick = "--quick" in own
    if quick:
        own.remove("--quick")
        own = own or ["tensorflow"]
        extra = ["-m", "not slow and not paper", *[f"--ignore=tests/{f}" for f in HEAVY_FILES], *extra]
    if "--jobs" in own:
        i = own.index("--jobs")
        try:
            jobs = int(own[i + 1])
        except (IndexError, ValueError):
            sys.exit("--jobs needs a positive integer, e.g. --jobs 1")
        if jobs < 1:
            sys.exit(f"--jobs must be >= 1; received {jobs}")
        del own[i:i + 2]
    chosen = own or list(BACKENDS)
    bad = [b for b in chosen if b not in BACKENDS]
    if bad:
        sys.exit(f"unknown backend(s) {bad}; expected some of {list(BACKENDS)}")
    cores = os.cpu_count() or 1
    jobs = min(jobs or 2, len(chosen), cores)
    return chosen, extra, jobs, (cores // jobs if jobs > 1 else 0)


def main(argv):
    chosen, extra, jobs, threads = _parse_args(argv)
    print(f"backends {chosen}, {jobs} at a time" + (f", {threads} thread(s) each" if threads else ""), flush=True)
    totals, failed, lines = {"passed": 0, "failed": 0, "skipped": 0}, [], {}
    pending = list(enumerate(chosen))
    targets = [] if any(a.startswith("tests/") for a in extra) else ["tests"]  # test files named: those only
    running = []  # (backend, process, log file, start time)
    while pending or running:
        while pending and len(running) < jobs:
            i, backend = pending.pop(0)
            marks = [] if i == 0 else ["-m", "not paper and not backend_independent"]
            log = tempfile.TemporaryFile(mode="w+")
            proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets, *marks,
                                     *extra], cwd=ROOT, env=_environment(backend, threads), stdout=log,
                                    stderr=subprocess.STDOUT, text=True)
            print(f"started KERAS_BACKEND={backend} {' '.join(marks)}", flush=True)
            running.append((backend, proc, log, time.time()))
        time.sleep(1)
        for item in [r for r in running if r[1].poll() is not None]:
            running.remove(item)
            backend, proc, log, start = item
            log.seek(0)
            output = log.read()
            log.close()
            print(f"\n===== KERAS_BACKEND={backend} (exit {proc.returncode}) =====", flush=True)
            sys.stdout.write(output[-20000:] if proc.returncode == 0 else output[-40000:])
            if proc.returncode != 0:
                failed.append(backend)
            summary = output.strip().splitlines()[-1] if output.strip() else "no output"
            for key in totals:
                m = re.search(rf"(\d+) {key}", summary)
                totals[key] += int(m.group(1)) if m else 0
            lines[backend] = f"{backend:>10}: {summary} ({time.time() - start:.0f} s wall)"
    print("\n===== summary =====")
    print("\n".join(lines[b] for b in chosen))
    n_failed = totals["failed"] or len(failed)  # a backend that crashed before counting still counts
    print(f"{totals['passed']} passed, {n_failed} failed, {totals['skipped']} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
