"""Local replies to gRPC requests: trailers-only, Envoy's HTTP to gRPC status mapping."""

from __future__ import annotations

import pytest

from meshkit.api import GRPC_STATUS_CODES, grpc_status_of_http
from meshkit.proxy.codec.messages import ResponseHead, header_value
from meshkit.proxy.policy.flags import local_reply
from meshkit.proxy.policy.grpcreply import for_client, grpc_message, is_grpc, trailers_only


@pytest.mark.parametrize(
    ("http", "grpc"),
    [
        (400, "internal"),
        (401, "unauthenticated"),
        (403, "permission-denied"),
        (404, "unimplemented"),
        (429, "unavailable"),
        (502, "unavailable"),
        (503, "unavailable"),
        (504, "unavailable"),
        (500, "unknown"),
        (418, "unknown"),
        (200, "unknown"),
    ],
)
def test_envoy_maps_http_statuses_to_grpc(http: int, grpc: str) -> None:
    assert grpc_status_of_http(http) == GRPC_STATUS_CODES[grpc]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (b"application/grpc", True),
        (b"application/grpc+proto", True),
        (b"application/json", False),
        (None, False),
    ],
)
def test_a_grpc_request_is_known_by_its_content_type(
    content_type: bytes | None, expected: bool
) -> None:
    headers = [] if content_type is None else [(b"content-type", content_type)]
    assert is_grpc(headers) is expected


def _reply(status: int, flag: str, reason: str, **extra: bytes) -> tuple[ResponseHead, bytes]:
    headers, body = local_reply(
        status, flag, reason, extra=[(k.replace("_", "-").encode(), v) for k, v in extra.items()]
    )
    return ResponseHead(status=status, headers=headers), body


def test_a_local_reply_to_grpc_is_trailers_only_with_the_flag_and_reason() -> None:
    head, body = _reply(503, "UH", "no healthy instance of 'rpc'")
    sent, sent_body = for_client(head, body, grpc=True)
    assert sent.status == 200 and sent_body == b""
    assert header_value(sent.headers, b"content-type") == b"application/grpc"
    assert header_value(sent.headers, b"grpc-status") == b"14"
    assert header_value(sent.headers, b"grpc-message") == b"no healthy instance of 'rpc'"
    assert header_value(sent.headers, b"x-meshkit-flag") == b"UH"
    assert header_value(sent.headers, b"content-length") is None


def test_a_grpc_status_in_the_reply_overrides_the_mapping() -> None:
    head, _body = _reply(429, "RL", "rate limited", grpc_status=b"8")
    sent = trailers_only(head)
    assert [v for n, v in sent.headers if n == b"grpc-status"] == [b"8"]


def test_an_http_request_gets_the_reply_as_made_without_a_grpc_override() -> None:
    head, body = _reply(429, "RL", "rate limited", grpc_status=b"8")
    sent, sent_body = for_client(head, body, grpc=False)
    assert sent.status == 429 and sent_body == body
    assert header_value(sent.headers, b"grpc-status") is None
    assert header_value(sent.headers, b"x-meshkit-flag") == b"RL"
    fault, fault_body = _reply(200, "FI", "aborted", grpc_status=b"14")
    assert for_client(fault, fault_body, grpc=False) == (fault, fault_body)


def test_grpc_message_is_percent_encoded() -> None:
    assert grpc_message("100% sure: é") == b"100%25 sure: %C3%A9"
