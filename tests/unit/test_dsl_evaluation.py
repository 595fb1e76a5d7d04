"""Evaluating Meshfiles: exceptions as problems, a fresh interpreter, a clean stdout."""

from __future__ import annotations

import os
import pathlib
import sys
import time

import pytest

from meshkit.dsl import (
    MeshfileNotFound,
    evaluate,
    evaluate_async,
    evaluate_in_process,
    find_meshfile,
)
from meshkit.dsl.convert import spec_from_json, spec_to_json
from meshkit.dsl.evaluate.evaluation import result_from_dict, result_to_dict

HEADER = "from meshkit import Mesh, http_get\nmesh = Mesh('shop')\n"


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: pathlib.Path, relative: str, text: str) -> pathlib.Path:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def only_problem(path: str) -> str:
    result = evaluate_in_process(path)
    assert result.spec is None
    (problem,) = result.problems
    return str(problem)


def test_name_error_points_at_the_line(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "Meshfile.py", HEADER + "mesh.service('a', run=comand)\n")
    problem = only_problem("Meshfile.py")
    assert problem.splitlines()[0] == "Meshfile.py:3: NameError: name 'comand' is not defined"
    assert "Traceback (most recent call last, your code only):" in problem
    assert f'File "{in_tmp / "Meshfile.py"}", line 3, in <module>' in problem
    assert "meshkit/dsl" not in problem


def test_syntax_error_shows_the_line_and_caret(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "Meshfile.py", HEADER + "mesh.service('a', run='x'\n\nx = = 1\n")
    problem = only_problem("Meshfile.py")
    first = problem.splitlines()[0]
    assert first.startswith("Meshfile.py:3: SyntaxError: ")
    assert "^" in problem


def test_import_error_hides_the_import_machinery(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "Meshfile.py", "import shop.missing_module\n")
    problem = only_problem("Meshfile.py")
    assert problem.splitlines()[0] == ("Meshfile.py:1: ModuleNotFoundError: No module named 'shop'")
    assert "<frozen" not in problem
    assert "importlib" not in problem


def test_error_in_a_helper_module_points_into_it(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "shop/__init__.py", "")
    write(in_tmp, "shop/ports.py", "def port_for(name):\n    return {'a': 1}[name]\n")
    write(in_tmp, "Meshfile.py", HEADER + "from shop.ports import port_for\nport_for('b')\n")
    problem = only_problem("Meshfile.py")
    lines = problem.splitlines()
    assert lines[0] == f"{os.path.join('shop', 'ports.py')}:2: KeyError: 'b'"
    assert sum("File " in line for line in lines) == 2
    assert "line 4, in <module>" in problem
    assert "line 2, in port_for" in problem


def test_syntax_error_in_a_helper_module_points_into_it(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "helpers.py", "x = 1\ndef broken(:\n")
    write(in_tmp, "Meshfile.py", HEADER + "import helpers\n")
    assert only_problem("Meshfile.py").startswith("helpers.py:2: SyntaxError: ")


def test_meshkit_frames_between_user_frames_are_trimmed(in_tmp: pathlib.Path) -> None:
    body = (
        "class Env(dict):\n"
        "    def items(self):\n"
        "        raise RuntimeError('no env today')\n"
        "mesh.service('a', run='x', env=Env())\n"
    )
    write(in_tmp, "Meshfile.py", HEADER + body)
    problem = only_problem("Meshfile.py")
    assert problem.splitlines()[0] == "Meshfile.py:5: RuntimeError: no env today"
    assert "declare.py" not in problem
    assert "line 6, in <module>" in problem


def test_misspelt_keyword_is_a_problem(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "Meshfile.py", HEADER + "mesh.service('a', run='x', replica=2)\n")
    assert only_problem("Meshfile.py").splitlines()[0] == (
        "Meshfile.py:3: TypeError: Mesh.service() got an unexpected keyword argument 'replica'"
    )


def test_sys_exit_is_a_problem_not_an_exit(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "Meshfile.py", HEADER + "import sys\nsys.exit('bye')\n")
    assert only_problem("Meshfile.py").splitlines()[0] == "Meshfile.py:4: SystemExit: bye"


def test_problems_before_a_crash_are_kept(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "Meshfile.py", HEADER + "mesh.service('a', run='x', replicas='2')\n1 / 0\n")
    result = evaluate_in_process("Meshfile.py")
    assert [str(p).splitlines()[0] for p in result.problems] == [
        "Meshfile.py:3: service 'a': replicas must be an int, got '2' (a str)",
        "Meshfile.py:4: ZeroDivisionError: division by zero",
    ]


def test_unreadable_meshfile(in_tmp: pathlib.Path) -> None:
    assert only_problem("Nope.py") == (
        "Nope.py:1: cannot read the Meshfile: No such file or directory"
    )


def test_spec_round_trips_through_json(in_tmp: pathlib.Path) -> None:
    body = (
        "c = mesh.service('catalog', version='v1', run=['python', '-m', 'c'], replicas=2,\n"
        "                 health=http_get('/h', period='250ms'), env={'A': 'b'}, watch=['c.py'])\n"
        "mesh.service('frontend', run='f', upstreams=[c], depends_on=[c], cwd='.')\n"
        "mesh.gateway(port=0, routes={'/': 'frontend', '/api': c})\n"
    )
    write(in_tmp, "Meshfile.py", HEADER + body)
    result = evaluate_in_process("Meshfile.py")
    assert result.spec is not None
    assert spec_from_json(spec_to_json(result.spec)) == result.spec
    assert result_from_dict(result_to_dict(result)) == result


