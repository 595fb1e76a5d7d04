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


def prepare_hooks() -> None:
    """Generate the converter's ProxyConfig functions now, not at the first config.

    The sidecar template calls this before it forks, so that every sidecar
    shares those functions instead of generating and compiling its own.
    """
    converter.get_structure_hook(ProxyConfig)
    converter.get_unstructure_hook(ProxyConfig)
