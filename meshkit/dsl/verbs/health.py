"""The Meshfile's health checks and restart policy: ``http_get``, ``tcp_connect``,
``restart_policy`` (Kubernetes' ``httpGet`` / ``tcpSocket`` probes and knobs).

Each returns the spec itself (``HealthCheck``, ``RestartPolicy``), and reports
its type mistakes at the user's line at once.
"""

from __future__ import annotations

from typing import get_args

import attrs

from meshkit.dsl.evaluate.userframes import caller_origin
from meshkit.dsl.spec import HealthCheck, RestartMode, RestartPolicy
from meshkit.dsl.verbs.collect import report
from meshkit.dsl.verbs.reader import ArgumentReader, Duration

RESTART_MODES: tuple[str, ...] = get_args(RestartMode)


def restart_mode(mode: str) -> RestartPolicy:
    if mode == "no":
        return RestartPolicy(mode="no")
    if mode == "on_failure":
        return RestartPolicy(mode="on_failure")
    return RestartPolicy(mode="always")


def _health_check(
    reader: ArgumentReader,
    *,
    kind: str,
    path: object,
    period: object,
    timeout: object,
    initial_delay: object,
    success_threshold: object,
    failure_threshold: object,
) -> HealthCheck:
    defaults = HealthCheck()
    check = HealthCheck(
        kind="tcp" if kind == "tcp" else "http",
        path=reader.text("path", path, fallback="/"),
        period=reader.duration("period", period, fallback=defaults.period),
        timeout=reader.duration("timeout", timeout, fallback=defaults.timeout),
        initial_delay=reader.duration("initial_delay", initial_delay, fallback=0.0),
        success_threshold=reader.integer(
            "success_threshold", success_threshold, fallback=defaults.success_threshold
        ),
        failure_threshold=reader.integer(
            "failure_threshold", failure_threshold, fallback=defaults.failure_threshold
        ),
    )
    report(reader.problems)
    return check


def http_get(
    path: str = "/",
    *,
    period: Duration = "1s",
    timeout: Duration = "1s",
    initial_delay: Duration = 0,
    success_threshold: int = 1,
    failure_threshold: int = 3,
) -> HealthCheck:
    """An HTTP health check: ``GET path`` on the app's port; 2xx and 3xx are healthy."""
    return _health_check(
        ArgumentReader(origin=caller_origin(), subject="http_get(...)"),
        kind="http",
        path=path,
        period=period,
        timeout=timeout,
        initial_delay=initial_delay,
        success_threshold=success_threshold,
        failure_threshold=failure_threshold,
    )


def tcp_connect(
    *,
    period: Duration = "1s",
    timeout: Duration = "1s",
    initial_delay: Duration = 0,
    success_threshold: int = 1,
    failure_threshold: int = 3,
) -> HealthCheck:
    """A TCP health check: a connect to the app's port that succeeds is healthy."""
    return _health_check(
        ArgumentReader(origin=caller_origin(), subject="tcp_connect(...)"),
        kind="tcp",
        path="/",
        period=period,
        timeout=timeout,
        initial_delay=initial_delay,
        success_threshold=success_threshold,
        failure_threshold=failure_threshold,
    )


def restart_policy(
    mode: RestartMode = "always",
    *,
    backoff: Duration = "500ms",
    max_backoff: Duration = "30s",
    reset_after: Duration = "10s",
) -> RestartPolicy:
    """When a stopped app is started again (``"always"``, ``"on_failure"``, ``"no"``).

    The wait before a restart starts at ``backoff``, doubles up to
    ``max_backoff``, and starts over once the app has stayed up ``reset_after``.
    """
    reader = ArgumentReader(origin=caller_origin(), subject="restart_policy(...)")
    defaults = RestartPolicy()
    chosen = reader.choice("mode", mode, RESTART_MODES)
    base = RestartPolicy() if chosen is None else restart_mode(chosen)
    policy = attrs.evolve(
        base,
        backoff_initial=reader.duration("backoff", backoff, fallback=defaults.backoff_initial),
        backoff_max=reader.duration("max_backoff", max_backoff, fallback=defaults.backoff_max),
        reset_after=reader.duration("reset_after", reset_after, fallback=defaults.reset_after),
    )
    report(reader.problems)
    return policy
