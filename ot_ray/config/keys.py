"""Dotted config keys (``alignment.ot.epsilon``): which exist, and which keys a section allows.

The tree is imported when a function runs, not at import: the search section's checks use
these functions, and the tree holds the search section."""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel


def _root() -> type[BaseModel]:
    from ot_ray.config.tree import Config

    return Config


def setting_keys(model: type[BaseModel] | None = None, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a setting (not of a section) in :class:`Config`."""
    for name, field in (model or _root()).model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from setting_keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def is_config_key(dotted: str, *, sections: bool = True) -> bool:
    """Whether ``dotted`` names a setting of :class:`Config`: a leaf, or (if ``sections``) a
    whole section."""
    model: type[BaseModel] = _root()
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            if depth == len(parts) - 1 and not sections:
                return False
        elif depth < len(parts) - 1:
            return False
    return True


def allowed_keys(loc: list[str]) -> list[str]:
    """The keys a config may write at ``loc``, through sections and the mappings and lists
    that hold them (``tune.search_space.<name>`` is a :class:`ParamSpec`)."""
    model: type[BaseModel] = _root()
    parts = iter(loc)
    for part in parts:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        while typing.get_origin(annotation) in (dict, list) and next(parts, None) is not None:
            annotation = typing.get_args(annotation)[-1]  # the value or item type
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [field.alias or name for name, field in model.model_fields.items()]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as dotted keys (``alignment.ot.epsilon``), the way MLflow shows params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
