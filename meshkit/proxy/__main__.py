"""``python -m meshkit.proxy --instance ID --control PATH``: run one sidecar.

Started by the supervisor with ``MESHKIT_BOOTSTRAP_FD`` (an inherited pipe
holding a one-time token) and ``MESHKIT_IDENTITY`` (the SPIFFE ID to ask
for): the sidecar gets its certificate first, then subscribes to its config.
Without them it runs without identity (plaintext; only for configs without
identities, as in tests of the proxy alone).  The admin listener answers only
requests with the mesh's token, read from ``observe.token`` beside the control
socket (``meshkit.api.access``).  Exit status: 0 after SIGTERM or
SIGINT and the drain, 1 when it cannot get or keep its certificate.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from meshkit.api.access import TOKEN_FILE, read_token
from meshkit.api.control import ControlClient
from meshkit.proxy.identity import (
    IDENTITY_ENV,
    IdentityError,
    SidecarIdentity,
    read_bootstrap_token,
)
from meshkit.proxy.sidecar import Sidecar

log = logging.getLogger("meshkit.proxy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meshkit.proxy", description="A meshkit sidecar proxy."
    )
    parser.add_argument("--instance", required=True, help="the instance id this sidecar serves")
    parser.add_argument("--control", required=True, help="path to the control plane's control.sock")
    return parser


async def run_sidecar(
    *, instance: str, control_socket: str, token: str | None = None, spiffe_id: str = ""
) -> int:
    """Get a certificate (with ``token``), then serve until SIGTERM or SIGINT; the exit status."""
    control = ControlClient(socket_path=control_socket, instance=instance)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            stop_requested = trio.Event()

            async def watch_signals() -> None:
                async for signum in signals:
                    log.info("%s: received %s", instance, signal.Signals(signum).name)
                    stop_requested.set()
                    return

            nursery.start_soon(watch_signals)
            identity: SidecarIdentity | None = None
            if token is not None:
                identity = SidecarIdentity(spiffe_id=spiffe_id, control=control)
                with trio.CancelScope() as bootstrap_scope:
                    nursery.start_soon(_cancel_on, stop_requested, bootstrap_scope)
                    try:
                        await identity.bootstrap(token)
                    except IdentityError as error:
                        log.error("%s: %s", instance, error)
                        nursery.cancel_scope.cancel()
                        return 1
                if bootstrap_scope.cancelled_caught:
                    nursery.cancel_scope.cancel()
                    return 0
            admin_token = read_token(Path(control_socket).parent)
            if admin_token is None:
                log.warning(
                    "%s: no %s beside %s: the admin listener answers no request",
                    instance,
                    TOKEN_FILE,
                    control_socket,
                )
            sidecar = Sidecar(
                instance=instance, control=control, identity=identity, admin_token=admin_token
            )

            async def stop_on_signal() -> None:
                await stop_requested.wait()
                sidecar.shutdown()

            nursery.start_soon(stop_on_signal)
            await sidecar.run()
            nursery.cancel_scope.cancel()
    return sidecar.exit_status


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    try:
        token = read_bootstrap_token(os.environ)
    except IdentityError as error:
        log.error("%s: %s", args.instance, error)
        return 1
    spiffe_id = os.environ.get(IDENTITY_ENV, "")
    if token is not None and not spiffe_id:
        log.error(
            "%s: %s is set but %s is not", args.instance, "MESHKIT_BOOTSTRAP_FD", IDENTITY_ENV
        )
        return 1
    return trio.run(
        lambda: run_sidecar(
            instance=args.instance, control_socket=args.control, token=token, spiffe_id=spiffe_id
        )
    )


if __name__ == "__main__":
    sys.exit(main())
