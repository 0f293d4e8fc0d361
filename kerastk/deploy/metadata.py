"""The ONNX metadata format: what a kerastk export says about itself, inside the ``.onnx`` file.

Every exported file carries the card's essentials in ``metadata_props`` (as ultralytics embeds names, task and
image size), so the file alone is enough to deploy it; ``card.json`` stays the full record and wins when both
exist. Keys are prefixed ``kerastk.``; scalars are plain strings, structured values JSON:

====================================  =======  ===============================================================
key                                   kind     value
====================================  =======  ===============================================================
``kerastk.format``                    int      version of this format (``1``)
``kerastk.version``                   str      kerastk version that wrote the file
``kerastk.name``                      str      the model's name (the card's ``name``)
``kerastk.task``                      str      ``classification``, ``multilabel``, ``regression``, ...
``kerastk.class_names``               JSON     list of class names, in output order
``kerastk.preprocessing``             JSON     ``{"type": "scale", "factor": 0.0039...}``, ``standardize`` + stats
``kerastk.input_layout``              JSON     ``{input name: "NHWC" | "NC" | "NTC" | "NT" | ...}``
``kerastk.decision_threshold``        float    multi-label threshold
``kerastk.backend``                   str      Keras backend active when the model was exported (trained)
``kerastk.route``                     str      backend whose exporter wrote the graph
``kerastk.opset``                     int      default-domain opset
``kerastk.parity``                    str      parity verdict: ``passed`` | ``failed`` | ``undecided``
``kerastk.parity_figures``            JSON     max_abs_diff, atol, argmax_agreement (max_rel_diff) of the check
``kerastk.exporter``                  str      the exporter that wrote the graph (e.g. ``tf2onnx 1.17.0``)
====================================  =======  ===============================================================

:func:`finalize_graph` gives the graph's inputs and outputs the Keras model's names, prunes unused opset domains
and sets the producer; :func:`embed` writes the essentials; :func:`read` / :func:`decode` read them back;
:func:`differences` compares a card with them. Everything but :func:`finalize_graph` (which imports onnx) is
standard library only, fit for the runtime side: :func:`embed` and :func:`read` work on the protobuf wire format
of the file's top-level fields, so neither parses the graph and its weights into protobuf objects (read() seeks
past them), and embed() leaves the validated graph's bytes exactly as they were.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

PREFIX = "kerastk."
FORMAT = 1
PRODUCER = "kerastk"

#: essential -> how it is stored ("str", "int", "float", "json").
FIELDS = {
    "format": "int",
    "version": "str",
    "name": "str",
    "task": "str",
    "class_names": "json",
    "preprocessing": "json",
    "input_layout": "json",
    "decision_threshold": "float",
    "backend": "str",
    "route": "str",
    "opset": "int",
    "parity": "str",
    "parity_figures": "json",
    "exporter": "str",
}
#: essentials compared between a card and the file's metadata (the others describe the file, not the model).
COMPARED = ("version", "name", "task", "class_names", "preprocessing", "input_layout", "decision_threshold",
            "backend", "route", "opset", "parity")
_PARITY_FIGURES = ("max_abs_diff", "max_rel_diff", "atol", "argmax_agreement")
#: ModelProto field numbers (onnx.proto): producer_name, producer_version, metadata_props.
_PRODUCER_NAME, _PRODUCER_VERSION, _METADATA_PROPS = 2, 3, 14


def kerastk_version() -> str:
    from kerastk import __version__

    return __version__


# === Graph names, opset domains, producer ===

def finalize_graph(path, input_names=None, output_names=None) -> dict:
    """Rewrite `path` in place so that its graph inputs and outputs are called `input_names` / `output_names`
    (positionally: nothing is reordered), every reference to them (node inputs and outputs, value_info,
    subgraphs) following; opset imports list only the domains the nodes use; producer is kerastk.

    A graph output that is also a graph input, an initializer or another output gets an Identity node instead
    of a rename; a tensor that already has a wanted name is renamed out of the way. A name list whose length
    does not match the graph (or with repeated names, or output names that are input names) is left alone.
    Returns what changed: ``{"renamed": {old: new}, "identity_outputs": [...], "removed_domains": [...]}``."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    constants = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    inputs = [v for v in graph.input if v.name not in constants]
    mapping, identity = {}, []
    if input_names is not None and _fits(input_names, inputs):
        mapping.update({v.name: n for v, n in zip(inputs, input_names) if v.name != n})
    if output_names is not None and _fits(output_names, graph.output) and \
            not set(output_names) & set(input_names or ()):
        sources = [v.name for v in graph.output]
        graph_inputs = {v.name for v in graph.input}
        for i, (v, new) in enumerate(zip(graph.output, output_names)):
            if v.name == new:
                continue
            if v.name in graph_inputs or v.name in constants or sources.count(v.name) > 1 or v.name in mapping:
                identity.append((i, v.name, new))
            else:
                mapping[v.name] = new
    wanted = set(mapping.values()) | {new for _, _, new in identity}
    if wanted:
        # a tensor that already has a wanted name (and is not that name's own input or output) moves aside
        kept = {v.name for v, n in zip(inputs, input_names or ()) if v.name == n}
        kept |= {v.name for v, n in zip(graph.output, output_names or ()) if v.name == n}
        used = _tensor_names(graph)
        for name in sorted((used & wanted) - set(mapping) - kept):
            mapping[name] = _unique(f"{name}_", used | wanted | set(mapping.values()))
        _rename(graph, mapping)
        for i, source, new in identity:
            graph.node.append(onnx.helper.make_node("Identity", [mapping.get(source, source)], [new],
                                                    name=_unique(f"kerastk_output_{i}_", used)))
            graph.output[i].name = new
    removed = _prune_domains(model)
    # tf2onnx writes producer_version "1.17.0 None" (no git hash)
    exporter = " ".join(w for w in f"{model.producer_name} {model.producer_version}".split() if w != "None")
    if model.producer_name and model.producer_name != PRODUCER and not _prop(model, "exporter"):
        model.metadata_props.add(key=PREFIX + "exporter", value=exporter)
    model.producer_name, model.producer_version = PRODUCER, kerastk_version()
    _atomic_write(path, model.SerializeToString())
    return {"renamed": mapping, "identity_outputs": [new for _, _, new in identity], "removed_domains": removed}


