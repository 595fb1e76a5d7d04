"""``meshkit.testing`` exports the handle's types, for users' type hints."""

from __future__ import annotations

import meshkit.testing
from meshkit.testing.calls import Call, InjectedFault
from meshkit.testing.handle import AsyncMeshHandle, MeshHandle, MeshNotInSync, MeshRefused


def test_the_handle_types_are_importable_from_meshkit_testing() -> None:
    assert meshkit.testing.MeshHandle is MeshHandle
    assert meshkit.testing.AsyncMeshHandle is AsyncMeshHandle
    assert meshkit.testing.Call is Call
    assert meshkit.testing.InjectedFault is InjectedFault
    assert issubclass(meshkit.testing.MeshNotInSync, MeshRefused)
    assert MeshNotInSync.__name__ in meshkit.testing.__all__
