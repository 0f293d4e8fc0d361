"""`kerastk bench`: the figures it reports are consistent with each other (no timing targets here: speed targets
are measured by the command itself on a quiet machine, not asserted in tests)."""
import json
import subprocess
import sys
import time

import pytest

from kerastk import bench
from kerastk.cli import main as cli

MLP = {"input_shape": (16,), "num_classes": 4, "depth": 1, "width": 8}


def test_bench_inference_rows_ratios_export_and_memory(backend):
    result = bench.bench_inference("mlp", builder_kwargs=MLP, batch_sizes=(1, 4), int8=True, warmup=1, repeats=3,
                                   verbose=False)
    rows = {(r["engine"], r["batch_size"]): r for r in result["rows"]}
    engines = ["keras predict_on_batch", "keras call", "onnxruntime fp32", "onnxruntime int8"]
    assert sorted(rows) == sorted((e, b) for e in engines for b in (1, 4))
    for (_, b), r in rows.items():
        keras_ms = rows[("keras predict_on_batch", b)]["median_ms"]
        assert r["speedup_vs_keras"] == pytest.approx(keras_ms / r["median_ms"], rel=1e-2, abs=1e-3)
        assert r["ms_per_row"] == pytest.approx(r["median_ms"] / b, rel=1e-3)
        assert r["min_ms"] <= r["median_ms"] <= r["p90_ms"] and r["runs"] == 3
    assert rows[("keras predict_on_batch", 1)]["speedup_vs_keras"] == 1.0
    assert result["backend"] == backend and result["params"] == 16 * 8 + 8 + 8 * 4 + 4
    assert result["export"]["route"] == "tensorflow" and result["export"]["max_abs_diff"] <= 1e-4
    assert result["int8"]["bytes"] > 0 and result["int8"]["fp32_bytes"] > 0
    for phase in ("keras_inference", "export", "onnxruntime_fp32", "onnxruntime_int8"):
        assert result["memory"][phase]["peak_mb"] > 50  # a Python process with a backend loaded
    assert result["threads"]["onnxruntime_inter_op_threads"] == 1
    assert isinstance(result["other_processes_cores"], float) and isinstance(result["quiet"], bool)
    table = bench.format_table(result)
    assert "onnxruntime int8" in table and "route tensorflow" in table


def test_bench_cli_writes_json_and_rejects_bad_flags(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert cli(["bench", "mlp", "--input-shape", "16", "--num-classes", "3", "--batch-sizes", "2", "--repeats", "3",
                "--warmup", "1", "--no-int8", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["batch_sizes"] == [2] and {r["engine"] for r in result["rows"]} == {
        "keras predict_on_batch", "keras call", "onnxruntime fp32"}
    assert "onnxruntime fp32" in capsys.readouterr().out
    assert cli(["bench", "mlp", "--repeats", "1"]) == 2
    assert "--repeats must be >= 3; received 1" in capsys.readouterr().err
    assert cli(["bench", "no_such_model"]) == 2
    assert "Unknown model 'no_such_model'" in capsys.readouterr().err
    assert cli(["bench", str(tmp_path)]) == 2
    assert "No model.keras in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["bench", "mlp", "--input-shape", "a,b"])
    assert "--input-shape must be comma-separated integers" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_routes_compares_every_route_with_the_rule(backend):
    result = bench.bench_routes("mlp", builder_kwargs=MLP, repeats=5, rounds=2, verbose=False)
    routes = result["routes"]
    assert set(routes) == {"tensorflow", "jax", "torch"}
    timed = {r: v["latency_ms_batch1"] for r, v in routes.items()}
    assert result["rule_route"] == "tensorflow" and result["best_route"] == min(timed, key=timed.get)
    assert result["rule_ratio"] == pytest.approx(timed["tensorflow"] / min(timed.values()), rel=1e-2)
    assert all(v["nodes"] <= v["exported_nodes"] for v in routes.values())


@pytest.mark.slow
def test_bench_training_reports_throughput_and_runner_overhead(backend):
    result = bench.bench_training("mlp", dataset="digits", epochs=2, rows=256, batch_size=64,
                                  builder_kwargs={"depth": 1, "width": 16}, verbose=False)
    assert result["train_rows"] == 256 and result["dataset"] == "digits"
    for kind in ("bare", "runner"):
        assert result["samples_per_second"][kind] == pytest.approx(256 / result["epoch_seconds"][kind], rel=1e-2)
    ratio = result["epoch_seconds"]["runner"] / result["epoch_seconds"]["bare"] - 1
    assert result["runner_overhead"] == pytest.approx(ratio, abs=2e-3)
    with pytest.raises(ValueError, match="`epochs` must be >= 2"):
        bench.bench_training("mlp", epochs=1)


def test_other_load_sees_a_busy_neighbour():
    with bench.OtherLoad() as quiet:  # this process busy: its own time is subtracted
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            pass
    neighbour = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)
        with bench.OtherLoad() as busy:
            time.sleep(1.0)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert busy.cores > 0.5  # one spinning process is about one core (less when it shares the cores)
    assert isinstance(quiet.cores, float) and quiet.cores >= 0