def _fits(names, values) -> bool:
    names = list(names)
    return len(names) == len(values) and len(set(names)) == len(names) and all(isinstance(n, str) and n
                                                                               for n in names)


def _unique(stem, taken) -> str:
    i = 1
    while f"{stem}{i}" in taken:
        i += 1
    return f"{stem}{i}"


def _subgraphs(node):
    import onnx

    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _tensor_names(graph) -> set:
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    names |= {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for sub in _subgraphs(node):
            names |= _tensor_names(sub)
    names.discard("")
    return names


def _rename(graph, mapping) -> None:
    for v in (*graph.input, *graph.output, *graph.value_info):
        v.name = mapping.get(v.name, v.name)
    for t in graph.initializer:
        t.name = mapping.get(t.name, t.name)
    for t in graph.sparse_initializer:
        t.values.name = mapping.get(t.values.name, t.values.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = mapping.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = mapping.get(name, name)
        for sub in _subgraphs(node):
            _rename(sub, mapping)


def _node_domains(graph) -> set:
    domains = set()
    for node in graph.node:
        domains.add(node.domain)
        for sub in _subgraphs(node):
            domains |= _node_domains(sub)
    return domains


def _prune_domains(model) -> list[str]:
    """Drop the opset imports no node uses (the default domain always stays); returns the dropped domains."""
    used = _node_domains(model.graph)
    for function in model.functions:
        used.add(function.domain)
        for node in function.node:
            used.add(node.domain)
    used = {"" if d == "ai.onnx" else d for d in used} | {""}
    keep = [o for o in model.opset_import if ("" if o.domain == "ai.onnx" else o.domain) in used]
    removed = [o.domain for o in model.opset_import if o not in keep]
    if removed:
        kept = [(o.domain, o.version) for o in keep]
        del model.opset_import[:]
        for domain, version in kept:
            model.opset_import.add(domain=domain, version=version)
    return removed


def _prop(model, key):
    return next((p.value for p in model.metadata_props if p.key == PREFIX + key), None)


# === Essentials: from a card, to strings, and back ===

def input_layouts(inputs, channels_first: bool = False) -> dict:
    """The axis layout of each input from its card spec ({name, shape, dtype}): N batch, C channels (features),
    T time steps, H / W / D spatial axes."""
    layouts = {}
    for spec in inputs or ():
        rank, dtype = len(spec.get("shape") or ()), str(spec.get("dtype"))
        if rank == 2:
            layout = "NT" if "int" in dtype else "NC"
        elif rank == 3:
            layout = "NCT" if channels_first else "NTC"
        elif rank in (4, 5):
            spatial = "HW" if rank == 4 else "DHW"
            layout = f"NC{spatial}" if channels_first else f"N{spatial}C"
        else:
            layout = "N" + "?" * max(0, rank - 1)
        layouts[spec.get("name")] = layout
    return layouts


def verdict(parity) -> str | None:
    """"passed" | "failed" | "undecided" from a card's parity record (a ValidationReport dict)."""
    if not isinstance(parity, dict):
        return None
    if parity.get("verdict"):
        return str(parity["verdict"])
    if parity.get("passed") is not None:  # None: not decided here (e.g. a quantised file's card)
        return "passed" if parity["passed"] else "failed"
    return None


def essentials(card: dict) -> dict:
    """What a card records that the file carries: the FIELDS a card has a value for (None values left out)."""
    out = {
        "format": FORMAT,
        "version": (card.get("versions") or {}).get("kerastk"),
        "name": card.get("name"),
        "task": card.get("task"),
        "class_names": card.get("class_names"),
        "preprocessing": card.get("preprocessing"),
        "input_layout": card.get("input_layout"),
        "decision_threshold": card.get("decision_threshold"),
        "backend": card.get("backend"),
        "route": card.get("route"),
        "opset": card.get("opset"),
        "parity": verdict(card.get("parity")),
    }
    if isinstance(card.get("parity"), dict):
        figures = {k: card["parity"][k] for k in _PARITY_FIGURES if card["parity"].get(k) is not None}
        out["parity_figures"] = figures or None
    return {k: v for k, v in out.items() if v is not None}


def encode(values: dict) -> dict:
    """Essentials -> metadata_props strings (keys prefixed)."""
    props = {}
    for key, value in values.items():
        if key not in FIELDS:
            raise ValueError(f"Unknown kerastk metadata field {key!r}; expected one of {list(FIELDS)}.")
        if value is None:
            continue
        kind = FIELDS[key]
        if kind == "json":
            text = json.dumps(value, separators=(",", ":"), default=_plain)
        elif kind == "float":
            text = repr(float(value))
        elif kind == "int":
            text = str(int(value))
        else:
            text = str(value)
        props[PREFIX + key] = text
    return props


def decode(props) -> dict:
    """metadata_props (a dict of strings, e.g. onnxruntime's custom_metadata_map) -> essentials. Other keys are
    left out; a value that does not decode is kept as its string."""
    out = {}
    for key, text in dict(props or {}).items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX):]
        kind = FIELDS.get(name, "str")
        try:
            if kind == "json":
                out[name] = json.loads(text)
            elif kind == "int":
                out[name] = int(text)
            elif kind == "float":
                out[name] = float(text)
            else:
                out[name] = text
        except (ValueError, TypeError):
            out[name] = text
    return out


