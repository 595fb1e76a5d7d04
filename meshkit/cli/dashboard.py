"""``meshkit dashboard [--print]``: open the running mesh's dashboard in a browser.

The address carries the mesh's token once (the page turns it into a cookie);
``--print`` only prints it, for a browser on another display or a script.
"""

from __future__ import annotations

import argparse
import sys
import webbrowser

from meshkit.observe.client import ObserveUnavailable, observe_base


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="open the dashboard of the mesh running from this directory",
        description="Open the live dashboard (service graph, faults, calls, traces) in a browser.",
    )
    parser.add_argument("--print", action="store_true", help="print the address, open nothing")


def run(args: argparse.Namespace) -> int:
    try:
        base, token = observe_base()
    except ObserveUnavailable as error:
        print(f"meshkit dashboard: {error}", file=sys.stderr)
        return 1
    url = f"{base}/?token={token}"
    print(url)
    if not args.print and not webbrowser.open(url):
        print("meshkit dashboard: no browser to open; open the address above", file=sys.stderr)
    return 0
