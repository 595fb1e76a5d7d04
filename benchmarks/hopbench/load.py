"""Driving a URL with ``wrk`` and ``h2load --h1`` and reading what they report.

- saturation: ``wrk -t1 -c16 -d<s>s``, the highest request rate and its errors;
- paced: ``h2load --h1 -c16 -r1 --rate-period <1/rate> --rps <rate/16>
  -n <rate*s> --log-file`` (see ``paced`` for why not ``-D``); h2load 1.52
  prints no percentiles, so they are computed from its per-request log (the
  third column is the request's time in microseconds);
- one connection: ``h2load --h1 -c1 -n<N>``, N sequential requests on one
  keep-alive connection, percentiles from the same kind of log.

With ``h2=True`` the client speaks HTTP/2 (h2c, prior knowledge): the same
h2load runs without ``--h1`` (one stream at a time per connection), and
saturation is ``h2load -c16 -m10 -D<s>`` (16 connections, 10 streams each)
since wrk speaks only HTTP/1.1.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import attrs

from .procs import BenchError

PACED_CLIENTS = 16
SATURATION_CONNECTIONS = 16


@attrs.frozen(kw_only=True)
class Saturation:
    requests_per_second: float
    errors: int


@attrs.frozen(kw_only=True)
class Latencies:
    """Request times in milliseconds, and how many requests were made and failed."""

    requests: int
    failed: int
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of sorted values."""
    if not sorted_values:
        raise ValueError("no values to take a percentile of")
    position = (len(sorted_values) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


def _run(argv: list[str], *, timeout: float) -> str:
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from error
    if completed.returncode != 0:
        raise BenchError(
            f"{' '.join(argv)} failed with status {completed.returncode}:\n"
            f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
        )
    return completed.stdout


def parse_wrk(output: str) -> Saturation:
    """Requests/sec, plus socket errors and non-2xx/3xx responses, from wrk's summary."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rate is None:
        raise BenchError(f"wrk printed no 'Requests/sec:' line:\n{output}")
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors is not None:
        errors += sum(int(count) for count in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx is not None:
        errors += int(non_2xx.group(1))
    return Saturation(requests_per_second=float(rate.group(1)), errors=errors)


def parse_h2load_log(text: str) -> tuple[list[float], int]:
    """Request times in ms of successful (2xx) requests, and the count of the others."""
    times: list[float] = []
    failed = 0
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        status = int(fields[1])
        if 200 <= status < 300:
            times.append(int(fields[2]) / 1000.0)
        else:
            failed += 1
    return times, failed


def parse_h2load_rate(output: str) -> float:
    finished = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    if finished is None:
        raise BenchError(f"h2load printed no 'finished in' line:\n{output}")
    return float(finished.group(1))


def _h2load_failures(output: str) -> int:
    summary = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", output)
    return 0 if summary is None else sum(int(count) for count in summary.groups())


def _latencies(argv: list[str], log_path: Path, *, timeout: float) -> Latencies:
    log_path.unlink(missing_ok=True)  # h2load appends to an existing log
    output = _run([*argv, f"--log-file={log_path}"], timeout=timeout)
    times, failed_in_log = parse_h2load_log(log_path.read_text())
    if not times:
        raise BenchError(f"{' '.join(argv)} completed no successful request:\n{output}")
    times.sort()
    return Latencies(
        requests=len(times) + failed_in_log,
        failed=max(failed_in_log, _h2load_failures(output)),
        requests_per_second=parse_h2load_rate(output),
        p50_ms=percentile(times, 0.50),
        p90_ms=percentile(times, 0.90),
        p99_ms=percentile(times, 0.99),
        mean_ms=sum(times) / len(times),
    )


def saturate(url: str, *, duration: float) -> Saturation:
    """wrk with one thread and 16 connections for ``duration`` seconds."""
    argv = ["wrk", "-t1", f"-c{SATURATION_CONNECTIONS}", f"-d{round(duration)}s", url]
    return parse_wrk(_run(argv, timeout=duration + 30))


def _protocol_flags(h2: bool) -> list[str]:
    return [] if h2 else ["--h1"]


def saturate_h2(url: str, *, duration: float) -> Saturation:
    """h2load over 16 HTTP/2 connections of 10 concurrent streams for ``duration`` seconds."""
    argv = ["h2load", f"-c{SATURATION_CONNECTIONS}", "-m10", f"-D{round(duration)}", url]
    output = _run(argv, timeout=duration + 30)
    return Saturation(
        requests_per_second=parse_h2load_rate(output), errors=_h2load_failures(output)
    )


def paced(
    url: str, *, rate: float, duration: float, log_path: Path, h2: bool = False
) -> Latencies:
    """``rate`` requests per second in all, evenly spaced over 16 keep-alive connections.

    Each h2load client fires its ``--rps`` timer from the moment it connects.
    Connected together (``-D``), the 16 clients send in bursts of 16, and the
    burst's queueing (about 0.5 ms on nginx) would swamp what a proxy adds.  So
    the clients connect one every 1/``rate`` seconds (``-r1 --rate-period``),
    which interleaves their timers, and the run is ``rate * duration`` requests.
    h2load takes the period in whole milliseconds, so above 1000 req/s the
    clients' phases coincide in pairs, triples...
    """
    period_ms = max(1, round(1000 / rate))
    argv = [
        "h2load",
        *_protocol_flags(h2),
        f"-c{PACED_CLIENTS}",
        "-r1",
        f"--rate-period={period_ms}ms",
        f"--rps={rate / PACED_CLIENTS:g}",
        f"-n{round(rate * duration)}",
        url,
    ]
    return _latencies(argv, log_path, timeout=duration * 3 + 30)


def one_connection(url: str, *, requests: int, log_path: Path, h2: bool = False) -> Latencies:
    """``requests`` sequential requests on one keep-alive connection, nothing else running."""
    argv = ["h2load", *_protocol_flags(h2), "-c1", f"-n{requests}", url]
    return _latencies(argv, log_path, timeout=120)


def check_response(url: str, *, body_bytes: int) -> None:
    """One GET must answer 200 with the backend's body, or the numbers would mean nothing."""
    try:
        # No proxy from the environment: the request must go where the benchmark says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as error:
        raise BenchError(f"GET {url} failed: {error}") from error
    if status != 200 or len(body) != body_bytes:
        raise BenchError(
            f"GET {url} answered {status} with {len(body)} bytes, expected 200 with "
            f"{body_bytes}: {body[:200]!r}"
        )


def check_response_h2(url: str, *, body_bytes: int) -> None:
    """``check_response`` for an HTTP/2-only (h2c prior knowledge) URL, through curl."""
    curl = shutil.which("curl")
    if curl is None:
        raise BenchError("curl is needed to check an HTTP/2 URL")
    output = _run(
        [curl, "-sS", "--noproxy", "*", "--http2-prior-knowledge", "-o", "/dev/null",
         "-w", "%{http_code} %{size_download} %{http_version}", url],
        timeout=30,
    )
    if output.split() != ["200", str(body_bytes), "2"]:
        raise BenchError(f"GET {url} over HTTP/2 gave (status size version) {output!r}")


def warm_up(url: str, *, requests: int = 2000, h2: bool = False) -> None:
    """Open the pools and finish the TLS handshakes before anything is measured."""
    argv = ["h2load", *_protocol_flags(h2), f"-c{PACED_CLIENTS}", f"-n{requests}", url]
    output = _run(argv, timeout=120)
    failures = _h2load_failures(output)
    if failures:
        raise BenchError(f"warm-up of {url}: {failures} of {requests} requests failed:\n{output}")


def tool_version(argv: list[str]) -> str:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"
