"""Run the test suite once per Keras backend, each in its own process (the backend is fixed at import).

    python tests/run_all_backends.py                 # tensorflow, jax, torch
    python tests/run_all_backends.py jax -- -k export
Exits non-zero when any backend's run fails; prints a per-backend summary and a total line.

Tests marked `paper` (parameter counts and mult-adds at the paper's resolution: graph construction only, the
same numbers on every backend) run under the first backend only, to keep the whole run under 30 minutes.
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("tensorflow", "jax", "torch")


def main(argv):
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    chosen = (argv[: argv.index("--")] if "--" in argv else argv) or list(BACKENDS)
    bad = [b for b in chosen if b not in BACKENDS]
    if bad:
        sys.exit(f"unknown backend(s) {bad}; expected some of {list(BACKENDS)}")
    totals, failed, lines = {"passed": 0, "failed": 0, "skipped": 0}, [], []
    for i, backend in enumerate(chosen):
        marks = [] if i == 0 else ["-m", "not paper"]
        print(f"\n===== KERAS_BACKEND={backend} {' '.join(marks)} =====", flush=True)
        start = time.time()
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", *marks, *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        sys.stdout.write(proc.stdout[-20000:])
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-5000:])
            failed.append(backend)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
        for key in totals:
            m = re.search(rf"(\d+) {key}", summary)
            totals[key] += int(m.group(1)) if m else 0
        lines.append(f"{backend:>10}: {summary} ({time.time() - start:.0f} s wall)")
    print("\n===== summary =====")
    print("\n".join(lines))
    n_failed = totals["failed"] or len(failed)  # a backend that crashed before counting still counts
    print(f"{totals['passed']} passed, {n_failed} failed, {totals['skipped']} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
