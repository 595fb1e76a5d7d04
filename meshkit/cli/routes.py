"""``meshkit routes [INSTANCE | SERVICE] [--json]``: the config a sidecar applied.

Shows the version the sidecar acknowledged, whether it is in sync with the
newest published for it (SYNCED / STALE / NACKED and the reason), its
listeners with the transport each accepts (``mtls``, ``mtls or plaintext``,
``https``, ``plaintext``), the endpoints of each cluster, and the route table
of each destination service with each rule's timeout and retry policy.
``--json`` prints the applied ``ProxyConfig`` with a ``transport`` on every
listener (its ``tls`` flag only means something on a gateway listener, so it
is shown there only).  ``INSTANCE`` is an id from ``meshkit status``
(``catalog-v1-0``, ``gateway``); with a service name or nothing, the
instances there are to show are listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from meshkit.cli.control import ask
from meshkit.cli.status import format_table


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "routes",
        help="print the config a sidecar applied (listeners, clusters, routes)",
        description="Print the config the sidecar of INSTANCE acknowledged as applied.",
    )
    parser.add_argument(
        "instance",
        metavar="INSTANCE",
        nargs="?",
        help="an instance id or 'gateway' (a service name or nothing: list the instances)",
    )
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
    return f"{when} -> {target} (timeout {rule.get('timeout')}s, {_describe_retry(rule)})"


def _describe_retry(rule: dict[str, Any]) -> str:
    retry = rule.get("retry")
    if not retry:
        return "no retry"
    on = ",".join([*retry.get("retry_on", []), *map(str, retry.get("status_codes", []))])
    text = f"retry {retry.get('attempts')}x on {on or 'nothing'}"
    if retry.get("per_try_timeout"):
        text += f" per try {retry['per_try_timeout']}s"
    if retry.get("retry_non_idempotent"):
        text += " any method"
    return text


def listener_transport(listener: dict[str, Any], config: dict[str, Any]) -> str:
    """What a listener accepts: inbound ports take mTLS (and plaintext when permissive)."""
    kind = listener.get("kind")
    if kind == "inbound" and config.get("identity"):
        return "mtls" if config.get("mtls") == "strict" else "mtls or plaintext"
    if kind == "gateway" and listener.get("tls"):
        return "https"
    return "plaintext"


def with_transports(answer: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` answer: each listener says its ``transport``."""
    config = answer.get("config")
    if config is None:
        return answer
    listeners = []
    for listener in config.get("listeners", []):
        shown = {key: value for key, value in listener.items() if key != "tls"}
        if listener.get("kind") == "gateway":
            shown["tls"] = listener.get("tls", False)
        shown["transport"] = listener_transport(listener, config)
        listeners.append(shown)
    return {**answer, "config": {**config, "listeners": listeners}}


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
        kind = f"{listener.get('kind')}, {listener_transport(listener, config)}"
        lines.append(f"  {listener.get('name')} ({kind}) {where}{extra}")
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


def showable_instances(status: dict[str, Any], service: str | None = None) -> list[list[str]]:
    """Rows (instance, service, version, state) of the sidecars ``routes`` can show."""
    rows = [["gateway", "gateway", "-", "-"]] if status.get("gateways") and not service else []
    for group in status.get("services", []):
        if service is not None and group.get("name") != service:
            continue
        for instance in group.get("instances", []):
            rows.append(
                [
                    str(instance.get("id")),
                    str(group.get("name")),
                    str(group.get("version") or "-"),
                    str(instance.get("state")),
                ]
            )
    return rows


def _known_instance(status: dict[str, Any], name: str) -> bool:
    if name == "gateway":
        return bool(status.get("gateways"))
    return any(
        name in (instance.get("id"), instance.get("name"))
        for group in status.get("services", [])
        for instance in group.get("instances", [])
    )


def _print_instances(rows: list[list[str]], *, as_json: bool, heading: str) -> None:
    columns = ["INSTANCE", "SERVICE", "VERSION", "STATE"]
    if as_json:
        keys = [column.lower() for column in columns]
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
        return
    print(heading)
    print("\n".join(format_table([columns, *rows])))


def run(args: argparse.Namespace) -> int:
    status = ask("GET", "/v1/status", command="meshkit routes")
    if status is None:
        return 1
    name: str | None = args.instance
    if name is None or not _known_instance(status, name):
        rows = showable_instances(status, name)
        if name is not None and not rows:
            names = sorted({str(group.get("name")) for group in status.get("services", [])})
            print(
                f"meshkit routes: no instance or service called {name!r} "
                f"(services: {', '.join(names) or 'none'}; 'meshkit routes' lists the instances)",
                file=sys.stderr,
            )
            return 1
        what = "every sidecar" if name is None else f"the instances of {name}"
        _print_instances(rows, as_json=args.json, heading=f"meshkit routes INSTANCE shows {what}:")
        return 0
    answer = ask("GET", f"/v1/instances/{quote(name, safe='')}/config")
    if answer is None:
        return 1
    if args.json:
        print(json.dumps(with_transports(answer), indent=2))
    else:
        print(format_routes(answer))
    return 0
