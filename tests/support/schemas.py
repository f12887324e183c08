"""Validate orascp's JSON documents against the schemas it ships in ``orascp/schemas/``."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema
from referencing import Registry, Resource

__all__ = ["validate"]


def _load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(files("orascp").joinpath(f"schemas/{name}").read_text())
    return schema


def validate(document: Any, name: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` matches schema file ``name``.

    The plan and tag schemas refer to the result schema's definitions by its ``$id``.
    """
    schemas = [
        _load(n) for n in ("cp-result.schema.json", "cp-plan.schema.json", "cp-tags.schema.json")
    ]
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas
    )
    schema = _load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema, registry=registry).validate(document)
