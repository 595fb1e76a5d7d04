"""``ProxyConfig`` to the JSON on the control API and back (``meshkit.api.converter``)."""

from __future__ import annotations

from typing import Any

from meshkit.api.converter import converter
from meshkit.proxy.config import ProxyConfig


def config_to_dict(config: ProxyConfig) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(config)
    return data


def config_from_dict(data: Any) -> ProxyConfig:
    """Structure (and so validate the shape of) a config received over the wire.

    Raises ``cattrs`` errors (``ClassValidationError`` and friends) on bad input.
    """
    return converter.structure(data, ProxyConfig)
