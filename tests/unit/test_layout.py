"""The house's rules, checked against the code: room sizes, pure rooms, doors between rooms.

DESIGN.md's "Rooms and doors" says who may import whom; STYLE.md says a module stays
below 450 lines and that the rooms holding decisions import no event loop.  These
tests read every module's imports (``ast``, nothing is imported) so that a change that
breaks a rule fails here, naming the file and the import at fault.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "meshkit"
MAX_MODULE_LINES = 450

# Rooms whose modules decide and never do I/O: no event loop, no sockets, no processes.
PURE_ROOMS = (
    "api",
    "dsl/checks",
    "dsl/verbs",
    "export",
    "proxy/codec",
    "proxy/policy",
    "runtime/policy",
)
# The one module of api/ that moves bytes: the control API's client, a sans-I/O
# exchange with its trio and blocking faces, kept beside the types it carries.
PURE_EXCEPTIONS = {"api/control.py"}
IO_MODULES = {"trio", "anyio", "socket", "subprocess", "asyncio", "threading", "selectors"}

# Which top-level rooms a room may import (besides itself).  ``cli`` and ``testing``
# sit on top and may import any room, but nothing imports ``testing`` or ``cli``.
DOORS: dict[str, set[str]] = {
    "api": set(),
    "ca": {"api"},
    "dsl": {"api"},
    "proxy": {"api", "ca"},
    "registry": {"api", "ca", "dsl", "proxy"},
    "observe": {"api", "ca", "proxy", "registry"},
    "export": {"api", "dsl"},
    "runtime": {"api", "ca", "dsl", "registry", "observe"},
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else ""


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_module_is_too_long_to_read(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines (at most {MAX_MODULE_LINES})"


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in _modules()
        if any(p.is_relative_to(PACKAGE / room) for room in PURE_ROOMS)
        and str(p.relative_to(PACKAGE)) not in PURE_EXCEPTIONS
    ],
    ids=_name,
)
def test_pure_rooms_import_no_event_loop(path: Path) -> None:
    bad = [
        f"{_name(path)}:{line}: imports {module}"
        for line, module in _imports(path)
        if module.split(".")[0] in IO_MODULES
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", [p for p in _modules() if _room(p) in DOORS], ids=_name)
def test_rooms_import_only_through_their_doors(path: Path) -> None:
    room = _room(path)
    allowed = DOORS[room] | {room}
    bad = []
    for line, module in _imports(path):
        parts = module.split(".")
        if parts[0] != "meshkit" or len(parts) < 2:
            continue
        if parts[1] not in allowed:
            bad.append(f"{_name(path)}:{line}: {room}/ imports {module}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "path", [p for p in _modules() if _room(p) not in ("testing", "cli")], ids=_name
)
def test_nothing_below_the_top_imports_the_cli_or_the_test_plugin(path: Path) -> None:
    bad = [
        f"{_name(path)}:{line}: imports {module}"
        for line, module in _imports(path)
        if module.startswith(("meshkit.testing", "meshkit.cli"))
    ]
    assert not bad, "\n".join(bad)


def test_the_cli_does_not_depend_on_the_test_plugin() -> None:
    bad = [
        f"{_name(path)}:{line}: imports {module}"
        for path in sorted((PACKAGE / "cli").rglob("*.py"))
        for line, module in _imports(path)
        if module.startswith("meshkit.testing")
    ]
    assert not bad, "\n".join(bad)
