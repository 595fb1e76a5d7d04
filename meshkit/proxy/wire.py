"""The one converter between ``ProxyConfig`` and the JSON on the control API."""

from __future__ import annotations

from typing import Any

from cattrs.preconf.json import make_converter

from meshkit.proxy.config import ProxyConfig

converter = make_converter()


def config_to_dict(config: ProxyConfig) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(config)
    return data


def config_from_dict(data: Any) -> ProxyConfig:
    """Structure (and so validate the shape of) a config received over the wire.

    Raises ``cattrs`` errors (``ClassValidationError`` and friends) on bad input.
    """
    return converter.structure(data, ProxyConfig)
