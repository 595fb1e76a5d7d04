from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.meshproc import MeshProcess, example_meshfile, running_mesh


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    """The example shop, running, shared by the tests of one module."""
    workdir = tmp_path_factory.mktemp("shop")
    with running_mesh(workdir, example_meshfile(workdir)) as mesh:
        yield mesh


@pytest.fixture
def start_mesh(tmp_path: Path) -> Iterator[type[MeshProcess]]:
    started: list[MeshProcess] = []

    class Started(MeshProcess):
        def __init__(self, meshfile: Path, workdir: Path = tmp_path, *extra: str) -> None:
            super().__init__(meshfile, workdir, *extra)
            started.append(self)

    yield Started
    for mesh in started:
        mesh.kill_everything()
