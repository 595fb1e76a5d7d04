"""Medians over rounds, the table, the issue's targets and the JSON file.

A round of one setup is a ``SetupSample``.  ``summarise`` takes the median of
every number over the rounds of a setup; ``render_table`` prints one row per
setup with ratios to the nginx pair and to the direct path; ``check_targets``
says, for each proxied setup, whether each target of the issue is met and by
how much it is missed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import attrs

from .load import Latencies, Saturation

MIB = 1024 * 1024

# The targets of issue 17 for the hop (memory is measured by memory.py as PSS).
TARGET_THROUGHPUT_VS_NGINX = 0.40
TARGET_VCPU_PER_1K = 0.20
TARGET_ADDED_P90_MS = 1.0
TARGET_ADDED_ONE_CONNECTION_MS = 0.4
TARGET_H2_VS_H1 = 0.50
# "Flat": RSS after the load grows by no more than this over RSS after the warm-up.
FLAT_RSS_GROWTH_BYTES = 2 * MIB


@attrs.frozen(kw_only=True)
class ProxySample:
    """One proxy of a setup in one round: CPU per 1000 req/s of the paced run, RSS."""

    role: str
    vcpu_per_1k_rps: float
    rss_after_warm_up_bytes: int
    rss_after_load_bytes: int


@attrs.frozen(kw_only=True)
class SetupSample:
    setup: str
    round: int
    saturation: Saturation
    paced: Latencies
    one_connection: Latencies
    proxies: tuple[ProxySample, ...]
    # The control plane's CPU during the paced run, per 1000 req/s (meshkit only: it shares
    # the machine with the sidecars, ingesting their spans and answering their polls).
    control_plane_vcpu_per_1k_rps: float | None = None


@attrs.frozen(kw_only=True)
class ProxySummary:
    role: str
    vcpu_per_1k_rps: float
    rss_bytes: float
    worst_rss_growth_bytes: int
    peak_rss_bytes: int


@attrs.frozen(kw_only=True)
class SetupSummary:
    """Medians over the rounds of one setup; ``errors`` is a total."""

    setup: str
    rounds: int
    max_rps: float
    paced_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    one_connection_p50_ms: float
    errors: int
    proxies: tuple[ProxySummary, ...]
    control_plane_vcpu_per_1k_rps: float | None = None

    def worst_vcpu_per_1k_rps(self) -> float | None:
        return max((proxy.vcpu_per_1k_rps for proxy in self.proxies), default=None)


def summarise(samples: Sequence[SetupSample]) -> SetupSummary:
    if not samples:
        raise ValueError("no samples to summarise")
    roles = [proxy.role for proxy in samples[0].proxies]
    proxies = []
    for role in roles:
        of_role = [p for sample in samples for p in sample.proxies if p.role == role]
        proxies.append(
            ProxySummary(
                role=role,
                vcpu_per_1k_rps=statistics.median(p.vcpu_per_1k_rps for p in of_role),
                rss_bytes=statistics.median(p.rss_after_load_bytes for p in of_role),
                worst_rss_growth_bytes=max(
                    p.rss_after_load_bytes - p.rss_after_warm_up_bytes for p in of_role
                ),
                peak_rss_bytes=max(p.rss_after_load_bytes for p in of_role),
            )
        )
    return SetupSummary(
        setup=samples[0].setup,
        rounds=len(samples),
        max_rps=statistics.median(s.saturation.requests_per_second for s in samples),
        paced_rps=statistics.median(s.paced.requests_per_second for s in samples),
        p50_ms=statistics.median(s.paced.p50_ms for s in samples),
        p90_ms=statistics.median(s.paced.p90_ms for s in samples),
        p99_ms=statistics.median(s.paced.p99_ms for s in samples),
        one_connection_p50_ms=statistics.median(s.one_connection.p50_ms for s in samples),
        errors=sum(s.saturation.errors + s.paced.failed + s.one_connection.failed for s in samples),
        proxies=tuple(proxies),
        control_plane_vcpu_per_1k_rps=_median_or_none(
            [s.control_plane_vcpu_per_1k_rps for s in samples]
        ),
    )


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def _per_proxy(summary: SetupSummary, value: str) -> str:
    if not summary.proxies:
        return "-"
    if value == "cpu":
        return "/".join(f"{proxy.vcpu_per_1k_rps:.3f}" for proxy in summary.proxies)
    return "/".join(f"{proxy.rss_bytes / MIB:.1f}" for proxy in summary.proxies)


def render_table(summaries: Sequence[SetupSummary], *, rate: float) -> str:
    """One row per setup; per-proxy columns read outbound/inbound."""
    by_name = {summary.setup: summary for summary in summaries}
    nginx = by_name.get("nginx")
    direct = by_name.get("direct")
    headers = [
        "setup",
        "max req/s",
        f"p50 ms@{rate:g}",
        f"p90 ms@{rate:g}",
        f"p99 ms@{rate:g}",
        "1-conn p50 ms",
        "vCPU/1k req/s out/in",
        "RSS MiB out/in",
        "control plane vCPU/1k",
        "thr vs nginx",
        "+p90 vs direct",
        "+1-conn vs direct",
        "errors",
    ]
    rows = []
    for summary in summaries:
        rows.append(
            [
                summary.setup,
                f"{summary.max_rps:,.0f}",
                f"{summary.p50_ms:.3f}",
                f"{summary.p90_ms:.3f}",
                f"{summary.p99_ms:.3f}",
                f"{summary.one_connection_p50_ms:.3f}",
                _per_proxy(summary, "cpu"),
                _per_proxy(summary, "rss"),
                "-"
                if summary.control_plane_vcpu_per_1k_rps is None
                else f"{summary.control_plane_vcpu_per_1k_rps:.3f}",
                "-" if nginx is None else f"{summary.max_rps / nginx.max_rps:.1%}",
                "-" if direct is None else f"{summary.p90_ms - direct.p90_ms:+.3f} ms",
                "-"
                if direct is None
                else f"{summary.one_connection_p50_ms - direct.one_connection_p50_ms:+.3f} ms",
                str(summary.errors),
            ]
        )
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines.extend(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
    return "\n".join(lines)


@attrs.frozen(kw_only=True)
class TargetCheck:
    setup: str
    target: str
    met: bool | None
    detail: str

    def line(self) -> str:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        return f"{self.setup:>10}  {self.target:<44} {verdict:<12} {self.detail}"


def _at_most(setup: str, target: str, value: float, limit: float, unit: str) -> TargetCheck:
    if value <= limit:
        return TargetCheck(
            setup=setup, target=target, met=True, detail=f"{value:.3f} {unit} <= {limit:g} {unit}"
        )
    return TargetCheck(
        setup=setup,
        target=target,
        met=False,
        detail=f"{value:.3f} {unit} > {limit:g} {unit}: over by {value - limit:.3f} {unit}",
    )


def check_targets(summaries: Sequence[SetupSummary]) -> list[TargetCheck]:
    """The issue's hop targets, for every setup with proxies (meshkit; nginx and the
    trio floor for scale)."""
    by_name = {summary.setup: summary for summary in summaries}
    nginx = by_name.get("nginx")
    direct = by_name.get("direct")
    checks: list[TargetCheck] = []
    for summary in summaries:
        if not summary.proxies:
            continue
        name = summary.setup
        target = f"throughput >= {TARGET_THROUGHPUT_VS_NGINX:.0%} of nginx pair"
        if nginx is None:
            checks.append(
                TargetCheck(
                    setup=name,
                    target=target,
                    met=None,
                    detail="run with the nginx setup to compare",
                )
            )
        else:
            ratio = summary.max_rps / nginx.max_rps
            met = ratio >= TARGET_THROUGHPUT_VS_NGINX
            shortfall = (
                ""
                if met
                else (
                    f": short by {TARGET_THROUGHPUT_VS_NGINX - ratio:.1%} points "
                    f"({TARGET_THROUGHPUT_VS_NGINX * nginx.max_rps - summary.max_rps:,.0f} req/s)"
                )
            )
            checks.append(
                TargetCheck(
                    setup=name,
                    target=target,
                    met=met,
                    detail=f"{ratio:.1%} of {nginx.max_rps:,.0f} req/s{shortfall}",
                )
            )
        worst_cpu = summary.worst_vcpu_per_1k_rps()
        assert worst_cpu is not None
        checks.append(
            _at_most(
                name,
                f"<= {TARGET_VCPU_PER_1K} vCPU per proxy per 1000 req/s",
                worst_cpu,
                TARGET_VCPU_PER_1K,
                "vCPU",
            )
        )
        target = f"added p90 at paced rate <= {TARGET_ADDED_P90_MS:g} ms"
        if direct is None:
            checks.append(
                TargetCheck(
                    setup=name,
                    target=target,
                    met=None,
                    detail="run with the direct setup to compare",
                )
            )
        else:
            checks.append(
                _at_most(name, target, summary.p90_ms - direct.p90_ms, TARGET_ADDED_P90_MS, "ms")
            )
        growth = max(proxy.worst_rss_growth_bytes for proxy in summary.proxies)
        flat = growth <= FLAT_RSS_GROWTH_BYTES
        checks.append(
            TargetCheck(
                setup=name,
                target=f"RSS flat (grows <= {FLAT_RSS_GROWTH_BYTES / MIB:g} MiB under load)",
                met=flat,
                detail=f"worst growth {growth / MIB:+.2f} MiB",
            )
        )
        target = f"added 1-connection latency <= {TARGET_ADDED_ONE_CONNECTION_MS:g} ms"
        if direct is None:
            checks.append(
                TargetCheck(
                    setup=name,
                    target=target,
                    met=None,
                    detail="run with the direct setup to compare",
                )
            )
        else:
            checks.append(
                _at_most(
                    name,
                    target,
                    summary.one_connection_p50_ms - direct.one_connection_p50_ms,
                    TARGET_ADDED_ONE_CONNECTION_MS,
                    "ms",
                )
            )
    return checks


def check_http2_share(
    summaries: Sequence[SetupSummary], *, h1_meshkit_rps: float | None
) -> list[TargetCheck]:
    """HTTP/2 through the hop at >= 50 % of the HTTP/1.1 figure: the ``meshkit-h2hop``
    setup against ``meshkit`` in the same run, and, for a run with HTTP/2 clients,
    ``meshkit`` against ``h1_meshkit_rps`` (meshkit's saturation in an HTTP/1.1 run)."""
    by_name = {summary.setup: summary for summary in summaries}
    pairs: list[tuple[str, float, float]] = []
    if "meshkit" in by_name and "meshkit-h2hop" in by_name:
        h2hop, h1hop = by_name["meshkit-h2hop"], by_name["meshkit"]
        pairs.append(("meshkit-h2hop", h2hop.max_rps, h1hop.max_rps))
    if h1_meshkit_rps is not None and "meshkit" in by_name:
        pairs.append(("meshkit", by_name["meshkit"].max_rps, h1_meshkit_rps))
    checks = []
    for setup, h2_rps, h1_rps in pairs:
        ratio = h2_rps / max(h1_rps, 1e-9)
        met = ratio >= TARGET_H2_VS_H1
        short = "" if met else f": short by {TARGET_H2_VS_H1 - ratio:.1%} points"
        checks.append(
            TargetCheck(
                setup=setup,
                target=f"HTTP/2 >= {TARGET_H2_VS_H1:.0%} of the HTTP/1.1 saturation",
                met=met,
                detail=f"{h2_rps:,.0f} / {h1_rps:,.0f} req/s = {ratio:.1%}{short}",
            )
        )
    return checks


def to_json(
    *,
    settings: dict[str, Any],
    machine: dict[str, Any],
    samples: Sequence[SetupSample],
    summaries: Sequence[SetupSummary],
    checks: Sequence[TargetCheck],
) -> dict[str, Any]:
    return {
        "settings": settings,
        "machine": machine,
        "samples": [attrs.asdict(sample) for sample in samples],
        "medians": [attrs.asdict(summary) for summary in summaries],
        "targets": [attrs.asdict(check) for check in checks],
    }
