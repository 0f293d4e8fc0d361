"""The registry's table: every builder registers itself here when its family module is imported
(kerastk.models.registry imports every family, then answers through these functions).

    @register_model(family="mlp", paper=..., default_input_shape=(784,))
    def mlp(input_shape=(784,), num_classes=10, ...): ...

    kerastk.create_model("mlp", depth=3)      # a keras.Model
    kerastk.list_models("resnet*")            # names, sorted
    kerastk.model_info("lenet5")              # family, paper, defaults, reference figures
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect

_REGISTRY: dict[str, dict] = {}


def register_model(fn=None, *, name: str | None = None, family: str | None = None, **info):
    """Register a builder under `name` (default: the function's name).

    Keyword metadata (paper, default_input_shape, preprocessing, reference_params, reference_source, ...)
    is returned by :func:`model_info`.
    """

    def decorator(builder):
        key = name or builder.__name__
        if key in _REGISTRY and _REGISTRY[key]["builder"] is not builder:
            raise ValueError(f"Model name {key!r} is already registered by {_REGISTRY[key]['builder'].__module__}.")
        params = inspect.signature(builder).parameters
        defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
        doc = inspect.getdoc(builder) or ""
        _REGISTRY[key] = {
            "builder": builder,
            "info": {
                "name": key,
                "family": family or builder.__module__.rsplit(".", 1)[-1],
                "summary": doc.splitlines()[0] if doc else "",
                "defaults": defaults,
                **info,
            },
        }
        return builder

    return decorator(fn) if fn is not None else decorator


def register_variant(builder, name: str, doc: str, **info):
    """Register `builder` - a closure that one family's variants share, differing only in what it closes over -
    under `name` with its own docstring (the registry's summary is its first line) and metadata."""
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    return register_model(**info)(builder)


def _lookup(name: str) -> dict:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} `kerastk.list_models()` lists the {len(_REGISTRY)} models.")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern`, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> dict:
    """Metadata of a registered model (a copy: family, summary, defaults, paper, reference figures ...)."""
    return dict(_lookup(name)["info"])


def create_model(name: str, **kwargs):
    """Build a registered model. Unknown keyword arguments raise a TypeError naming them and listing the
    accepted ones; builders raise ValueError for bad values."""
    entry = _lookup(name)
    params = inspect.signature(entry["builder"]).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(
                f"create_model({name!r}) got unexpected argument(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(params)}."
            )
    return entry["builder"](**kwargs)
