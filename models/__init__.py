"""Model catalog: one TOML manifest per model, and the code that turns a
manifest's source package into a model directory an engine can load."""

from .catalog import CatalogError, ModelSpec, list_models, resolve_model

__all__ = ["CatalogError", "ModelSpec", "list_models", "resolve_model"]
