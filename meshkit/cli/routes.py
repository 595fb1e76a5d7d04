"""``meshkit routes INSTANCE [--json]``: the config a sidecar applied, as it applied it.

Shows the version the sidecar acknowledged, whether it is in sync with the
newest published for it (SYNCED / STALE / NACKED and the reason), its
listeners, the endpoints of each cluster, and the route table of each
destination service.  ``--json`` prints the whole applied ``ProxyConfig``.
``INSTANCE`` is an id from ``meshkit status`` (``catalog-v1-0``, ``gateway``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from meshkit.cli.control import ask


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "routes",
        help="print the config a sidecar applied (listeners, clusters, routes)",
        description="Print the config the sidecar of INSTANCE acknowledged as applied.",
    )
    parser.add_argument("instance", metavar="INSTANCE", help="an instance id, or 'gateway'")
    parser.add_argument("--json", action="store_true", help="print the applied config as JSON")


def _describe_rule(rule: dict[str, Any]) -> str:
    match = rule.get("match") or {}
    conditions = []
    if match.get("path_kind", "any") != "any":
        conditions.append(f"path {match.get('path_kind')} {match.get('path')!r}")
    if match.get("methods"):
        conditions.append("methods " + ",".join(match["methods"]))
    for header in match.get("headers", []):
        conditions.append(
            f"header {header.get('name')} {header.get('kind')} {header.get('value')!r}"
        )
    for query in match.get("query", []):
        conditions.append(f"query {query.get('name')} {query.get('kind')} {query.get('value')!r}")
    action = rule.get("action") or {}
    if action.get("kind") == "forward":
        target = " ".join(
            f"{version.get('version') or '*'}={version.get('weight')}"
            for version in action.get("versions", [])
        )
    else:
        target = f"{action.get('kind')} {action.get('status', '')}".strip()
    when = " and ".join(conditions) if conditions else "any request"
    return f"{when} -> {target} (timeout {rule.get('timeout')}s)"


def format_routes(answer: dict[str, Any]) -> str:
    lines = [
        f"instance {answer.get('instance')}: applied version {answer.get('version')}, "
        f"published {answer.get('published_version')}, {answer.get('sync')}"
    ]
    config = answer.get("config")
    if config is None:
        lines.append("(this sidecar has not applied a config yet)")
        return "\n".join(lines)
    lines.append("listeners:")
    bound = answer.get("bound_ports") or {}
    for listener in config.get("listeners", []):
        port = listener.get("port") or bound.get(listener.get("name"), "(unbound)")
        where = f"{listener.get('host')}:{port}"
        extra = f" -> {listener['cluster']}" if listener.get("cluster") else ""
        lines.append(f"  {listener.get('name')} ({listener.get('kind')}) {where}{extra}")
        for route in listener.get("routes", []):
            lines.append(f"    prefix {route.get('prefix')} -> {route.get('cluster')}")
    lines.append("clusters:")
    for cluster in config.get("clusters", []):
        endpoints = ", ".join(
            f"{ep.get('instance')}@{ep.get('port')}" for ep in cluster.get("endpoints", [])
        )
        lines.append(f"  {cluster.get('name')}: {endpoints or '(no healthy endpoint)'}")
    lines.append("routes:")
    for table in config.get("routes", []):
        lines.append(f"  {table.get('service')}:")
        for rule in table.get("rules", []):
            lines.append(f"    {_describe_rule(rule)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    answer = ask("GET", f"/v1/instances/{quote(args.instance, safe='')}/config")
    if answer is None:
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(format_routes(answer))
    return 0