def as_card(meta: dict) -> dict:
    """Essentials in the card's shape (what OnnxModel and the server use when no card is beside the file)."""
    card = {k: v for k, v in meta.items() if k not in ("format", "version", "parity", "parity_figures", "exporter")}
    if "version" in meta:
        card["versions"] = {"kerastk": meta["version"]}
    if "parity" in meta:
        card["parity"] = {"verdict": meta["parity"], "passed": meta["parity"] == "passed",
                          **(meta.get("parity_figures") or {})}
    return card


def differences(card: dict, meta: dict) -> list[str]:
    """The COMPARED fields a card and a file's metadata give different values (only fields the card records:
    an older card without input_layout is not a disagreement)."""
    if not meta or not card:
        return []
    # compare what each side would embed, so JSON round trips (tuples, numpy scalars) are not differences
    mine = decode(encode(essentials(card)))
    recorded = {k for k in COMPARED if k in card}
    if "parity" not in mine:  # a card whose parity record gives no verdict does not contradict the file's
        recorded.discard("parity")
    if (card.get("versions") or {}).get("kerastk"):
        recorded.add("version")
    return [k for k in COMPARED if k in recorded and not _same(mine.get(k), meta.get(k))]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# === The file: metadata_props on the protobuf wire ===

def embed(path, values: dict) -> dict:
    """Write the essentials `values` (FIELDS names; None values skipped) into `path`'s metadata_props, replacing
    every earlier ``kerastk.*`` entry except ``kerastk.exporter`` when `values` does not give it; other
    entries and the graph's bytes are kept as they are. Returns the props written."""
    path = Path(path)
    data = path.read_bytes()
    props = encode(values)
    kept = []
    for field, wire, start, end, payload in _fields(data):
        if field == _METADATA_PROPS and wire == 2:
            key, value = _entry(data[payload:end])
            if key.startswith(PREFIX):
                if key == PREFIX + "exporter" and key not in props:
                    props[key] = value
                continue
        kept.append(data[start:end])
    extra = b"".join(_len_field(_METADATA_PROPS, _len_field(1, k.encode()) + _len_field(2, v.encode()))
                     for k, v in props.items())
    _atomic_write(path, b"".join(kept) + extra)
    return props


