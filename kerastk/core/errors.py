"""kerastk's errors: one base class, so a caller (and the `kerastk` command) can tell kerastk's own failures
from a bug. Each also derives from the built-in class that callers caught before it existed (RuntimeError,
ValueError), so existing ``except`` clauses keep working."""
from __future__ import annotations


def first_line(exc: BaseException, default: str = "", limit: int = 300) -> str:
    """The first line of an exception's message (at most `limit` characters), or `default` when it has none:
    what a one-line report quotes from a library's multi-line error."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else default


class KerastkError(Exception):
    """Base of every error kerastk raises on purpose (its message says what was wrong and what was expected)."""


class ExportError(KerastkError, RuntimeError):
    """No route produced an ONNX file that validates; `attempts` holds each route's figures
    (kerastk.deploy.export.ExportAttempt)."""

    def __init__(self, message, attempts):
        super().__init__(message)
        self.attempts = attempts


class ExporterFailure(KerastkError, RuntimeError):
    """An exporter failed; the message names the layer (when Keras says which) and the exporter's own message."""


class RoundTripError(KerastkError, RuntimeError):
    """The model does not come back the same from its `.keras` file: no subprocess route can export it."""
