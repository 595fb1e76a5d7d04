"""What an export is made of: manifests, findings and the options that shape them.

A ``Manifest`` is one Kubernetes object as plain data (dicts, lists, strings,
numbers, booleans), ready for ``kubectl apply``, with the ``Origin`` of the
Meshfile line it came from.  A ``Finding`` is something the Meshfile says
that has no Kubernetes or Istio equivalent: where it is said, what it is, and
what the export did instead.  Both are plain values; nothing here does I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

import attrs

from meshkit.dsl.spec import Origin

ORIGIN_ANNOTATION = "meshkit.dev/origin"
DEFAULT_GRACE = 10.0
"""Seconds from SIGTERM to SIGKILL, as ``meshkit up --grace`` defaults to."""


@attrs.frozen(kw_only=True)
class Manifest:
    """One Kubernetes object (``body``) and the Meshfile line that declared it."""

    body: dict[str, Any]
    origin: Origin

    @property
    def kind(self) -> str:
        kind: str = self.body["kind"]
        return kind

    @property
    def name(self) -> str:
        name: str = self.body["metadata"]["name"]
        return name


@attrs.frozen(kw_only=True)
class Finding:
    """A Meshfile setting with no Kubernetes/Istio equivalent, and what was done instead."""

    origin: Origin
    subject: str
    message: str
    instead: str

    def located(self, base: str) -> str:
        """``FILE:LINE: subject: message; instead`` with FILE relative to ``base``."""
        return f"{show_origin(self.origin, base)}: {self.subject}: {self.message}; {self.instead}"


@attrs.frozen(kw_only=True)
class Notes:
    """Where the findings about one subject go, and the Meshfile line they point at."""

    findings: list[Finding]
    subject: str
    origin: Origin

    def at(self, origin: Origin) -> Self:
        """The same notes pointing at ``origin``."""
        return attrs.evolve(self, origin=origin)

    def add(self, message: str, instead: str) -> None:
        self.findings.append(
            Finding(origin=self.origin, subject=self.subject, message=message, instead=instead)
        )


@attrs.frozen(kw_only=True)
class ExportOptions:
    """How a Meshfile becomes manifests.

    ``namespace`` defaults to the mesh's name.  ``images`` maps a service
    name, or a deployment key such as ``catalog-v2``, to a container image;
    it wins over ``image=`` in the Meshfile.  ``grace`` is the pods'
    termination grace period in seconds.  Origins are shown relative to
    ``base`` (the Meshfile's directory).
    """

    namespace: str | None = None
    images: Mapping[str, str] = attrs.field(factory=dict)
    grace: float = DEFAULT_GRACE
    base: str = "."


@attrs.frozen(kw_only=True)
class Export:
    """The manifests of a Meshfile, in the order ``kubectl apply`` needs, and its findings."""

    manifests: tuple[Manifest, ...]
    findings: tuple[Finding, ...]


def show_origin(origin: Origin, base: str) -> str:
    """``Meshfile.py:14``: an origin with its file relative to ``base`` when it is inside it."""
    file = origin.file
    if os.path.isabs(file):
        relative = os.path.relpath(file, base)
        if not relative.startswith(os.pardir):
            file = relative
    return f"{file}:{origin.line}"


def istio_duration(seconds: float) -> str:
    """A protobuf duration as Istio reads it: ``2s``, ``300ms`` (whole milliseconds)."""
    millis = round(seconds * 1000)
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis}ms"
