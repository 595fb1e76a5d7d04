"""``ProxyConfig`` to the JSON on the control API and back (``meshkit.api.converter``).

The control plane unstructures one config per sidecar, and most of each (the
clusters, routes and policies of the whole mesh) is the same tuple in every
config of one compile (``meshkit.registry.compile``): ``config_to_dict``
unstructures such a field once and hands the same data to every config that
holds that very tuple.  The data is only ever read (encoded as JSON).
"""

from __future__ import annotations

from typing import Any

import attrs

from meshkit.api.converter import converter
from meshkit.proxy.config import ProxyConfig

# The fields every config of one compile shares (by identity).
SHARED_FIELDS = frozenset(
    (
        "clusters",
        "routes",
        "policies",
        "runtime_faults",
        "rate_limits",
        "authorization",
        "request_authentication",
        "allowed_hosts",
    )
)
_FIELDS = tuple((f.name, f.type) for f in attrs.fields(attrs.resolve_types(ProxyConfig)))
_last: dict[str, tuple[object, Any]] = {}  # field -> (the value last seen, its data)


def config_to_dict(config: ProxyConfig) -> dict[str, Any]:
    """``converter.unstructure(config)``, each shared field unstructured once per value."""
    data: dict[str, Any] = {}
    for name, kind in _FIELDS:
        value = getattr(config, name)
        if name not in SHARED_FIELDS:
            data[name] = converter.unstructure(value, unstructure_as=kind)
            continue
        seen = _last.get(name)
        if seen is None or seen[0] is not value:
            seen = (value, converter.unstructure(value, unstructure_as=kind))
            _last[name] = seen
        data[name] = seen[1]
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
