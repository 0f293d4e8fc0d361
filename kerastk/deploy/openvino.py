"""OpenVINO as a second runtime for the parity check: an object used exactly like an onnxruntime InferenceSession.

    from kerastk.deploy.openvino import make_session
    session = make_session("model.onnx")                         # CPU, fp32 inference precision
    names = [i.name for i in session.get_inputs()]
    outputs = session.run(None, {names[0]: x})                   # list of numpy arrays, graph output order

Needs the optional `openvino` extra (``pip install "kerastk[openvino]"``); without it :func:`make_session` raises
:class:`RuntimeNotInstalled` (an ImportError) naming the extra. Importing this module imports neither keras nor
openvino.

Precision: OpenVINO's CPU plugin defaults to a bf16 inference precision hint on CPUs with bf16 support (LeNet-5
then differed from onnxruntime by 2.8e-3), so sessions are compiled with ``{"INFERENCE_PRECISION_HINT": "f32"}``.
Shapes: the graph is compiled with its dynamic axes (the batch axis, a variable time axis), so one session runs
any batch size; should the plugin refuse the dynamic graph, the model is reshaped to each call's input shapes and
compiled once per distinct set of shapes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

RUNTIMES = ("onnxruntime", "openvino")
INSTALL_HINT = 'pip install "kerastk[openvino]"'
#: CPU configuration: fp32 arithmetic (the plugin's default hint may be bf16), as onnxruntime computes.
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


class RuntimeNotInstalled(ImportError):
    """The runtime asked for is not installed; the message says which extra to install."""


def check_runtime(runtime: str) -> str:
    """`runtime` if it is one of RUNTIMES, else a ValueError naming them."""
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; expected one of {list(RUNTIMES)}.")
    return runtime


def import_openvino():
    """The `openvino` package, or RuntimeNotInstalled naming the extra to install."""
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeNotInstalled(f"The OpenVINO runtime is not installed ({exc}); install it with "
                                  f"{INSTALL_HINT}.") from None
    return openvino


def require_runtime(runtime: str) -> None:
    """Fail early, before any work, when `runtime` is unknown (ValueError) or not installed (RuntimeNotInstalled)."""
    check_runtime(runtime)
    if runtime == "openvino":
        import_openvino()
    elif runtime == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise RuntimeNotInstalled(f"onnxruntime is not installed ({exc}); install it with "
                                      'pip install "kerastk"') from None


class NodeArg:
    """What onnxruntime's NodeArg gives: name, shape (ints, symbolic names or None) and type ("tensor(float)")."""

    def __init__(self, name: str, shape: list, type: str):
        self.name, self.shape, self.type = name, shape, type

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


def _graph_args(path) -> tuple[list[NodeArg], list[NodeArg]]:
    """The ONNX graph's (non-initializer) inputs and its outputs, in graph order, read from the file itself."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}

    def arg(value_info) -> NodeArg:
        t = value_info.type.tensor_type
        kind = onnx.TensorProto.DataType.Name(t.elem_type).lower() if t.elem_type else "undefined"
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim] \
            if t.HasField("shape") else None
        return NodeArg(value_info.name, shape, f"tensor({kind})")

    inputs = [arg(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [arg(v) for v in model.graph.output]


class OpenVINOError(RuntimeError):
    """OpenVINO could not read, compile or run a file; the message's first line says what and why."""


_NOISE = ("Exception from src/", "Check '", "FrontEnd API failed", "Model wasn't fully converted",
          "Failed operations detailed log", "Summary:", "-- ")  # source locations, headings, the op list


