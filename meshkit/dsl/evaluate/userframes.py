"""Which frames are the user's: where a declaration was made, where an error was raised.

A Meshfile calls into meshkit, and meshkit calls into the standard library and
third-party packages; a person wants to hear about none of that.  A *user
file* is a real file that belongs neither to meshkit's own package, nor to the
standard library, nor to an installed package.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from collections.abc import Iterable
from types import FrameType

from meshkit.dsl.spec import Origin

_MESHKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _library_dirs() -> tuple[str, ...]:
    """The standard library and site-packages, as given and with symlinks resolved."""
    paths = sysconfig.get_paths()
    found: set[str] = set()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        if name in paths:
            found.add(os.path.abspath(paths[name]))
            found.add(os.path.realpath(paths[name]))
    return tuple(sorted(found))


_LIBRARY_DIRS = _library_dirs()


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def is_meshkit_file(filename: str) -> bool:
    """True for a file of meshkit's own package."""
    return _is_under(os.path.abspath(filename), _MESHKIT_DIR)


def is_user_file(filename: str) -> bool:
    """True for a real file that is not meshkit's, the standard library's or a package's."""
    if not filename or filename.startswith("<"):
        return False
    absolute = os.path.abspath(filename)
    if _is_under(absolute, _MESHKIT_DIR):
        return False
    real = os.path.realpath(absolute)
    return not any(_is_under(real, lib) or _is_under(absolute, lib) for lib in _LIBRARY_DIRS)


def caller_origin() -> Origin:
    """The file and line of the innermost frame outside meshkit's package.

    Called from inside a DSL function, this is the line of the user's code that
    called it, however many meshkit frames sit in between.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and is_meshkit_file(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return Origin(file="<unknown>", line=0)
    return Origin(file=os.path.abspath(frame.f_code.co_filename), line=frame.f_lineno)


def user_frames(tb: Iterable[traceback.FrameSummary]) -> list[traceback.FrameSummary]:
    """The frames of a traceback that are in user files, outermost first."""
    return [frame for frame in tb if is_user_file(frame.filename)]
