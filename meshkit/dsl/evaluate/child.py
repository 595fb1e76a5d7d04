"""``python -m meshkit.dsl.evaluate.child MESHFILE``: the evaluator child.

Evaluates the Meshfile at the absolute path ``MESHFILE`` in this fresh
interpreter and prints one JSON document, ``{"spec": ..., "problems": [...],
"files": [...]}``, to stdout.  While the Meshfile runs, everything it writes
to stdout (``print``, ``os.write(1, ...)``, child processes) goes to stderr
instead, so nothing can corrupt the document.  Call
``meshkit.dsl.evaluate`` to run this; this module is only its entry point.
With ``--when-told`` first, it waits for a line on stdin before it evaluates
(and exits quietly at the end of stdin): ``meshkit.dsl.evaluate.warm``; it
generates the converter's functions for the result while it waits.  Once the
document is written the child ends at once (``os._exit``): the interpreter's
teardown and whatever threads the Meshfile left would only delay the reload.
The sidecar template (``meshkit.proxy.template``) imports this module and
calls ``prepare`` before it forks evaluators, then calls ``main`` in each fork.
"""

from __future__ import annotations

import json
import os
import sys

from meshkit.dsl.evaluate.evaluation import evaluate_absolute, prepare_result_hooks, result_to_dict


def prepare() -> None:
    """What an evaluation would do first, done ahead (while waiting, or in the template)."""
    prepare_result_hooks()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--when-told"]:
        # Started ahead (meshkit.dsl.evaluate.warm): evaluate once told, or end quietly.
        prepare()
        if not sys.stdin.readline():
            return 0
        argv = argv[1:]
    if len(argv) != 1:
        print("usage: python -m meshkit.dsl.evaluate.child /absolute/path/to/Meshfile.py", file=sys.stderr)
        return 2
    result_fd = os.dup(sys.stdout.fileno())
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    result = evaluate_absolute(argv[0])
    sys.stdout.flush()
    with os.fdopen(result_fd, "w", encoding="utf-8") as result_stream:
        json.dump(result_to_dict(result), result_stream)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