def _openvino_error(stage: str, path: str, exc: Exception) -> OpenVINOError:
    """OpenVINO's multi-line error (source locations first, the failing operation further down) as one line that
    starts with what failed: e.g. "OpenVINO cannot read 'm.onnx': Conversion is failed for: Loop-15; ..."."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    failed = [line.lstrip("- ") for line in lines if line.startswith("-- Conversion is failed for")]
    reasons = [line for line in lines if not line.startswith(_NOISE)]
    text = "; ".join(failed + reasons[:3]) or type(exc).__name__
    return OpenVINOError(f"OpenVINO cannot {stage} {path!r}: {text[:800]}")


def _port_index(ports, name: str, position: int) -> int:
    """Index of the OpenVINO port carrying the ONNX tensor `name` (its position in the graph when no name fits)."""
    for i, port in enumerate(ports):
        if name in port.get_names():
            return i
    return position


class OpenVINOSession:
    """An OpenVINO compiled model behind onnxruntime's InferenceSession interface (get_inputs, get_outputs, run)."""

    def __init__(self, path, device: str = "CPU", config: dict | None = None):
        ov = import_openvino()
        self.path = str(path)
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"No ONNX file at {self.path!r}.")
        self.device = device
        self.config = dict(CPU_CONFIG if device == "CPU" else {}, **(config or {}))
        self._inputs, self._outputs = _graph_args(self.path)
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(self.path)
        except RuntimeError as exc:  # an operation its ONNX frontend cannot convert
            raise _openvino_error("read", self.path, exc) from exc
        self._in_index = [_port_index(self._model.inputs, a.name, i) for i, a in enumerate(self._inputs)]
        self._out_index = [_port_index(self._model.outputs, a.name, i) for i, a in enumerate(self._outputs)]
        if len(self._model.outputs) != len(self._outputs) or len(self._model.inputs) != len(self._inputs):
            raise ValueError(f"OpenVINO reads {len(self._model.inputs)} inputs / {len(self._model.outputs)} "
                             f"outputs from {self.path!r}; the ONNX graph has {len(self._inputs)} / "
                             f"{len(self._outputs)}.")
        self._compiled = {}  # input shapes (or None: the dynamic graph) -> (compiled model, infer request)
        self.dynamic = True
        try:
            self._compiled[None] = self._compile(self._model)
        except RuntimeError as exc:  # the plugin refused the dynamic graph: reshape and compile per call's shapes
            if not self._model.is_dynamic():
                raise _openvino_error("compile", self.path, exc) from exc
            self.dynamic = False

    def _compile(self, model):
        compiled = self._core.compile_model(model, self.device, self.config)
        return compiled, compiled.create_infer_request()

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def _request(self, arrays):
        if self.dynamic:
            return self._compiled[None][1]
        key = tuple(a.shape for a in arrays)
        if key not in self._compiled:
            model = self._model.clone()
            try:
                model.reshape({model.inputs[j]: list(a.shape) for j, a in zip(self._in_index, arrays)})
                self._compiled[key] = self._compile(model)
            except RuntimeError as exc:
                raise _openvino_error(f"compile (input shapes {list(key)})", self.path, exc) from exc
        return self._compiled[key][1]

    def run(self, output_names, input_feed: dict, run_options=None) -> list[np.ndarray]:
        """Outputs (all when `output_names` is None) as numpy arrays, in the order asked (graph order)."""
        names = [a.name for a in self._inputs]
        missing = [n for n in names if n not in input_feed]
        unknown = [n for n in input_feed if n not in names]
        if missing or unknown:
            raise ValueError(f"Feed names {list(input_feed)} do not match the model's inputs {names}"
                             + (f" (missing {missing})" if missing else "")
                             + (f" (unknown {unknown})" if unknown else "") + ".")
        arrays = [np.ascontiguousarray(input_feed[n]) for n in names]
        request = self._request(arrays)
        try:
            result = request.infer({j: a for j, a in zip(self._in_index, arrays)}, share_outputs=False)
        except RuntimeError as exc:
            raise _openvino_error(f"run (input shapes {[a.shape for a in arrays]})", self.path, exc) from exc
        values = list(result.to_tuple())
        outputs = [np.asarray(values[j]) for j in self._out_index]
        if output_names is None:
            return outputs
        order = [a.name for a in self._outputs]
        bad = [n for n in output_names if n not in order]
        if bad:
            raise ValueError(f"Unknown output name(s) {bad}; the model's outputs are {order}.")
        return [outputs[order.index(n)] for n in output_names]

    def __repr__(self) -> str:
        return (f"OpenVINOSession({self.path!r}, device={self.device!r}, "
                f"{'dynamic shapes' if self.dynamic else 'reshaped per call'})")


def make_session(path, device: str = "CPU", config: dict | None = None) -> OpenVINOSession:
    """An OpenVINO session for the ONNX file `path` (CPU, fp32 precision hint unless `config` says otherwise).

    Raises RuntimeNotInstalled (an ImportError naming the extra) when openvino is not installed.
    """
    return OpenVINOSession(path, device=device, config=config)
