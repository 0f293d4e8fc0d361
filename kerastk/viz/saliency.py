"""What a classifier looks at: vanilla-gradient saliency (Simonyan et al. 2014) and Grad-CAM (Selvaraju et al.
2017), for any single-input Keras classifier under any of the three backends.

    cams = kerastk.viz.grad_cam(model, images)            # (n, H, W) in [0, 1], the predicted class by default
    sal = kerastk.viz.saliency_map(model, images)         # (n, H, W) in [0, 1]
    rgb = kerastk.viz.overlay_heatmap(images[0], cams[0])  # (H, W, 3) float RGB for plt.imshow

The class score is the pre-softmax logit, as both papers use: when the model ends in a softmax (a Dense layer with
``activation="softmax"``, an ``Activation("softmax")`` or a ``Softmax`` layer, as every kerastk classifier does),
the score is computed from that layer's input - ``input @ kernel + bias`` with the Dense layer's own weights, or
the input itself for a separate softmax layer - so the model is never modified or rebuilt. A model that ends in
anything else is scored on its output as it is. Softmax probabilities would also work, but their gradients
vanish once the network is confident and mix in every other class.

Gradients come from :mod:`kerastk.viz.gradients` (tf.GradientTape, jax.grad or torch autograd); everything
else here is Keras functional models and numpy. Images are channels-last batches shaped like the model's input.
"""
from __future__ import annotations

import numpy as np

from kerastk.viz.gradients import value_and_gradients

__all__ = ["input_gradients", "saliency_map", "last_conv_layer", "grad_cam", "overlay_heatmap"]

BATCH_SIZE = 32  # images per gradient call: bounds memory, the result does not depend on it


# --- checks ------------------------------------------------------------------------------------------------


def _check_model(model):
    """A built single-input, single-output model whose output is (batch, classes)."""
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(f"`model` {model.name!r} has no defined inputs/outputs: build it with keras.Input "
                         "(a functional model or a Sequential model that starts with keras.Input).")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"kerastk.viz explains single-input, single-output classifiers; model {model.name!r} "
                         f"has {len(inputs)} inputs and {len(outputs)} outputs.")
    if len(outputs[0].shape) != 2:
        raise ValueError(f"kerastk.viz needs a classifier whose output is (batch, classes); model {model.name!r} "
                         f"outputs shape {tuple(outputs[0].shape)} (a headless model? build it with "
                         "include_top=True).")
    return model


def _check_images(model, images, name="images"):
    """`images` as a float32 batch shaped like the model's (image) input."""
    try:
        x = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a numeric array; received {type(images).__name__}.") from None
    expected = tuple(model.inputs[0].shape[1:])
    if len(expected) != 3:
        raise ValueError(f"kerastk.viz explains image models (input (batch, height, width, channels)); model "
                         f"{model.name!r} takes inputs of shape {(None, *expected)}.")
    shape_text = "(n, " + ", ".join("?" if d is None else str(d) for d in expected) + ")"
    if x.ndim != 4:
        hint = f" For one image pass `{name}[None]`." if x.ndim == 3 else ""
        raise ValueError(f"`{name}` must be a batch of images of shape {shape_text} for model {model.name!r}; "
                         f"received an array of shape {x.shape} ({x.ndim} axes, expected 4).{hint}")
    if len(x) == 0 or any(e is not None and e != d for e, d in zip(expected, x.shape[1:])):
        raise ValueError(f"`{name}` must have shape {shape_text} for model {model.name!r}; received {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return x


def _resolve_classes(class_index, n, num_classes):
    """None (use each image's predicted class) or an int array of n class indices, checked against the range."""
    if class_index is None:
        return None
    c = np.asarray(class_index)
    if c.dtype == bool or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"`class_index` must be None, an int or one int per image; received {class_index!r}.")
    if c.ndim == 0:
        c = np.full(n, int(c))
    elif c.shape != (n,):
        raise ValueError(f"`class_index` must be an int or one int per image ({n}); received shape {c.shape}.")
    bad = c[(c < 0) | (c >= num_classes)]
    if bad.size:
        raise ValueError(f"`class_index` must be in [0, {num_classes - 1}] (the model has {num_classes} "
                         f"classes); received {int(bad[0])}.")
    return c.astype(np.int64)


def find_layer(model, layer_name):
    """The layer called `layer_name`, with a clear error listing close names."""
    import difflib

    names = [layer.name for layer in model.layers]
    if not isinstance(layer_name, str) or layer_name not in names:
        close = difflib.get_close_matches(str(layer_name), names, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Model {model.name!r} has no layer named {layer_name!r}.{hint} "
                         "kerastk.viz.last_conv_layer(model) names the usual Grad-CAM layer.")
    return model.get_layer(layer_name)


