"""``python -m meshkit.proxy --instance ID --control PATH``: run one sidecar."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from meshkit.proxy.control import ControlClient
from meshkit.proxy.sidecar import Sidecar


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meshkit.proxy", description="A meshkit sidecar proxy."
    )
    parser.add_argument("--instance", required=True, help="the instance id this sidecar serves")
    parser.add_argument("--control", required=True, help="path to the control plane's control.sock")
    return parser


async def run_sidecar(*, instance: str, control_socket: str) -> None:
    """Run until SIGTERM or SIGINT, then drain and return."""
    sidecar = Sidecar(
        instance=instance, control=ControlClient(socket_path=control_socket, instance=instance)
    )
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    logging.getLogger("meshkit.proxy").info(
                        "%s: received %s", instance, signal.Signals(signum).name
                    )
                    sidecar.shutdown()
                    return

            nursery.start_soon(stop_on_signal)
            await sidecar.run()
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    trio.run(lambda: run_sidecar(instance=args.instance, control_socket=args.control))
    return 0


if __name__ == "__main__":
    sys.exit(main())
