"""A /predict request taken apart and checked before onnxruntime sees it, and a reply's arrays as JSON."""
import io
import math

import numpy as np

#: Content types POST /predict accepts.
CONTENT_TYPES = ("application/json", "application/x-npy")


class RequestError(Exception):
    """A request the server refuses: `status` (4xx/503) and a message saying what was wrong and what was expected."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {value!r}.")
    return int(value)


def non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; received {value!r}.")
    return float(value)


def json_array(name: str, value, dtype: str, raw: bool) -> np.ndarray:
    """A JSON nested list as an array of the input's dtype, cast only when the cast loses nothing."""
    if not isinstance(value, list):
        raise RequestError(400, f"Input {name!r} must be a nested list of numbers, rows first; "
                                f"received {type(value).__name__}.")
    try:
        a = np.array(value)
    except (ValueError, TypeError):
        raise RequestError(400, f"Input {name!r} is not rectangular: every row must have the same shape "
                                f"(a nested list of numbers, rows first).") from None
    if a.size and a.dtype.kind not in "biuf":
        example = next((v for v in a.flat if not isinstance(v, (int, float)) or isinstance(v, bool)
                        or (isinstance(v, int) and not -2**63 <= v < 2**64)), a.flat[0])
        raise RequestError(400, f"Input {name!r} must contain only numbers (integers within 64 bits); "
                                f"received {example!r}.")
    if raw:  # the card's preprocessing decides the dtype (float32, or int32 token ids)
        return a
    target = np.dtype(dtype)
    if a.size == 0:
        return a.astype(target)
    if target.kind == "b":
        if a.dtype.kind != "b":
            raise RequestError(400, f"Input {name!r} has dtype bool: send true/false; received numbers.")
        return a
    if a.dtype.kind == "b":
        raise RequestError(400, f"Input {name!r} has dtype {target.name}: send numbers; received true/false.")
    if target.kind == "f":
        with np.errstate(over="ignore"):
            out = a.astype(target)
        if not np.isfinite(out[np.isfinite(a)]).all():
            raise RequestError(400, f"Input {name!r} has values out of range for {target.name} "
                                    f"(largest magnitude {np.nanmax(np.abs(a[np.isfinite(a)])):g}).")
        return out
    if a.dtype.kind == "f":  # integer input: whole numbers only
        if not np.isfinite(a).all():
            raise RequestError(400, f"Input {name!r} has dtype {target.name}; received NaN or infinite values.")
        fractional = a[a != np.round(a)]
        if fractional.size:
            raise RequestError(400, f"Input {name!r} has dtype {target.name}: send integers; received "
                                    f"non-integer numbers (e.g. {fractional.flat[0]:g}).")
    info = np.iinfo(target)
    if a.min() < info.min or a.max() > info.max:
        raise RequestError(400, f"Input {name!r} has dtype {target.name} (range {info.min}..{info.max}); "
                                f"received values from {a.min():g} to {a.max():g}.")
    return a.astype(target)


def to_json(a: np.ndarray):
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        return np.where(np.isfinite(a), a.astype(object), None).tolist()
    return a.tolist()


def check_npy_header(body: bytes) -> None:
    """Refuse an .npy body whose header claims more data than the body holds, before numpy allocates the array
    the header describes (a 100-byte body could otherwise claim gigabytes)."""
    buffer = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(buffer)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(buffer) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(buffer))
    except Exception:
        return  # not an .npy header: np.load gives the error message
    claimed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if dtype.itemsize else 0
    if claimed > len(body) - buffer.tell():
        raise RequestError(400, f"Body is a truncated .npy array: its header describes shape {tuple(shape)} "
                                f"{dtype} ({claimed} bytes) but {len(body) - buffer.tell()} bytes follow it.")