def layer_output(layer):
    """The layer's single symbolic output (a layer called more than once has no single output)."""
    try:
        return layer.output
    except (AttributeError, ValueError):
        return None


def _feature_tensor(model, layer_name):
    """The 4-D output tensor of `layer_name` (the feature map Grad-CAM weighs)."""
    import keras

    layer = find_layer(model, layer_name)
    if isinstance(layer, keras.layers.InputLayer):
        raise ValueError(f"{layer_name!r} is the model's input layer; Grad-CAM needs a feature map inside the "
                         "network (use kerastk.viz.saliency_map for gradients with respect to the input).")
    out = layer_output(layer)
    if out is None or isinstance(out, (list, tuple, dict)):
        raise ValueError(f"Layer {layer_name!r} has no single output tensor (it is shared or returns several).")
    if len(out.shape) != 4:
        raise ValueError(f"Grad-CAM needs a layer with a 4-D (batch, height, width, channels) output; layer "
                         f"{layer_name!r} outputs shape {tuple(out.shape)}.")
    return out


def _score_parts(model):
    """(tensor, to_scores): the symbolic tensor the class scores are computed from, and a function mapping its
    backend value to the (batch, classes) scores - the logits of a final softmax, else the output itself."""
    import keras

    output = model.outputs[0]
    layer, node_index, _ = output._keras_history
    node = layer._inbound_nodes[node_index]
    inputs = node.input_tensors
    if len(inputs) == 1:
        name = getattr(getattr(layer, "activation", None), "__name__", "")
        if isinstance(layer, keras.layers.Dense) and name == "softmax" and layer.kernel is not None:

            def dense_logits(h):
                logits = keras.ops.matmul(h, layer.kernel)
                return logits if layer.bias is None else logits + layer.bias

            return inputs[0], dense_logits
        if isinstance(layer, keras.layers.Softmax) or (isinstance(layer, keras.layers.Activation) and name == "softmax"):
            return inputs[0], lambda h: h
    return output, lambda h: h


def _to_numpy(t):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float32)


def _onehot(classes, num_classes):
    import keras

    return keras.ops.convert_to_tensor(np.eye(num_classes, dtype=np.float32)[classes])


