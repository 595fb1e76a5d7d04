"""The Python environment of every process a command starts: source or bytecode.

These machines set ``PYTHONDONTWRITEBYTECODE=1``.  The standard library and
the installed packages come with their ``__pycache__``, but meshkit itself
(installed editable) is compiled from source by every process that imports
it: every sidecar, the control plane, the guardian, each Meshfile evaluation.

- default: ``PYTHONDONTWRITEBYTECODE=1`` and no ``PYTHONPYCACHEPREFIX``, as
  here, whatever the caller's environment says;
- ``--bytecode``: ``PYTHONDONTWRITEBYTECODE`` unset and ``PYTHONPYCACHEPREFIX``
  set to a temporary cache, filled beforehand by ``compileall`` with every
  module that meshkit, its dependencies, pytest and the example apps import
  (a prefix replaces every ``__pycache__``, so the standard library goes into
  it too).  A module the probe missed is compiled once and written there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from hopbench.procs import BenchError

from .meshes import REPOSITORY

# Imports every meshkit module (the ``__main__`` modules are only located:
# running them would start a program), pytest, what the example apps use and
# what the sidecars import lazily, then prints the source file of each.
PROBE = """\
import importlib, importlib.util, pkgutil, sys
import meshkit
for info in pkgutil.walk_packages(meshkit.__path__, "meshkit."):
    if info.name.endswith("__main__"):
        print(importlib.util.find_spec(info.name).origin)
    else:
        importlib.import_module(info.name)
import pytest, http.server, urllib.request, json, socket, encodings.idna
import cryptography.hazmat.backends.openssl
sys.path.insert(0, sys.argv[1])
import common
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and path.endswith(".py"):
        print(path)
"""


def python_env(*, cache: Path | None) -> dict[str, str]:
    """The environment for the mesh's processes: from source, or from ``cache``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MESHKIT_")}
    env.pop("PYTHONPYCACHEPREFIX", None)
    if cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def _run(argv: list[str], env: Mapping[str, str], what: str) -> str:
    try:
        completed = subprocess.run(
            argv, env=dict(env), capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{what} did not finish within 600 s") from error
    if completed.returncode != 0:
        raise BenchError(f"{what} failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return completed.stdout


def precompile(cache: Path) -> int:
    """Fill ``cache`` with the bytecode of every module the probe imports; returns the count."""
    cache.mkdir(parents=True, exist_ok=True)
    env = python_env(cache=cache)
    shop = REPOSITORY / "examples" / "shop"
    files = _run([sys.executable, "-c", PROBE, str(shop)], env, "the import probe").split()
    files += [str(path) for path in shop.glob("*.py")]
    listing = cache / "sources.txt"
    listing.write_text("\n".join(sorted(set(files))) + "\n")
    _run([sys.executable, "-m", "compileall", "-q", "-i", str(listing)], env, "compileall")
    return len(set(files))
