"""The registry: the front door to every model builder.

    kerastk.create_model("mlp", depth=3)      # a keras.Model
    kerastk.list_models("resnet*")            # names, sorted
    kerastk.model_info("lenet5")              # family, paper, defaults, reference figures

Importing this module imports every family (kerastk.models.families), whose builders register themselves in
the table (kerastk.models.catalog: ``@register_model(family=..., paper=..., default_input_shape=...)``).
"""
from kerastk.models import families  # noqa: F401 - importing the families registers their builders
from kerastk.models.catalog import create_model, list_models, model_info, register_model

__all__ = ["create_model", "list_models", "model_info", "register_model"]
