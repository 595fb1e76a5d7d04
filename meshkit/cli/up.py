"""``meshkit up [-f FILE] [SERVICE ...] [--grace SECONDS]``: run the mesh in the foreground.

Evaluates the Meshfile (its problems are printed, exit 1), then runs the mesh
until Ctrl-C, SIGTERM or ``meshkit down``.  State lives in ``.meshkit/`` of
the current directory; apps run in the Meshfile's directory unless their
service says otherwise.

Options for test harnesses (``meshkit.testing`` uses them): ``--gateway-port``
and ``--gateway-tls-port`` override the Meshfile's gateway ports (0: the
system picks a free one; ``--gateway-tls-port`` adds HTTPS to a gateway
declared without ``tls_port``; either is an error when the Meshfile has no
gateway); ``--ingress`` adds the test ingress (see
``meshkit.runtime.ingress``); ``--exit-with-parent`` stops the mesh, as
SIGTERM would, once standard input reaches end of file, which happens when
the process holding its other end dies, even by SIGKILL.

Hot reload: the Meshfile, the modules it imports and every service's
``watch`` paths are watched, and edits are applied while the mesh runs
(``meshkit.runtime.reload``); ``--no-watch`` turns that off (CI), and
``meshkit reload`` re-reads the Meshfile on demand either way.  The service
selection and the options above are applied to every re-read Meshfile too
(``UpOptions.spec_transform``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from meshkit.cli import early
from meshkit.dsl.evaluate.evaluation import evaluate, find_meshfile
from meshkit.dsl.spec import MeshSpec
from meshkit.proxy.telemetry.accesslog import FORMAT_VARIABLE as ACCESS_LOG_FORMAT_VARIABLE
from meshkit.runtime.ingress import IngressError, with_test_ingress
from meshkit.runtime.lineage import Owners
from meshkit.runtime.mesh import EXIT_FAILED, EXIT_SIGINT, UpOptions, run_mesh
from meshkit.runtime.policy.plan import PlanError, restrict_spec
from meshkit.runtime.reload import SpecTransformError
from meshkit.runtime.template_start import StartedTemplate, start_template

STATE_DIRECTORY = ".meshkit"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start every service of the Meshfile behind its sidecar, in the foreground",
        description="Start the mesh of a Meshfile and run it until Ctrl-C or 'meshkit down'.",
    )
    parser.add_argument("-f", "--file", default=None, help="the Meshfile (default: ./Meshfile.py)")
    parser.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help="start only these services (and the services they depend on)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long a process may take to exit after SIGTERM before SIGKILL (default 10)",
    )
    parser.add_argument(
        "--gateway-port",
        type=int,
        default=None,
        metavar="PORT",
        help="listen on PORT instead of the Meshfile's gateway port (0: any free port)",
    )
    parser.add_argument(
        "--gateway-tls-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the gateway's HTTPS on PORT, also when the Meshfile has no tls_port (0: any)",
    )
    parser.add_argument(
        "--ingress",
        action="store_true",
        help="add a test ingress: one plaintext loopback port per service, into the mesh",
    )
    parser.add_argument(
        "--no-watch",
        action="store_true",
        help="do not watch the Meshfile and sources for changes ('meshkit reload' still works)",
    )
    parser.add_argument(
        "--observe-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve the dashboard and the mesh's Prometheus endpoint on PORT (default: any free)",
    )
    parser.add_argument(
        "--otlp",
        default=None,
        metavar="URL",
        help="also export spans over OTLP/HTTP to URL (http://host:4318/v1/traces)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="show every request's access-log line on the terminal (always in .meshkit/logs/)",
    )
    parser.add_argument(
        "--access-log-format",
        choices=("text", "json"),
        default="text",
        help="access-log lines as text (default) or one JSON object per line",
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop the mesh when standard input closes (its parent died or let go of it)",
    )


def override_gateway_ports(spec: MeshSpec, *, port: int | None, tls_port: int | None) -> MeshSpec:
    """``spec`` with its gateway on other ports; ``tls_port`` adds HTTPS if it had none.

    ``SpecTransformError`` when a port is given and the Meshfile has no gateway.
    """
    gateway = spec.gateway
    if port is None and tls_port is None:
        return spec
    if gateway is None:
        option = "--gateway-port" if port is not None else "--gateway-tls-port"
        raise SpecTransformError(
            f"{option} was given but {spec.file} declares no gateway; "
            "add mesh.gateway(...) or drop the option"
        )
    if port is not None:
        gateway = attrs.evolve(gateway, port=port)
    if tls_port is not None:
        gateway = attrs.evolve(gateway, tls_port=tls_port)
    return attrs.evolve(spec, gateway=gateway)


def spec_transform_for(args: argparse.Namespace) -> Callable[[MeshSpec], MeshSpec]:
    """What ``meshkit up``'s options do to a spec, for the first and every reloaded one."""
    services = tuple(args.services)

    def transform(spec: MeshSpec) -> MeshSpec:
        try:
            spec = restrict_spec(spec, services)
        except PlanError as exc:
            raise SpecTransformError(str(exc)) from None
        spec = override_gateway_ports(spec, port=args.gateway_port, tls_port=args.gateway_tls_port)
        if args.ingress:
            try:
                spec = with_test_ingress(spec)
            except IngressError as exc:
                raise SpecTransformError(str(exc)) from None
        return spec

    return transform


async def _stop_when_stdin_closes() -> None:
    """Wait for end of file on stdin, then stop the mesh the way SIGTERM does."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        try:
            while await stream.receive_some(4096):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    print("meshkit: standard input closed (--exit-with-parent): stopping", file=sys.stderr)
    os.kill(os.getpid(), signal.SIGTERM)


async def _run_mesh_with_parent(spec: MeshSpec, options: UpOptions) -> int:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_when_stdin_closes)
        code = await run_mesh(spec, options)
        nursery.cancel_scope.cancel()
    return code


def run(args: argparse.Namespace) -> int:
    try:
        meshfile = Path(find_meshfile(args.file))
    except (OSError, ValueError) as exc:
        print(f"meshkit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    # The sidecar template imports while the Meshfile is evaluated (and, when
    # ``meshkit.cli.main`` started it, while this module was imported).
    template = early.take() or start_template(Owners())
    try:
        return _evaluate_and_run(args, meshfile, template)
    finally:
        if template is not None:
            template.abandon()


def _evaluate_and_run(
    args: argparse.Namespace, meshfile: Path, template: StartedTemplate | None
) -> int:
    result = evaluate(meshfile)
    if not result.ok or result.spec is None:
        for problem in result.problems:
            print(problem, file=sys.stderr)
        print(f"meshkit: {meshfile} has problems; nothing was started", file=sys.stderr)
        return EXIT_FAILED
    transform = spec_transform_for(args)
    try:
        transform(result.spec)
    except SpecTransformError as exc:
        print(f"meshkit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    options = UpOptions(
        state_dir=Path.cwd() / STATE_DIRECTORY,
        base_dir=meshfile.resolve().parent,
        meshfile=str(meshfile),
        grace=args.grace,
        spec_transform=transform,
        watch=not args.no_watch,
        files=result.files,
        observe_port=args.observe_port,
        otlp_url=args.otlp,
        show_access=args.access_log,
        template=template,
    )
    os.environ[ACCESS_LOG_FORMAT_VARIABLE] = args.access_log_format
    runner = _run_mesh_with_parent if args.exit_with_parent else run_mesh
    try:
        return trio.run(runner, result.spec, options)
    except KeyboardInterrupt:
        return EXIT_SIGINT
