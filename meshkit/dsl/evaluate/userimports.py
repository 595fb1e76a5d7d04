"""Importing the user's modules beside a Meshfile, always from their current source.

A Meshfile may ``import shop.config`` from its own directory.  While
``fresh_user_imports(directory)`` is active, that directory is first on
``sys.path`` and every module found under it is compiled from its source file,
never from a cached ``.pyc`` (whose mtime-and-size check can miss an edit made
within the same second).  On exit ``sys.path``, the import hooks and
``sys.modules`` are restored for modules under the directory, so an
evaluation inside a long-lived process leaves nothing behind either.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CodeType, ModuleType


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time; reads and writes no bytecode cache."""

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path)
        return self.source_to_code(source, self.path)


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _finder_hook(directory: str) -> Callable[[str], importlib.machinery.FileFinder]:
    def hook(path: str) -> importlib.machinery.FileFinder:
        absolute = os.path.abspath(path or os.getcwd())
        if not _under(absolute, directory):
            raise ImportError(f"{path!r} is not under {directory!r}")
        return importlib.machinery.FileFinder(
            absolute,
            (_SourceOnlyLoader, importlib.machinery.SOURCE_SUFFIXES),
        )

    return hook


def module_file(module: ModuleType) -> str | None:
    filename = getattr(module, "__file__", None)
    return os.path.abspath(filename) if isinstance(filename, str) else None


def _forget_finders_under(directory: str) -> None:
    for path in list(sys.path_importer_cache):
        if _under(os.path.abspath(path or os.getcwd()), directory):
            del sys.path_importer_cache[path]


def user_module_files(directory: str, *, since: set[str]) -> list[str]:
    """Files of the modules under ``directory`` imported since the ``since`` snapshot."""
    files: list[str] = []
    for name, module in list(sys.modules.items()):
        filename = module_file(module)
        if name not in since and filename is not None and _under(filename, directory):
            files.append(filename)
    return sorted(set(files))


@contextmanager
def fresh_user_imports(directory: str) -> Iterator[set[str]]:
    """Import from ``directory`` first and from source; yields the ``sys.modules`` snapshot."""
    directory = os.path.abspath(directory)
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    hook = _finder_hook(directory)
    sys.path.insert(0, directory)
    sys.path_hooks.insert(0, hook)
    _forget_finders_under(directory)
    importlib.invalidate_caches()
    try:
        yield modules_before
    finally:
        sys.path[:] = path_before
        if hook in sys.path_hooks:
            sys.path_hooks.remove(hook)
        _forget_finders_under(directory)
        for name in set(sys.modules) - modules_before:
            filename = module_file(sys.modules[name])
            own = name == "meshkit" or name.startswith("meshkit.")
            if filename is not None and _under(filename, directory) and not own:
                del sys.modules[name]
