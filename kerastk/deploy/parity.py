"""The parity criterion: when two runs of one network (Keras and a runtime) count as equal, output by output.

numpy only, so every runtime check (onnxruntime, OpenVINO, quantised files) applies the same rule.

For float outputs, element by element::

    |runtime - keras| <= atol + rtol * (|keras| + spread)

where ``spread`` is the standard deviation of the Keras values of that output's channel (its last axis) over every
row and position checked: the tolerance follows the values (an output near 35 may differ by 1e-4; a softmax over
1000 classes, whose values are near 1e-3, may not), and the ``spread`` term keeps elements that happen to cross
zero from demanding an exact match. Integer and boolean outputs must be equal.

A comparison can only count as evidence when the output *depends on the input*: a tensor whose rows are all
equal within the tolerance (an untrained 1000-class softmax that is exactly uniform, a zero-initialised head)
would match a corrupted file just as well. Such a tensor is "undecided", never "passed" on its own.
"""
from __future__ import annotations

import dataclasses

import numpy as np

#: float32 networks computed by two runtimes differ by ~1e-7 to ~1e-4 of their values (summation order, fused
#: kernels), more in deep stacks whose BatchNormalization statistics come from data: ResNeXt-50 at 224 up to 7e-4,
#: where Keras's own float32 result is already 2.1e-4 from a float64 run of the same weights. The smallest effect
#: of a 1% change of one weight tensor measured over the mutation tests' models is 3.8e-3 (tests/test_parity.py).
#: 1e-3 sits between them (and is torch.onnx's verification rtol). A random-weight ResNet-152 at 224 with
#: statistics from one batch is chaotic - Keras's float32 is 1.7e-3 from float64, exports differ by 3.1e-3 - and
#: needs a larger rtol; trained networks are far better conditioned.
DEFAULT_RTOL = 1e-3
#: No absolute floor by default: a fixed atol is a 10% tolerance on a 1000-class softmax.
DEFAULT_ATOL = 0.0

PASSED, FAILED, UNDECIDED = "passed", "failed", "undecided"


@dataclasses.dataclass
class OutputParity:
    """One compared tensor: a graph output, or the pre-activation logits of a softmax / sigmoid output."""

    name: str
    kind: str  # "output" or "logits"
    shape: list  # the shape at the largest batch checked
    max_abs_diff: float
    max_rel_diff: float  # max |runtime - keras| / (|keras| + spread)
    spread: float  # std of all the Keras values checked (the criterion uses each channel's own)
    criterion: str
    verdict: str  # passed | failed | undecided
    note: str = ""

    def __str__(self) -> str:
        text = (f"{self.kind} {self.name} {tuple(self.shape)}: {self.verdict}, max abs diff {self.max_abs_diff:.3g}, "
                f"max rel diff {self.max_rel_diff:.3g}")
        return f"{text} ({self.note})" if self.note else text


def criterion_text(dtype, rtol: float, atol: float) -> str:
    if not np.issubdtype(np.dtype(dtype), np.floating):
        return "exact equality (integer output)"
    floor = f"{atol:g} + " if atol else ""
    return f"|runtime - keras| <= {floor}{rtol:g} * (|keras| + std(keras) per channel)"


