"""Feature-map grids and first-layer filter grids, saved as PNG.

    maps = kerastk.viz.feature_maps(model, images, ["block1_conv", "block2_conv"])  # name -> (n, h, w, c)
    kerastk.viz.plot_feature_maps(model, image, "maps.png")    # one row per conv layer, first 16 channels
    kerastk.viz.plot_filters(model, "filters.png")             # the first conv layer's kernels as tiles

Forward passes only (a Keras sub-model from the input to the chosen layers): no backend-specific code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kerastk.viz.saliency import find_layer, layer_output

__all__ = ["feature_maps", "plot_feature_maps", "plot_filters"]

MAX_LAYERS = 6  # plot_feature_maps' default: at most this many conv layers, spread over the network's depth


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _input_batch(model, images, name="images"):
    """`images` as a float32 batch matching the model's single input."""
    if len(model.inputs) != 1:
        raise ValueError(f"kerastk.viz grids need a single-input model; model {model.name!r} has "
                         f"{len(model.inputs)} inputs.")
    expected = tuple(model.inputs[0].shape[1:])
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != len(expected) + 1 or len(x) == 0 or any(
            e is not None and e != d for e, d in zip(expected, x.shape[1:])):
        raise ValueError(f"`{name}` must be a batch of shape {(None, *expected)} for model {model.name!r}; "
                         f"received an array of shape {x.shape}.")
    return x


def _conv_layers(model):
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def feature_maps(model, images, layer_names) -> dict:
    """Activations of the named layers for a batch of inputs: {name: numpy array (n, ...)}.

    Args:
        model: a single-input Keras model.
        images: a batch shaped like the model's input.
        layer_names: a layer name or a list of them.
    """
    import keras

    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    if not names:
        raise ValueError("`layer_names` must name at least one layer.")
    outputs = []
    for name in names:
        out = layer_output(find_layer(model, name))
        if out is None or isinstance(out, (list, tuple, dict)):
            raise ValueError(f"Layer {name!r} has no single output tensor (it is shared or returns several).")
        outputs.append(out)
    x = _input_batch(model, images)
    probe = keras.Model(model.inputs[0], outputs, name=f"{model.name}_feature_maps")
    values = probe.predict(x, batch_size=64, verbose=0)
    if len(names) == 1:
        values = [values]
    return {name: np.asarray(v) for name, v in zip(names, values)}


def _spread(items, k):
    """At most k items evenly spread over the list, always keeping the first and the last."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))]


def _tile(a):
    """One channel scaled to [0, 1] on its own range (a constant channel shows mid grey)."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.full_like(a, 0.5)


def plot_feature_maps(model, image, path, layer_names=None, max_channels: int = 16) -> Path:
    """Save a grid of one image's feature maps: one row per layer, its first `max_channels` channels, each
    scaled to its own range. Returns the PNG's path.

    Args:
        image: one input (H, W, C), or a batch of one.
        layer_names: layers with 4-D outputs; default: up to 6 Conv2D layers spread from the first to the last.
    """
    if isinstance(max_channels, bool) or not isinstance(max_channels, int) or max_channels < 1:
        raise ValueError(f"`max_channels` must be an integer >= 1; received max_channels={max_channels!r}.")
    x = np.asarray(image, dtype=np.float32)
    expected = len(model.inputs[0].shape)  # with the batch axis
    if x.ndim == expected - 1:
        x = x[None]
    if x.ndim != expected or len(x) != 1:
        raise ValueError(f"`image` must be one input of shape {tuple(model.inputs[0].shape[1:])} (or a batch of "
                         f"one); received shape {np.shape(image)}.")
    if layer_names is None:
        layer_names = [layer.name for layer in _spread(_conv_layers(model), MAX_LAYERS)]
        if not layer_names:
            raise ValueError(f"Model {model.name!r} has no Conv2D layer; pass `layer_names`.")
    names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    maps = feature_maps(model, x, names)
    for name, m in maps.items():
        if m.ndim != 4:
            raise ValueError(f"plot_feature_maps shows 4-D (batch, height, width, channels) outputs; layer "
                             f"{name!r} outputs shape {m.shape}.")
    cols = min(max_channels, max(m.shape[-1] for m in maps.values()))
    plt = _pyplot()
    fig, axes = plt.subplots(len(names), cols, figsize=(1.1 * cols + 1.6, 1.2 * len(names) + 0.4), squeeze=False)
    for row, name in enumerate(names):
        m = maps[name][0]
        for col in range(cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < m.shape[-1]:
                ax.imshow(_tile(m[..., col]), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(f"{name}\n{m.shape[0]}x{m.shape[1]}x{m.shape[2]}", fontsize=7, rotation=0,
                                ha="right", va="center")
    fig.suptitle(f"{model.name}: feature maps (first {cols} channels, each on its own scale)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_filters(model, path, layer_name: str | None = None, max_filters: int = 64) -> Path:
    """Save a conv layer's kernels as tiles (default: the first Conv2D layer). Kernels over 3 input channels
    are shown as RGB, others as grey (the mean over input channels); each tile is scaled to its own range.
    Returns the PNG's path."""
    import keras

    if isinstance(max_filters, bool) or not isinstance(max_filters, int) or max_filters < 1:
        raise ValueError(f"`max_filters` must be an integer >= 1; received max_filters={max_filters!r}.")
    if layer_name is None:
        convs = _conv_layers(model)
        if not convs:
            raise ValueError(f"Model {model.name!r} has no Conv2D layer to show.")
        layer = convs[0]
    else:
        layer = find_layer(model, layer_name)
        if not isinstance(layer, keras.layers.Conv2D):
            raise ValueError(f"plot_filters shows Conv2D kernels; layer {layer_name!r} is a "
                             f"{type(layer).__name__}.")
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), dtype=np.float32)  # (kh, kw, in, out)
    n = min(max_filters, kernel.shape[-1])
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(0.9 * cols + 0.4, 0.9 * rows + 0.6), squeeze=False)
    rgb = kernel.shape[2] == 3
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        k = kernel[..., i]
        if rgb:
            ax.imshow(_tile(k), interpolation="nearest")
        else:
            ax.imshow(_tile(k.mean(axis=-1)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    kind = "RGB" if rgb else "grey, mean over input channels" if kernel.shape[2] > 1 else "grey"
    fig.suptitle(f"{layer.name}: {n} of {kernel.shape[-1]} kernels {kernel.shape[0]}x{kernel.shape[1]} ({kind})",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
