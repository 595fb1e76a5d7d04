"""The spec classes to JSON and back, with the one converter of ``meshkit.api.converter``."""

from __future__ import annotations

import json
from typing import Any

from meshkit.api.converter import converter
from meshkit.dsl.spec import MeshSpec


def spec_to_json(spec: MeshSpec, *, indent: int | None = 2) -> str:
    return json.dumps(converter.unstructure(spec), indent=indent)


def spec_from_json(text: str) -> MeshSpec:
    return spec_from_dict(json.loads(text))


def spec_from_dict(data: Any) -> MeshSpec:
    return converter.structure(data, MeshSpec)