def compare_tensor(name: str, kind: str, expected: list, got: list, rtol: float = DEFAULT_RTOL,
                   atol: float = DEFAULT_ATOL) -> OutputParity:
    """Compare one tensor over several checks (batch sizes, sequence lengths): lists of Keras and runtime arrays,
    one pair per check, the batch on axis 0."""
    floating = np.issubdtype(expected[0].dtype, np.floating)
    crit = criterion_text(expected[0].dtype, rtol, atol)
    shape = list(max(expected, key=lambda e: e.size).shape)
    spread, channel_spread = _spreads(expected)
    max_abs, max_rel, failed, varies = 0.0, 0.0, False, False
    for e, g in zip(expected, got):
        e64, g64 = e.astype(np.float64), np.asarray(g).astype(np.float64)
        diff = np.abs(e64 - g64)
        both_nan = np.isnan(e64) & np.isnan(g64)
        diff = np.where(both_nan, 0.0, diff)
        if not np.all(np.isfinite(diff)):
            return OutputParity(name, kind, shape, float("inf"), float("inf"), spread, crit, FAILED,
                                "NaN or infinity where the other side has a number")
        scale = np.abs(e64) + channel_spread
        bound = atol + rtol * scale if floating else np.zeros_like(e64)
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        rel = np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0)
        max_rel = max(max_rel, float(rel.max(initial=0.0)))
        failed |= bool(np.any(diff > bound))
        if e64.ndim >= 1 and e64.shape[0] > 1:  # do the rows differ by more than the tolerance?
            varies |= bool(np.any(np.abs(e64 - e64[:1]) > np.maximum(bound, bound[:1])))
    if failed:
        return OutputParity(name, kind, shape, max_abs, max_rel, spread, crit, FAILED)
    if not varies:
        return OutputParity(name, kind, shape, max_abs, max_rel, spread, crit, UNDECIDED,
                            "every row gives the same values: a file with other weights would match as well")
    return OutputParity(name, kind, shape, max_abs, max_rel, spread, crit, PASSED)


def _spreads(expected: list) -> tuple[float, np.ndarray]:
    """(std of all Keras values, std per channel - the last axis - over every other axis and check). A channel's
    own spread sets its tolerance (a detector's objectness channel near -4.6 must not hide its box channels near
    1e-6); it is floored at 1e-6 of the whole output's spread, so a channel that is constant near zero does not
    demand more than float32 can give."""
    flat = [e.astype(np.float64).reshape(-1, e.shape[-1] if e.ndim >= 2 else 1) for e in expected]
    values = np.concatenate(flat, axis=0) if len({f.shape[1] for f in flat}) == 1 else None
    everything = np.concatenate([np.ravel(f) for f in flat])
    finite = everything[np.isfinite(everything)]
    spread = float(np.std(finite)) if finite.size else 0.0
    if values is None or values.shape[1] == 1:
        return spread, np.float64(spread)
    with np.errstate(invalid="ignore"):
        per_channel = np.nanstd(np.where(np.isfinite(values), values, np.nan), axis=0)
    per_channel = np.maximum(np.nan_to_num(per_channel), 1e-6 * spread)
    return spread, per_channel


def overall_verdict(outputs: list[OutputParity], argmax_agreement: float | None = None) -> str:
    """failed when any tensor fails (or decisive rows disagree on their argmax); passed when at least one tensor
    decides and none fails; undecided otherwise."""
    if any(o.verdict == FAILED for o in outputs) or (argmax_agreement is not None and argmax_agreement < 1.0):
        return FAILED
    return PASSED if any(o.verdict == PASSED for o in outputs) else UNDECIDED


def argmax_counts(expected: np.ndarray, got: np.ndarray, rtol: float = DEFAULT_RTOL,
                  atol: float = DEFAULT_ATOL) -> tuple[int, int, int]:
    """(agreeing rows, decisive rows, tied rows) of the argmax over the last axis. A row whose two best Keras
    scores are closer than twice the criterion's tolerance at the best score may be ordered either way by a run
    that meets the criterion: it is a tie, counted and left out."""
    if expected.ndim < 2 or expected.shape[-1] < 2 or not np.issubdtype(expected.dtype, np.floating):
        return 0, 0, 0
    e = expected.astype(np.float64)
    spread = float(np.std(e[np.isfinite(e)])) if np.isfinite(e).any() else 0.0
    top2 = np.sort(e, axis=-1)[..., -2:]
    tolerance = atol + rtol * (np.abs(top2[..., 1]) + spread)
    decisive = (top2[..., 1] - top2[..., 0]) > 2 * tolerance
    agree = np.argmax(e, -1) == np.argmax(np.asarray(got), -1)
    return int(np.sum(agree[decisive])), int(np.sum(decisive)), int(np.sum(~decisive))
