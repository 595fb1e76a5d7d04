"""The call log: the last requests an inbound listener served, for tests and people.

Pure: a bounded ring buffer (``CallLog``) of ``CallRecord``\\s, each with a
sequence number that only grows, so a reader asks for what came after the
last one it saw (``since``) and never misses or repeats one while the buffer
has not wrapped.  ``answer_calls`` is the admin listener's ``/calls`` page:

* ``GET /calls`` -> ``{"calls": [...], "next": <seq>}``, oldest first;
* ``GET /calls?since=<seq>`` -> only the calls with a larger sequence number;
* ``DELETE /calls`` -> forget them all (``{"cleared": <count>}``).

``caller`` is the SPIFFE ID the caller's sidecar proved in the mTLS handshake
(the one the app sees in ``x-forwarded-client-cert``), None for plaintext.
"""

from __future__ import annotations

import collections
import json
from typing import Any
from urllib.parse import parse_qs

import attrs

DEFAULT_CAPACITY = 1000


@attrs.frozen(kw_only=True)
class CallRecord:
    """One request an inbound listener answered (``time`` in epoch seconds)."""

    seq: int
    time: float
    method: str
    path: str
    status: int
    caller: str | None
    duration_ms: float
    flag: str
    request_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class CallLog:
    """The newest ``capacity`` calls; older ones fall out."""

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"a call log holds at least one call (capacity {capacity})")
        self._calls: collections.deque[CallRecord] = collections.deque(maxlen=capacity)
        self._next_seq = 1

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def next_seq(self) -> int:
        """The sequence number the next call will get."""
        return self._next_seq

    def record(
        self,
        *,
        time: float,
        method: str,
        path: str,
        status: int,
        caller: str | None,
        duration_ms: float,
        flag: str,
        request_id: str | None,
    ) -> CallRecord:
        call = CallRecord(
            seq=self._next_seq,
            time=time,
            method=method,
            path=path,
            status=status,
            caller=caller,
            duration_ms=round(duration_ms, 3),
            flag=flag,
            request_id=request_id,
        )
        self._next_seq += 1
        self._calls.append(call)
        return call

    def since(self, seq: int = 0) -> list[CallRecord]:
        """The calls held whose sequence number is above ``seq``, oldest first."""
        return [call for call in self._calls if call.seq > seq]

    def clear(self) -> int:
        """Forget every call (sequence numbers keep growing); return how many there were."""
        count = len(self._calls)
        self._calls.clear()
        return count


@attrs.frozen(kw_only=True)
class CallsAnswer:
    status: int
    body: bytes
    content_type: bytes = b"application/json"


def _json(status: int, document: dict[str, Any]) -> CallsAnswer:
    return CallsAnswer(status=status, body=json.dumps(document).encode() + b"\n")


def answer_calls(method: bytes, query: bytes, log: CallLog) -> CallsAnswer:
    """The admin listener's answer to ``<method> /calls?<query>``."""
    if method == b"DELETE":
        return _json(200, {"cleared": log.clear()})
    if method not in (b"GET", b"HEAD"):
        shown = method.decode("ascii", "replace")
        return _json(405, {"error": f"method {shown} not allowed on /calls; use GET or DELETE"})
    values = parse_qs(query.decode("ascii", "replace")).get("since", ["0"])
    try:
        since = int(values[0])
    except ValueError:
        return _json(400, {"error": f"'since' must be a call sequence number, not {values[0]!r}"})
    return _json(
        200,
        {"calls": [call.to_dict() for call in log.since(since)], "next": log.next_seq},
    )
