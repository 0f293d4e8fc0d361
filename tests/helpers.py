"""The checks every registered model must pass, used by tests/test_models.py (parametrized over the registry)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kerastk.deploy.validate import keras_outputs, sample_inputs


def train_one_step(model, seed: int = 0) -> float:
    """Compile with MSE against random targets, train one batch, and return the loss (must be finite)."""
    x = sample_inputs(model, 4, seed=seed)
    rng = np.random.default_rng(seed)
    import keras

    # targets shaped like the outputs (a variable time axis takes the length the model gives for these inputs)
    shapes = [(4, *t.shape[1:]) for t in model.outputs]
    if any(None in s for s in shapes):
        shapes = [o.shape for o in keras_outputs(model, x)]
    y = [rng.standard_normal(s).astype("float32") for s in shapes]

    # Eager on TensorFlow and torch: tracing a 100-layer train step costs ~10x one eager step; JAX's eager
    # mode dispatches op by op and is slower than its one jit compilation.
    model.compile(optimizer="adam", loss="mse", run_eagerly=keras.backend.backend() != "jax")
    before = [np.array(w) for w in model.get_weights()]
    loss = model.train_on_batch(x[0] if len(x) == 1 else x, y[0] if len(y) == 1 else y)
    loss = float(np.ravel(loss)[0])
    after = model.get_weights()
    assert np.isfinite(loss), f"{model.name}: loss {loss} after one training step"
    assert all(np.all(np.isfinite(w)) for w in after), f"{model.name}: non-finite weights after one step"
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, after))
    assert changed > 0, f"{model.name}: no weight changed after a training step"
    return loss


def calibrate_batchnorm(model, rows: int = 32, seed: int = 5) -> None:
    """Set every BatchNormalization layer's moving statistics from one batch of sample inputs (a training-mode
    forward pass at momentum 0), as training on data would: a freshly initialised deep stack (MobileNet's 13
    blocks) lets its signal vanish at inference, so it gives the same output for every input and no parity check
    can tell its export from a corrupted one (kerastk's verdict is then "undecided", never "passed")."""
    import keras

    from kerastk.deploy.feeds import keras_feed

    norms = [(layer, layer.momentum) for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    try:
        for layer, _ in norms:
            layer.momentum = 0.0
        model(*keras_feed(model, sample_inputs(model, rows, seed=seed)), training=True)
    finally:
        for layer, momentum in norms:
            layer.momentum = momentum


def roundtrip_max_diff(model, path) -> float:
    """Save to .keras, load it back, and return the max abs difference of the outputs."""
    import keras

    x = sample_inputs(model, 3, seed=1)
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert loaded.count_params() == model.count_params()
    diffs = [np.max(np.abs(a - b)) for a, b in zip(keras_outputs(model, x), keras_outputs(loaded, x))]
    return float(max(diffs))


def check_export(model, path, atol=1e-4):
    """Export with kerastk and return the result; parity must hold at batch sizes 1 and 8 by kerastk's criterion
    (relative to each output's values and spread, logits included) and within `atol` absolute as well.

    Under TensorFlow this is the shipped path (its exporter + onnxruntime's offline optimisation, validated);
    under JAX and torch the backend's own exporter (optimize=False), which the fallback routes rely on - the
    optimised route from those backends would re-export through TensorFlow in a subprocess for every model."""
    import keras

    from kerastk.deploy import export_onnx

    result = export_onnx(model, path, optimize=keras.backend.backend() == "tensorflow")
    report = result.validation
    assert report.passed and report.verdict == "passed", str(report)
    assert report.max_rel_diff <= report.rtol  # the criterion (kerastk.deploy.parity), relative to each output
    _log_parity(model, result)
    assert report.batch_sizes == (1, 8)
    assert report.max_abs_diff <= atol
    # the shipped file is self-contained: it loads and runs from its final place, alone
    from kerastk.deploy import OnnxModel

    assert [p.name for p in Path(path).parent.iterdir() if p.name.startswith(Path(path).name)] == [Path(path).name]
    x = sample_inputs(model, 2, seed=3)
    outputs = OnnxModel(path).predict(x if len(x) > 1 else x[0])
    assert np.all(np.isfinite(np.asarray(outputs[0] if isinstance(outputs, list) else outputs)))
    return result


def _log_parity(model, result) -> None:
    """With KERASTK_PARITY_LOG=FOLDER, one JSON line per export (model, backend, route, verdict, max abs / rel
    diff): the registry-wide figures without a second run."""
    import json
    import os

    import keras

    folder = os.environ.get("KERASTK_PARITY_LOG")
    if not folder:
        return
    v = result.validation
    line = {"model": model.name, "backend": keras.backend.backend(), "route": result.route, "verdict": v.verdict,
            "max_abs_diff": v.max_abs_diff, "max_rel_diff": v.max_rel_diff,
            "outputs": [(o["kind"], o["verdict"], o["max_rel_diff"]) for o in v.outputs]}
    with open(Path(folder) / f"parity_{keras.backend.backend()}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
