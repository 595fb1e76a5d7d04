"""What one evaluation of a Meshfile declared: the meshes and the problems.

While ``collecting(...)`` is active (that is, during an evaluation) each ``Mesh``
and each problem is gathered by the active ``Collector``; used outside an
evaluation, a mistake raises ``MeshfileError`` at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import attrs

from meshkit.dsl.checks.problems import MeshfileError, Problem
from meshkit.dsl.spec import GatewaySpec, MeshSpec, Origin

if TYPE_CHECKING:
    from meshkit.dsl.verbs.mesh import Mesh


@attrs.frozen(kw_only=True)
class MeshDeclaration(MeshSpec):
    """What one ``Mesh(...)`` object was told, before validation: the ``MeshSpec``
    it makes (``gateway`` the first of them) and every gateway it declared."""

    gateways: tuple[GatewaySpec, ...] = ()


@attrs.frozen(kw_only=True)
class Declarations:
    """Everything one evaluation of a Meshfile declared, and the mistakes made doing it."""

    meshfile: str
    meshes: tuple[MeshDeclaration, ...] = ()
    problems: tuple[Problem, ...] = ()


class Collector:
    """Gathers the meshes and problems of one evaluation (see ``collecting``)."""

    def __init__(self, *, meshfile: str) -> None:
        self.meshfile = os.path.abspath(meshfile)
        self.meshes: list[Mesh] = []
        self.problems: list[Problem] = []

    def declarations(self) -> Declarations:
        return Declarations(
            meshfile=self.meshfile,
            meshes=tuple(mesh.declaration(file=self.meshfile) for mesh in self.meshes),
            problems=tuple(self.problems),
        )


active_collector: ContextVar[Collector | None] = ContextVar(
    "meshkit_dslactive_collector", default=None
)


@contextmanager
def collecting(meshfile: str) -> Iterator[Collector]:
    """Gather every ``Mesh`` and problem declared inside the ``with`` block."""
    collector = Collector(meshfile=meshfile)
    token = active_collector.set(collector)
    try:
        yield collector
    finally:
        active_collector.reset(token)


def report(problems: list[Problem]) -> None:
    collector = active_collector.get()
    if collector is not None:
        collector.problems.extend(problems)
    elif problems:
        raise MeshfileError(problems[0])


def base_directory(origin: Origin) -> str:
    """The directory relative paths are resolved against: the Meshfile's."""
    collector = active_collector.get()
    if collector is not None:
        return os.path.dirname(collector.meshfile)
    if origin.file.startswith("<"):
        return os.getcwd()
    return os.path.dirname(origin.file)
