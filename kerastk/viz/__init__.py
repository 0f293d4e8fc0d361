"""Looking at what a network does: Grad-CAM and saliency maps, feature-map and filter grids, segmentation
overlays and detection boxes drawn on images - saved as PNG.

Attributes are imported lazily (matplotlib and a backend are loaded only when a function is used).
"""
from __future__ import annotations

import importlib

_LAZY = {
    # saliency.py: gradients of a class score with respect to the input or a feature map
    "grad_cam": "kerastk.viz.saliency",
    "saliency_map": "kerastk.viz.saliency",
    "input_gradients": "kerastk.viz.saliency",
    "last_conv_layer": "kerastk.viz.saliency",
    "overlay_heatmap": "kerastk.viz.saliency",
    # grids.py: feature maps and first-layer filters
    "feature_maps": "kerastk.viz.grids",
    "plot_feature_maps": "kerastk.viz.grids",
    "plot_filters": "kerastk.viz.grids",
    # overlays.py: segmentation masks over images
    "plot_segmentation": "kerastk.viz.overlays",
    "colorize_mask": "kerastk.viz.overlays",
    "overlay_mask": "kerastk.viz.overlays",
    # boxes.py: detections drawn on images
    "plot_detections": "kerastk.viz.boxes",
    # volumes.py: slices of 3-D volumes, their true and predicted masks
    "plot_volume_slices": "kerastk.viz.volumes",
    # curves.py: several runs' training curves on one axis
    "compare_curves": "kerastk.viz.curves",
    "save_figure": "kerastk.viz.curves",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerastk.viz' has no attribute {name!r}")