def _resize_bilinear(maps, size):
    """(n, h, w) -> (n, H, W) bilinear with half-pixel centres (like keras.ops.image.resize), numpy only."""
    maps = np.asarray(maps, dtype=np.float32)

    def axis_weights(src, dst):
        pos = np.clip((np.arange(dst, dtype=np.float64) + 0.5) * src / dst - 0.5, 0, src - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    (ylo, yhi, wy), (xlo, xhi, wx) = axis_weights(maps.shape[1], size[0]), axis_weights(maps.shape[2], size[1])
    rows = maps[:, ylo] * (1 - wy)[None, :, None] + maps[:, yhi] * wy[None, :, None]
    return rows[:, :, xlo] * (1 - wx)[None, None, :] + rows[:, :, xhi] * wx[None, None, :]


def _normalise(maps):
    """Each map divided by its maximum, so values lie in [0, 1] (an all-zero map stays zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0).reshape(-1, *([1] * (maps.ndim - 1)))
    return (np.maximum(maps, 0) / peak).astype(np.float32)


# --- public ------------------------------------------------------------------------------------------------


def input_gradients(model, images, class_index=None, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """d score / d input for each image: (n, H, W, C) float32.

    Args:
        model: a single-input classifier with a (batch, classes) output.
        images: (n, H, W, C) batch, preprocessed as the model expects.
        class_index: None for each image's predicted class, an int for one class, or one int per image.
    Returns:
        The gradient of the class score (the pre-softmax logit, see the module docstring) with respect to the
        input pixels.
    """
    import keras

    _check_model(model)
    x = _check_images(model, images)
    num_classes = int(model.outputs[0].shape[-1])
    classes = _resolve_classes(class_index, len(x), num_classes)
    tensor, to_scores = _score_parts(model)
    score_model = keras.Model(model.inputs[0], tensor, name=f"{model.name}_scores")
    grads = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        if classes is None:
            c = np.argmax(_to_numpy(to_scores(score_model(xb, training=False))), axis=-1)
        else:
            c = classes[start:start + batch_size]
        onehot = _onehot(c, num_classes)
        _, g = value_and_gradients(lambda t, onehot=onehot: to_scores(score_model(t, training=False)) * onehot, xb)
        grads.append(g)
    return np.concatenate(grads).astype(np.float32)


def saliency_map(model, images, class_index=None, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Vanilla-gradient saliency (Simonyan et al. 2014): max over channels of |d score / d pixel|, each map
    divided by its maximum. Returns (n, H, W) float32 in [0, 1]."""
    grads = input_gradients(model, images, class_index=class_index, batch_size=batch_size)
    return _normalise(np.abs(grads).max(axis=-1))


def last_conv_layer(model) -> str:
    """Name of the last layer (in graph order) with a 4-D (batch, height, width, channels) output - the last
    convolution, or the activation / pooling / residual addition after it: Grad-CAM's default layer."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out = layer_output(layer)
        if out is not None and not isinstance(out, (list, tuple, dict)) and len(out.shape) == 4:
            return layer.name
    raise ValueError(f"Model {model.name!r} has no layer with a 4-D (batch, height, width, channels) output; "
                     "Grad-CAM needs a convolutional feature map.")


def grad_cam(model, images, class_index=None, layer_name: str | None = None,
             batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) heat maps, (n, H, W) float32 in [0, 1].

    For feature maps A_k of `layer_name` (default :func:`last_conv_layer`), the weight of channel k is the
    spatial mean of d score / d A_k; the map is ReLU(sum_k weight_k A_k), upsampled bilinearly to the input
    size and divided by its maximum (a map with no positive evidence stays all zero).

    Args:
        model: a single-input image classifier with a (batch, classes) output.
        images: (n, H, W, C) batch, preprocessed as the model expects.
        class_index: None for each image's predicted class, an int for one class, or one int per image.
        layer_name: a layer with a 4-D output.
    """
    import keras

    _check_model(model)
    x = _check_images(model, images)
    num_classes = int(model.outputs[0].shape[-1])
    classes = _resolve_classes(class_index, len(x), num_classes)
    feature = _feature_tensor(model, layer_name if layer_name is not None else last_conv_layer(model))
    tensor, to_scores = _score_parts(model)
    forward = keras.Model(model.inputs[0], [feature, tensor], name=f"{model.name}_features_scores")
    # The rest of the network as a function of the feature map. When a path bypasses the layer (a residual
    # connection around it), the image is a second input and that path is held fixed: the partial derivative
    # with respect to the feature map, what a gradient tape over the whole model would give.
    try:
        head, needs_image = keras.Model(feature, tensor, name=f"{model.name}_head"), False
    except ValueError:
        head, needs_image = keras.Model([model.inputs[0], feature], tensor, name=f"{model.name}_head"), True
    cams = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        fmap, pre = forward(xb, training=False)
        if classes is None:
            c = np.argmax(_to_numpy(to_scores(pre)), axis=-1)
        else:
            c = classes[start:start + batch_size]
        onehot = _onehot(c, num_classes)
        if needs_image:
            image = keras.ops.convert_to_tensor(xb)
            fn = lambda a, image=image, onehot=onehot: to_scores(head([image, a], training=False)) * onehot  # noqa: E731
        else:
            fn = lambda a, onehot=onehot: to_scores(head(a, training=False)) * onehot  # noqa: E731
        a = _to_numpy(fmap)
        _, g = value_and_gradients(fn, a)
        weights = g.mean(axis=(1, 2))  # (n, channels): global-average-pooled gradients
        cams.append(np.maximum(np.einsum("nhwk,nk->nhw", a, weights), 0.0))
    cams = np.concatenate(cams)
    return _normalise(_resize_bilinear(cams, x.shape[1:3]))


def overlay_heatmap(image, heatmap, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """A heat map blended over an image: (H, W, 3) float32 RGB in [0, 1], ready for plt.imshow / imsave.

    Args:
        image: (H, W), (H, W, 1) or (H, W, 3); values in [0, 1], 0..255, or anything else (min-max scaled).
        heatmap: (h, w) values in [0, 1] (clipped); resized bilinearly when h, w differ from the image's.
        alpha: weight of the coloured heat map (0 shows the image only, 1 the heat map only).
        colormap: a matplotlib colormap name.
    """
    import matplotlib

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"`image` must be (H, W), (H, W, 1) or (H, W, 3); received shape {np.shape(image)}.")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"`heatmap` must be 2-D (H, W); received shape {heat.shape}.")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be a number in [0, 1]; received alpha={alpha!r}.")
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"`colormap` {colormap!r} is not a matplotlib colormap (e.g. 'jet', 'inferno').") from None
    lo, hi = float(img.min()), float(img.max())
    if lo >= 0.0 and hi <= 1.0:
        pass
    elif lo >= 0.0 and hi <= 255.0:
        img = img / 255.0
    else:
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if heat.shape != img.shape[:2]:
        heat = _resize_bilinear(heat[None], img.shape[:2])[0]
    coloured = cmap(np.clip(np.nan_to_num(heat), 0.0, 1.0))[..., :3].astype(np.float32)
    return np.clip((1.0 - alpha) * img + alpha * coloured, 0.0, 1.0).astype(np.float32)
