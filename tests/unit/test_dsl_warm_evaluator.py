"""The evaluator child started ahead: it reads the Meshfile only when told, and ends with us."""

from __future__ import annotations

import os
import pathlib

import trio

from meshkit.dsl.evaluate.warm import WarmEvaluator

HEADER = "from meshkit import Mesh\nmesh = Mesh('shop')\n"


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # Ours until reaped: a zombie counts as gone.
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


async def test_each_evaluation_reads_the_files_as_they_are_when_told(
    tmp_path: pathlib.Path,
) -> None:
    meshfile = tmp_path / "Meshfile.py"
    (tmp_path / "sizes.py").write_text("REPLICAS = 1\n")
    meshfile.write_text(
        HEADER + "import sizes\nmesh.service('a', run='x', replicas=sizes.REPLICAS)\n"
    )
    async with WarmEvaluator(str(meshfile)) as evaluate:
        await evaluate.prepare()
        await trio.sleep(0.5)  # the child has started (and could have read the files)
        (tmp_path / "sizes.py").write_text("REPLICAS = 3\n")
        first = await evaluate(str(meshfile))
        assert first.spec is not None and first.spec.services[0].replicas == 3
        meshfile.write_text(HEADER + "mesh.service('b', run='x', replicas=2)\n")
        second = await evaluate(str(meshfile))
    assert second.spec is not None
    assert [(s.name, s.replicas) for s in second.spec.services] == [("b", 2)]


async def test_problems_name_the_meshfile_line(tmp_path: pathlib.Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(HEADER + "mesh.service('a', run='x', replicas=0)\n")
    async with WarmEvaluator(str(meshfile)) as evaluate:
        result = await evaluate(str(meshfile))
    assert not result.ok
    assert ":3:" in str(result.problems[0]), result.problems


async def test_the_waiting_child_ends_with_the_evaluator(tmp_path: pathlib.Path) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(HEADER)
    async with WarmEvaluator(str(meshfile)) as evaluate:
        await evaluate.prepare()
        waiting = evaluate._waiting
        assert waiting is not None and not gone(waiting.pid)
    assert gone(waiting.pid)


async def test_a_hanging_meshfile_is_stopped_after_the_timeout(
    tmp_path: pathlib.Path, autojump_clock: object
) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text("import time\ntime.sleep(60)\n")
    async with WarmEvaluator(str(meshfile), timeout=5.0) as evaluate:
        result = await evaluate(str(meshfile))
    assert "took longer than 5s" in str(result.problems[0])


async def test_another_meshfile_is_evaluated_cold(tmp_path: pathlib.Path) -> None:
    other = "Other.py"
    (tmp_path / "Meshfile.py").write_text(HEADER)
    (tmp_path / other).write_text(HEADER + "mesh.service('c', run='x')\n")
    async with WarmEvaluator(str(tmp_path / "Meshfile.py")) as evaluate:
        result = await evaluate(str(tmp_path / other))
        assert evaluate._waiting is None
    assert result.spec is not None and result.spec.services[0].name == "c"


class Refusing:
    """A template that forks nothing: the evaluator spawns its children instead."""

    def __init__(self) -> None:
        self.asked = 0

    async def fork_evaluator(
        self, meshfile: str, *, env: dict[str, str], stdio: tuple[int, int, int]
    ) -> None:
        self.asked += 1
        for fd in stdio:
            os.fstat(fd)  # open while it is asked
        return None


async def test_a_refusing_template_falls_back_to_spawned_children_for_good(
    tmp_path: pathlib.Path,
) -> None:
    meshfile = tmp_path / "Meshfile.py"
    meshfile.write_text(HEADER + "mesh.service('a', run='x', replicas=2)\n")
    refusing = Refusing()
    async with WarmEvaluator(str(meshfile), forker=refusing) as evaluate:
        await evaluate.prepare()
        assert evaluate._waiting is None  # nothing waits while a template may fork
        first = await evaluate(str(meshfile))
        await evaluate.prepare()
        waiting = evaluate._waiting
        assert waiting is not None
        second = await evaluate(str(meshfile))
    assert refusing.asked == 1
    for result in (first, second):
        assert result.spec is not None and result.spec.services[0].replicas == 2
    assert gone(waiting.pid)
