"""The one converter between the spec classes and JSON."""

from __future__ import annotations

import json
from typing import Any

from cattrs.preconf.json import make_converter

from meshkit.dsl.spec import MeshSpec

converter = make_converter()


def spec_to_json(spec: MeshSpec, *, indent: int | None = 2) -> str:
    return json.dumps(converter.unstructure(spec), indent=indent)


def spec_from_json(text: str) -> MeshSpec:
    return spec_from_dict(json.loads(text))


def spec_from_dict(data: Any) -> MeshSpec:
    return converter.structure(data, MeshSpec)
