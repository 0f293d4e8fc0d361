"""Which registered models a registry-wide benchmark runs."""
from __future__ import annotations


def model_names(pattern: str) -> list[str]:
    """Registered names matching any of the comma-separated fnmatch patterns, in the order the patterns give."""
    from kerastk.models.registry import list_models

    names = []
    for part in pattern.split(","):
        names += [n for n in list_models(part.strip()) if n not in names]
    return names