def test_helper_modules_are_listed_and_forgotten(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "shop/__init__.py", "")
    write(in_tmp, "shop/config.py", "REPLICAS = 2\n")
    meshfile = write(
        in_tmp,
        "Meshfile.py",
        HEADER + "from shop.config import REPLICAS\n"
        "mesh.service('a', run='x', replicas=REPLICAS)\n",
    )
    first = evaluate_in_process("Meshfile.py")
    assert first.files == (
        str(meshfile),
        str(in_tmp / "shop" / "__init__.py"),
        str(in_tmp / "shop" / "config.py"),
    )
    assert "shop" not in sys.modules
    assert str(in_tmp) not in sys.path
    write(in_tmp, "shop/config.py", "REPLICAS = 3\n")
    second = evaluate_in_process("Meshfile.py")
    assert second.spec is not None
    assert second.spec.services[0].replicas == 3


def test_find_meshfile(in_tmp: pathlib.Path) -> None:
    with pytest.raises(MeshfileNotFound) as caught:
        find_meshfile(None)
    assert str(caught.value) == (
        f"no Meshfile found (looked for Meshfile.py and meshfile.py in {in_tmp}); pass -f FILE"
    )
    write(in_tmp, "meshfile.py", "")
    assert find_meshfile(None) == pathlib.Path("meshfile.py")
    write(in_tmp, "Meshfile.py", "")
    assert find_meshfile(None) == pathlib.Path("Meshfile.py")
    write(in_tmp, "deploy/Meshfile.py", "")
    assert find_meshfile("deploy") == pathlib.Path("deploy/Meshfile.py")
    assert find_meshfile("deploy/Meshfile.py") == pathlib.Path("deploy/Meshfile.py")
    with pytest.raises(MeshfileNotFound, match=r"Meshfile 'other\.py' does not exist"):
        find_meshfile("other.py")


def test_fresh_interpreter_sees_an_edit_to_an_imported_module(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "shop/__init__.py", "")
    write(in_tmp, "shop/config.py", "REPLICAS = 2\n")
    write(
        in_tmp,
        "Meshfile.py",
        HEADER + "import shop.config\nmesh.service('a', run='x', replicas=shop.config.REPLICAS)\n",
    )
    first = evaluate("Meshfile.py")
    assert first.spec is not None, first.problems
    assert first.spec.services[0].replicas == 2
    # Same size, same second: a .pyc checked by mtime and size would be stale.
    write(in_tmp, "shop/config.py", "REPLICAS = 5\n")
    second = evaluate("Meshfile.py")
    assert second.spec is not None
    assert second.spec.services[0].replicas == 5
    assert not (in_tmp / "shop" / "__pycache__").exists()


def test_child_problems_name_the_path_as_given(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "deploy/Meshfile.py", HEADER + "mesh.service('a', run='x', replicas=0)\n")
    result = evaluate("deploy/Meshfile.py")
    assert [str(p) for p in result.problems] == [
        "deploy/Meshfile.py:3: service 'a': replicas must be at least 1, got 0",
    ]


def test_prints_in_the_meshfile_do_not_corrupt_the_result(in_tmp: pathlib.Path) -> None:
    body = (
        "import os, subprocess, sys\n"
        "print('{not json')\n"
        "os.write(1, b'raw bytes on fd 1\\n')\n"
        "subprocess.run([sys.executable, '-c', 'print(\"from a grandchild\")'], check=True)\n"
        "mesh.service('a', run='x')\n"
    )
    write(in_tmp, "Meshfile.py", HEADER + body)
    result = evaluate("Meshfile.py")
    assert result.ok, result.problems
    assert "{not json" in result.output
    assert "raw bytes on fd 1" in result.output
    assert "from a grandchild" in result.output


def test_a_crashing_child_is_a_problem(in_tmp: pathlib.Path) -> None:
    write(
        in_tmp,
        "Meshfile.py",
        HEADER + "import os, sys\nprint('dying', file=sys.stderr)\n"
        "sys.stderr.flush()\nos._exit(3)\n",
    )
    (problem,) = evaluate("Meshfile.py").problems
    assert str(problem) == (
        "Meshfile.py:1: evaluating the Meshfile failed: the evaluator process exited with"
        " code 3\ndying"
    )


def test_a_hanging_meshfile_is_stopped(in_tmp: pathlib.Path) -> None:
    # The timeout must leave the evaluator time to start and reach the Meshfile's
    # sleep on a loaded machine: a few times what a trivial evaluation takes now.
    write(in_tmp, "Quick.py", HEADER)
    started = time.monotonic()
    assert evaluate("Quick.py").ok
    timeout = max(1.0, round(3 * (time.monotonic() - started), 1))
    write(
        in_tmp,
        "Meshfile.py",
        "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(600)\n",
    )
    result = evaluate("Meshfile.py", timeout=timeout)
    (problem,) = result.problems
    assert str(problem).startswith(
        f"Meshfile.py:1: evaluating the Meshfile took longer than {timeout:g}s and was stopped"
    )
    pid = int((in_tmp / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_evaluate_async(in_tmp: pathlib.Path) -> None:
    write(in_tmp, "Meshfile.py", HEADER + "mesh.service('a', run='x', replicas=2)\n")
    result = await evaluate_async("Meshfile.py")
    assert result.spec is not None
    assert result.spec.services[0].replicas == 2


async def test_evaluate_async_timeout_kills_the_child(
    in_tmp: pathlib.Path, autojump_clock: object
) -> None:
    write(
        in_tmp,
        "Meshfile.py",
        "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(60)\n",
    )
    result = await evaluate_async("Meshfile.py", timeout=5.0)
    assert "took longer than 5s" in str(result.problems[0])
    if (in_tmp / "pid").exists():
        with pytest.raises(ProcessLookupError):
            os.kill(int((in_tmp / "pid").read_text()), 0)