def read_props(path) -> dict:
    """All metadata_props of an ONNX file, read from its top-level fields (the graph is skipped, not read)."""
    props = {}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size:
            field, wire = _split_tag(_read_varint(f))
            if wire == 0:
                _read_varint(f)
            elif wire == 1:
                f.seek(8, os.SEEK_CUR)
            elif wire == 5:
                f.seek(4, os.SEEK_CUR)
            elif wire == 2:
                n = _read_varint(f)
                if field == _METADATA_PROPS:
                    key, value = _entry(f.read(n))
                    props[key] = value
                else:
                    f.seek(n, os.SEEK_CUR)
            else:
                raise ValueError(f"{str(path)!r} is not an ONNX file (protobuf wire type {wire}).")
            if f.tell() > size:
                raise ValueError(f"{str(path)!r} is truncated.")
    return props


def read(path) -> dict:
    """The kerastk essentials embedded in an ONNX file ({} when it has none), without loading its weights."""
    return decode(read_props(path))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _split_tag(tag: int):
    return tag >> 3, tag & 7


def _read_varint(f) -> int:
    value, shift = 0, 0
    while True:
        b = f.read(1)
        if not b:
            raise ValueError("truncated protobuf varint")
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7


def _buf_varint(data, pos):
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated protobuf varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(data):
    """Top-level protobuf fields of `data`: (field, wire type, start, end, payload start)."""
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _buf_varint(data, pos)
        field, wire = _split_tag(tag)
        if wire == 0:
            _, pos = _buf_varint(data, pos)
            payload = pos
        elif wire == 1:
            payload, pos = pos, pos + 8
        elif wire == 5:
            payload, pos = pos, pos + 4
        elif wire == 2:
            n, payload = _buf_varint(data, pos)
            pos = payload + n
        else:
            raise ValueError(f"not an ONNX file (protobuf wire type {wire})")
        if pos > len(data):
            raise ValueError("truncated ONNX file")
        yield field, wire, start, pos, payload


def _entry(data: bytes):
    """A StringStringEntryProto's (key, value)."""
    key = value = ""
    for field, wire, _, end, payload in _fields(data):
        if wire == 2 and field in (1, 2):
            text = data[payload:end].decode("utf-8", "replace")
            key, value = (text, value) if field == 1 else (key, text)
    return key, value


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (a temporary file beside it, then a rename; the file's mode is kept)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
