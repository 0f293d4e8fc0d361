"""Model families. Importing this package registers every builder with the registry."""
from kerastk.models.registry import create_model, list_models, model_info, register_model

__all__ = ["create_model", "list_models", "model_info", "register_model"]
