"""Model families. Importing this package registers every builder with the registry."""
from kerastk.models import (  # noqa: F401  (importing a family registers its builders)
    alexnet, convnext, densenet, googlenet, lenet, linear, mlp, mobilenet, resnet, resnet_cifar, vgg, xception)
from kerastk.models.registry import create_model, list_models, model_info, register_model

__all__ = ["create_model", "list_models", "model_info", "register_model"]
