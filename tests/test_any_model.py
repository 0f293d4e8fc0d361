"""Any Keras model exports: dict inputs and outputs (a text encoder), a graph that captures constants (a ViT's
position ids), a subclassed model (defined here, at module level, so an export subprocess can import it), a
Sequential model; a model that does not round-trip through `.keras`; an export failure that names its layer.

Each model is exported through the active backend's own route (in process, quick) and validated; one test takes
the subclassed model through another backend's route (a subprocess that imports this module)."""
import keras
import numpy as np
import onnx
import pytest
from keras import layers, ops

from kerastk.deploy import ExportError, export_onnx
from kerastk.deploy.feeds import as_arrays, input_names, keras_outputs, output_names, sample_inputs


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding looked up with position ids: a constant the graph captures (ViT)."""

    def __init__(self, length, dim, **kwargs):
        super().__init__(**kwargs)
        self.length, self.dim = length, dim
        self.position_ids = ops.expand_dims(ops.arange(length), 0)
        self.embedding = layers.Embedding(length, dim)

    def build(self, input_shape):
        self.embedding.build((1, self.length))

    def call(self, x):
        return x + self.embedding(self.position_ids)

    def get_config(self):
        return {**super().get_config(), "length": self.length, "dim": self.dim}


class Net(keras.Model):
    """A subclassed model with its own call, as keras.io examples write them."""

    def __init__(self, units=8, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.units, self.classes = units, classes
        self.hidden = layers.Dense(units, activation="relu")
        self.head = layers.Dense(classes)

    def call(self, x):
        return self.head(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "classes": self.classes}


class ForgetfulDense(layers.Dense):
    """A layer with a bug of its own: it does not load its variables back, so the model does not round-trip."""

    def load_own_variables(self, store):
        pass


class Unexportable(keras.layers.Layer):
    """Fails whenever it is traced for export (stands for an op no exporter can lower)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.exporting = False

    def call(self, x):
        if self.exporting:
            raise NotImplementedError("FancyOp has no ONNX lowering")
        return x * 2.0


def vit():
    keras.utils.set_random_seed(0)
    pixels = keras.Input((8, 8, 3), name="pixels")
    x = layers.Conv2D(16, 4, strides=4)(pixels)
    x = layers.Reshape((4, 16))(x)
    x = PositionEmbedding(4, 16)(x)
    x = layers.MultiHeadAttention(2, 8)(x, x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(pixels, layers.Dense(5, name="logits")(x))


def text_encoder():
    keras.utils.set_random_seed(0)
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    x = layers.Embedding(50, 16)(token_ids)
    mask = ops.cast(padding_mask, "bool")[:, None, :]
    x = layers.LayerNormalization()(x + layers.MultiHeadAttention(2, 8)(x, x, attention_mask=mask))
    pooled = layers.Dense(16, activation="tanh")(x[:, 0])
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask},
                       {"sequence_output": x, "pooled_output": pooled})


def subclassed():
    keras.utils.set_random_seed(0)
    model = Net()
    model(np.zeros((1, 6), "float32"))
    return model


def sequential():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu"), layers.Dense(3, name="scores")])


# model -> (ONNX input names, ONNX output names): dict inputs and outputs are named after their keys, sorted as
# keras.tree.flatten orders a dict
CASES = {
    "text_encoder": (text_encoder, ["padding_mask", "token_ids"], ["pooled_output", "sequence_output"]),
    "vit": (vit, ["pixels"], ["logits"]),
    "subclassed": (subclassed, ["x"], ["output_0"]),
    "sequential": (sequential, None, ["scores"]),
}


