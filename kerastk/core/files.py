"""Files: a file's sha256, JSON that holds numpy values, and writes that never leave a half-written file under
the final name (a temporary file beside it, then an atomic rename)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def jsonable(value):
    """`json.dumps(default=...)` for numpy scalars and arrays; anything else as its str()."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on a clean exit it replaces `path`, on an error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path, content, atomic: bool = True) -> Path:
    """Write `content` as indented JSON (numpy values included) and return the path."""
    text = json.dumps(content, indent=2, default=jsonable) + "\n"
    if not atomic:
        Path(path).write_text(text)
        return Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
