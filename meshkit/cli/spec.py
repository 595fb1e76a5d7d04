"""``meshkit spec [-f FILE]``: print the Meshfile's validated spec as JSON.

The JSON is ``meshkit.dsl.convert.spec_to_json``: what ``meshkit up`` would
run, with every default filled in and every path absolute.  A Meshfile with
problems prints them on stderr and exits 1, as ``meshkit check`` does.
"""

from __future__ import annotations

from meshkit.cli.check import meshfile_command
from meshkit.dsl.convert import spec_to_json

add_parser, run = meshfile_command(
    "spec",
    summary="print the Meshfile's validated spec as JSON",
    description="Evaluate the Meshfile and print its spec as JSON.",
    report=lambda _meshfile, spec: spec_to_json(spec),
)