def _graph_names(path):
    graph = onnx.load(str(path)).graph
    initialized = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initialized], [o.name for o in graph.output]


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_exports_and_validates_on_the_active_route(name, tmp_path, backend):
    build, inputs, outputs = CASES[name]
    model = build()
    if inputs is None:  # a Sequential model's input is named by Keras (keras_tensor_N)
        inputs = [model.inputs[0].name]
    assert input_names(model) == inputs and output_names(model) == outputs
    # torch's exporter cannot trace Keras's LayerNormalization over a variable sequence axis (a shape it needs
    # constant): the text encoder falls back to the JAX route there, in a subprocess
    fallback = name == "text_encoder" and backend == "torch"
    routes = [backend, "jax"] if fallback else [backend]
    result = export_onnx(model, tmp_path / f"{name}.onnx", route=routes, optimize=False)
    report = result.validation
    assert result.route == routes[-1] and report.passed and report.max_abs_diff <= 1e-5, report
    if fallback:
        error = result.attempts[0]["error"]
        assert error.startswith("ExporterFailure: torch exporter: SymbolicValueError: Failed to export a node"), error
        assert "because it is not constant" in error or "ops/nn.py" in error, error
    assert _graph_names(tmp_path / f"{name}.onnx") == (inputs, outputs)
    print(f"\n{backend}: {name} route {result.route}, {report}")
    if name == "text_encoder":
        assert report.sequence_lengths == (8, 6)  # the variable time axis was checked at a second length
    if name == "vit" and backend == "tensorflow":  # tf2onnx made the position ids an input; folded back
        assert any("captured constant" in f for f in result.attempts[0]["graph_fixes"]), result.attempts


def test_dict_feeds_follow_the_graph_order(backend):
    model = text_encoder()
    arrays = sample_inputs(model, 3)
    assert [a.dtype for a in arrays] == [np.int32, np.int32] and arrays[0].shape == (3, 8)
    mask = arrays[0]
    assert set(np.unique(mask)) <= {0, 1} and mask[:, 0].all()  # padding masks: ones, then padding
    assert arrays[1].max() < 50  # token ids the Embedding accepts
    feed = {"token_ids": arrays[1], "padding_mask": mask}  # any key order
    assert [a is b or np.array_equal(a, b) for a, b in zip(as_arrays(feed, model), arrays)] == [True, True]
    expected = model.predict_on_batch(feed)
    got = keras_outputs(model, arrays)
    np.testing.assert_allclose(got[0], keras.ops.convert_to_numpy(expected["pooled_output"]), atol=1e-6)
    np.testing.assert_allclose(got[1], keras.ops.convert_to_numpy(expected["sequence_output"]), atol=1e-6)


def test_subclassed_model_exports_through_another_backend(tmp_path, backend):
    """The subprocess imports this module (the model's class) before loading the saved copy. From TensorFlow the
    worker is JAX, from JAX it is torch; from torch (JAX again, already covered) it is skipped to save time."""
    if backend == "torch":
        pytest.skip("the JAX worker is covered from TensorFlow (and by the text encoder's fallback here)")
    other = "jax" if backend != "jax" else "torch"
    result = export_onnx(subclassed(), tmp_path / "net.onnx", route=other, optimize=False)
    assert result.route == other and result.validation.passed and result.validation.max_abs_diff <= 1e-5
    assert _graph_names(tmp_path / "net.onnx") == (["x"], ["output_0"])


def test_subclassed_model_with_an_input_signature(tmp_path, backend):
    keras.utils.set_random_seed(0)
    model = Net(classes=2)
    model.build((None, 5))
    result = export_onnx(model, tmp_path / "net.onnx", route=backend, optimize=False,
                         input_signature=keras.InputSpec(shape=(None, 5), dtype="float32", name="features"))
    assert result.validation.passed and _graph_names(tmp_path / "net.onnx") == (["features"], ["output_0"])


def test_a_model_that_does_not_round_trip_takes_the_in_process_route_only(tmp_path, backend):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, ForgetfulDense(3, name="forgetful")(inputs))
    other = "jax" if backend != "jax" else "torch"
    with pytest.raises(ExportError) as info:
        export_onnx(model, tmp_path / "m.onnx", route=[other], optimize=False)
    error = info.value.attempts[0]["error"]
    assert "does not round-trip" in error and "'forgetful/kernel' differs" in error, error
    assert f"only the in-process route ({backend})" in error
    result = export_onnx(model, tmp_path / "m.onnx", route=[other, backend], optimize=False)
    assert result.route == backend and result.validation.passed
    assert "does not round-trip" in result.attempts[0]["error"]


def test_an_export_failure_names_the_layer_and_the_reason(tmp_path, backend):
    inputs = keras.Input((4,), name="x")
    layer = Unexportable(name="fancy")
    model = keras.Model(inputs, layer(inputs))
    layer.exporting = True
    with pytest.raises(ExportError) as info:
        export_onnx(model, tmp_path / "m.onnx", route=backend, optimize=False)
    error = info.value.attempts[0]["error"]
    assert "Unexportable" in error and "NotImplementedError: FancyOp has no ONNX lowering" in error, error
