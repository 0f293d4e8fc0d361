"""Shared test setup. The suite runs once per backend, each in its own process:
`KERAS_BACKEND=jax python -m pytest tests` (tests/run_all_backends.py runs all three)."""
import os

# Tests never try the network: mnist comes from the embedded sample, whatever ~/.keras holds.
os.environ.setdefault("KERASTK_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def backend():
    import keras

    return keras.backend.backend()


def pytest_report_header(config):
    return f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '(keras default: tensorflow)')}"
