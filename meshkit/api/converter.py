"""The one cattrs converter between meshkit's attrs classes and JSON-ready data.

The DSL's spec (``meshkit.dsl.convert``) and the sidecar's config
(``meshkit.proxy.wire``) both use it, so a class converts the same everywhere.
"""

from __future__ import annotations

from cattrs.preconf.json import make_converter

converter = make_converter()
