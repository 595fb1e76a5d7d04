"""The inbound call log (admin ``/calls``) and the test handle's reading of it."""

from __future__ import annotations

import json

import pytest

from meshkit.proxy.telemetry.admin import answer_admin
from meshkit.proxy.telemetry.calls import CallLog, answer_calls
from meshkit.proxy.telemetry.metrics import Metrics
from meshkit.testing.calls import call_from_record, service_of_identity

GATEWAY_ID = "spiffe://meshkit.local/ns/shop/sa/gateway"


def record(log: CallLog, path: str, *, status: int = 200) -> None:
    log.record(
        time=1000.0 + log.next_seq,
        method="GET",
        path=path,
        status=status,
        caller=GATEWAY_ID,
        duration_ms=1.23456,
        flag="-",
        request_id=f"r{log.next_seq}",
    )


def test_the_log_keeps_the_newest_calls_and_numbers_them_for_ever() -> None:
    log = CallLog(capacity=3)
    for index in range(5):
        record(log, f"/items/{index}")
    assert [call.path for call in log.since()] == ["/items/2", "/items/3", "/items/4"]
    assert [call.seq for call in log.since(4)] == [5]
    assert log.clear() == 3
    assert log.since() == []
    record(log, "/after")
    assert [call.seq for call in log.since()] == [6]
    with pytest.raises(ValueError, match="at least one call"):
        CallLog(capacity=0)


def test_calls_page_lists_filters_and_clears() -> None:
    log = CallLog()
    record(log, "/a")
    record(log, "/b", status=503)
    page = json.loads(answer_calls(b"GET", b"", log).body)
    assert page["next"] == 3
    assert page["calls"][1] == {
        "seq": 2,
        "time": 1002.0,
        "method": "GET",
        "path": "/b",
        "status": 503,
        "caller": GATEWAY_ID,
        "duration_ms": 1.235,
        "flag": "-",
        "request_id": "r2",
    }
    newer = json.loads(answer_calls(b"GET", b"since=1", log).body)
    assert [call["path"] for call in newer["calls"]] == ["/b"]
    assert answer_calls(b"GET", b"since=x", log).status == 400
    assert answer_calls(b"POST", b"", log).status == 405
    assert json.loads(answer_calls(b"DELETE", b"", log).body) == {"cleared": 2}
    assert len(log) == 0


def test_the_admin_listener_serves_calls() -> None:
    log = CallLog()
    record(log, "/a")
    answer = answer_admin(
        b"/calls", config=None, ready=True, metrics=Metrics(), calls=log, query=b"since=0"
    )
    assert answer.status == 200 and answer.content_type == b"application/json"
    assert json.loads(answer.body)["calls"][0]["path"] == "/a"
    assert b"/calls" in answer_admin(b"/nope", config=None, ready=True, metrics=Metrics()).body


def test_a_call_names_its_caller_by_service() -> None:
    assert service_of_identity(GATEWAY_ID) == "gateway"
    assert service_of_identity(None) is None
    log = CallLog()
    record(log, "/a")
    [raw] = json.loads(answer_calls(b"GET", b"", log).body)["calls"]
    call = call_from_record(raw, instance="catalog-0")
    assert (call.caller, call.caller_identity, call.status, call.instance) == (
        "gateway",
        GATEWAY_ID,
        200,
        "catalog-0",
    )


async def test_a_call_is_dated_when_it_arrived_not_when_it_was_logged(
    autojump_clock: object,
) -> None:
    """A test reads the calls since the moment it began, and its client may begin the next
    test before the callee's sidecar has logged the previous answer (the log comes after
    the response is sent): a call dated when it was logged then counted in the next test.
    Dated when the request arrived, it cannot."""
    import time

    import trio

    from meshkit.proxy.codec.messages import RequestHead
    from meshkit.proxy.flow.dataplane import DataPlane

    plane = DataPlane()
    started = trio.current_time()
    await trio.sleep(5.0)  # the request takes 5 s to answer (the clock jumps; the wall does not)
    head = RequestHead(method=b"GET", target=b"/items", headers=[], http_version=b"1.1")
    plane.record_call(head, status=200, started=started, flag="-", caller="frontend")
    [call] = plane.calls.since(0)
    assert abs(call.time - (time.time() - 5.0)) < 1.0
    assert 4999 < call.duration_ms < 5001
