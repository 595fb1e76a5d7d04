"""One Prometheus exposition for the whole mesh, from every sidecar's ``/metrics`` (pure).

Each sidecar's page is split into metric families (a ``# HELP``/``# TYPE``
pair and the samples after it); families of the same name from different
sidecars are merged under one header, as the exposition format requires, and
every sample gets the label ``instance="<instance id>"`` first, so a series
says which sidecar counted it.  Prometheus' own ``instance`` target label
would clash: scrape with ``honor_labels: true`` (as Prometheus' federation
does).  Lines that are neither comments nor samples are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

INSTANCE_LABEL = "instance"
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


@attrs.frozen(kw_only=True)
class Scrape:
    """One sidecar's ``/metrics`` page (``text`` None: it could not be read)."""

    instance: str
    text: str | None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def with_label(sample: str, name: str, value: str) -> str:
    """``sample`` with ``name="value"`` as its first label."""
    label = f'{name}="{_escape(value)}"'
    metric_end = len(sample)
    for index, char in enumerate(sample):
        if char in "{ ":
            metric_end = index
            break
    metric, rest = sample[:metric_end], sample[metric_end:]
    if rest.startswith("{}"):
        return f"{metric}{{{label}}}{rest[2:]}"
    if rest.startswith("{"):
        return f"{metric}{{{label},{rest[1:]}"
    return f"{metric}{{{label}}}{rest}"


def _family_of(metric: str, families: dict[str, list[str]]) -> str:
    if metric in families:
        return metric
    for suffix in _SUFFIXES:
        if metric.endswith(suffix) and metric[: -len(suffix)] in families:
            return metric[: -len(suffix)]
    return metric


def federate(scrapes: Iterable[Scrape]) -> str:
    """The merged exposition (text format 0.0.4) of every readable scrape."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    up: list[str] = []
    for scrape in scrapes:
        up.append(
            with_label(
                f"meshkit_sidecar_up {0 if scrape.text is None else 1}",
                INSTANCE_LABEL,
                scrape.instance,
            )
        )
        if scrape.text is None:
            continue
        current = ""
        for line in scrape.text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                parts = line.split(" ", 3)
                if len(parts) < 3:
                    continue
                current = parts[2]
                family = headers.setdefault(current, [])
                samples.setdefault(current, [])
                if not any(seen.split(" ", 3)[1] == parts[1] for seen in family):
                    family.append(line)
            elif line and not line.startswith("#"):
                metric = line.split("{", 1)[0].split(" ", 1)[0]
                name = (
                    current
                    if metric.startswith(current) and current
                    else _family_of(metric, headers)
                )
                samples.setdefault(name, []).append(
                    with_label(line, INSTANCE_LABEL, scrape.instance)
                )
    lines = [
        "# HELP meshkit_sidecar_up Whether the control plane could read the sidecar's /metrics.",
        "# TYPE meshkit_sidecar_up gauge",
        *up,
    ]
    for name, family_samples in samples.items():
        lines += headers.get(name, [])
        lines += family_samples
    return "\n".join(lines) + "\n"
