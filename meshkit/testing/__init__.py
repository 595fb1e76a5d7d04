"""What a test suite imports from meshkit: the handle's types, for type hints.

``def test_it(mesh: MeshHandle) -> None`` (the ``mesh`` fixture of the pytest
plugin), ``mesh.aio`` is an ``AsyncMeshHandle``; ``mesh.calls()`` returns
``Call`` entries, ``mesh.fault()`` an ``InjectedFault``.
"""

from meshkit.testing.calls import AsyncFaultRequest, Call, InjectedFault
from meshkit.testing.handle import (
    AsyncMeshHandle,
    MeshHandle,
    MeshNotHealthy,
    MeshNotInSync,
    MeshRefused,
)
from meshkit.testing.status import StatusDocument

__all__ = [
    "AsyncFaultRequest",
    "AsyncMeshHandle",
    "Call",
    "InjectedFault",
    "MeshHandle",
    "MeshNotHealthy",
    "MeshNotInSync",
    "MeshRefused",
    "StatusDocument",
]
