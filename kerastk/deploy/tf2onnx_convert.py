"""The TensorFlow route's converter: Keras's tf2onnx export of a model's concrete function, without tf2onnx's
copy of the whole graph before every optimiser pass.

tf2onnx's ``optimize_graph`` (``catch_errors=True``, its default below 2 GB) deep-copies the ONNX graph - every
weight included - before each of its twelve optimisers, on every iteration until nothing changes, so that a
failing optimiser can be skipped; the copies are reference cycles, freed only at the next collection. For a
ResNet-152 (60 M parameters) that is about 36 copies of 240 MB and a 12.5 GB peak (the TensorFlow test run was
killed by the kernel there), and each pass left a further copy of every weight in protobuf's arenas
(:func:`_fresh_node_protos`). Here the optimisers run on the graph itself (tf2onnx's own path for large models);
only when one of them fails is the conversion redone with tf2onnx's copying path, so the file is the same either
way.
"""
from __future__ import annotations

import contextlib
import gc


class _OptimizerFailed(Exception):
    """An optimiser failed on the graph itself: the conversion is redone with tf2onnx's copying path."""


@contextlib.contextmanager
def _fresh_node_protos(tf2onnx):
    """tf2onnx clears a node's attributes and appends them again after every optimiser; under protobuf's upb
    runtime a cleared field's memory stays in the message's arena, so every pass added a copy of each weight. Here
    each update starts from a new NodeProto (without the attributes, which tf2onnx re-adds): the old arena is freed."""
    node_class = tf2onnx.graph.Node
    update_proto = node_class.update_proto

    def update_on_a_fresh_proto(node, external_tensor_storage=None):
        old = node._op
        del old.attribute[:]
        node._op = type(old)()
        node._op.CopyFrom(old)
        update_proto(node, external_tensor_storage)

    node_class.update_proto = update_on_a_fresh_proto
    try:
        yield
    finally:
        node_class.update_proto = update_proto


@contextlib.contextmanager
def _optimizers_in_place(tf2onnx):
    convert = tf2onnx.convert
    original = convert.optimizer.optimize_graph

    def in_place(graph, catch_errors=True, optimizers=None):
        try:
            return original(graph, False, optimizers=optimizers)
        except Exception as exc:
            raise _OptimizerFailed(str(exc)) from exc

    convert.optimizer.optimize_graph = in_place
    try:
        yield
    finally:
        convert.optimizer.optimize_graph = original


def convert_tensorflow(model, path, sig, opset) -> dict:
    """Keras's TensorFlow ONNX export (tf2onnx from the model's concrete function) into `path`; returns the values
    of the non-variable tensors the function captures, by the name of their placeholder (what tf2onnx names the
    graph input it makes of each)."""
    import tensorflow as tf
    from keras.src import tree
    from keras.src.export.export_utils import make_tf_tensor_spec
    from keras.src.export.onnx import get_concrete_fn
    from keras.src.export.tf2onnx_lib import patch_tf2onnx
    from keras.src.utils.module_utils import tf2onnx

    tf_sig = tree.map_structure(make_tf_tensor_spec, sig)
    fn = get_concrete_fn(model, tf_sig)
    patch_tf2onnx()
    with _fresh_node_protos(tf2onnx):  # on both paths: the copying one updates each copy's nodes as well
        try:
            with _optimizers_in_place(tf2onnx):
                tf2onnx.convert.from_function(fn, tf_sig, opset=opset, output_path=str(path))
        except _OptimizerFailed:
            gc.collect()
            tf2onnx.convert.from_function(fn, tf_sig, opset=opset, output_path=str(path))
    constants = {}
    try:
        concrete = fn.get_concrete_function(*tf_sig)
        for external, internal in concrete.graph.captures:
            if internal.dtype != tf.dtypes.resource and hasattr(external, "numpy"):
                constants[internal.name] = external.numpy()
    except Exception:  # no captures to read: apply_fixes reports any unexpected input
        pass
    return constants
