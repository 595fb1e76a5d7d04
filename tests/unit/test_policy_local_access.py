"""Admission before routing: a rebinding Host refused on gateway, upstream and admin listeners
(HTTP/1.1 Host, absolute-form targets, HTTP/2 ``:authority`` as Host), and admin pages only
with the mesh's token."""

from __future__ import annotations

import pytest

from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.config import Listener, ProxyConfig
from meshkit.proxy.policy.local_access import admit, request_host

CONFIG = ProxyConfig(
    version=1, mesh="shop", instance="gateway", service="gateway", allowed_hosts=("catalog", "shop.test")
)
GATEWAY = Listener(name="gateway", kind="gateway")
UPSTREAM = Listener(name="upstream:catalog", kind="upstream", cluster="catalog")
ADMIN = Listener(name="admin", kind="admin")
OUTBOUND = Listener(name="outbound", kind="outbound")
TOKEN = "s3cret-token"


def head(host: str | None, target: bytes = b"/", *, token: str | None = None) -> RequestHead:
    headers = [] if host is None else [(b"host", host.encode())]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return RequestHead(method=b"GET", target=target, headers=headers)


@pytest.mark.parametrize("listener", [GATEWAY, UPSTREAM])
@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "[::1]:1", "shop.test", "catalog:80"])
def test_loopback_and_declared_hosts_are_routed(listener: Listener, host: str) -> None:
    assert admit(CONFIG, listener, head(host), admin_token=TOKEN) is None


@pytest.mark.parametrize("listener", [GATEWAY, UPSTREAM, ADMIN])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.2", None])
def test_a_rebinding_or_missing_host_is_refused_with_403_fh(listener: Listener, host: str | None) -> None:
    refusal = admit(CONFIG, listener, head(host, token=TOKEN), admin_token=TOKEN)
    assert refusal is not None and (refusal.status, refusal.flag) == (403, "FH")
    assert "mesh 'shop'" in refusal.reason
    if host:
        assert host in refusal.reason


def test_the_absolute_form_authority_is_the_host() -> None:
    assert request_host(head("127.0.0.1", b"http://evil.example/x")) == "evil.example"
    refusal = admit(CONFIG, GATEWAY, head("127.0.0.1", b"http://evil.example/x"), admin_token=None)
    assert refusal is not None and refusal.flag == "FH"


def test_the_outbound_listener_needs_no_list_its_host_names_a_service() -> None:
    assert admit(CONFIG, OUTBOUND, head("reviews"), admin_token=None) is None


@pytest.mark.parametrize("given", [None, "wrong", TOKEN + "x", ""])
def test_admin_without_the_token_is_401_at(given: str | None) -> None:
    refusal = admit(CONFIG, ADMIN, head("127.0.0.1:9", token=given), admin_token=TOKEN)
    assert refusal is not None and (refusal.status, refusal.flag) == (401, "AT")
    assert "observe.token" in refusal.reason


def test_admin_with_the_token_is_served_and_a_sidecar_without_one_serves_none() -> None:
    assert admit(CONFIG, ADMIN, head("127.0.0.1:9", token=TOKEN), admin_token=TOKEN) is None
    refusal = admit(CONFIG, ADMIN, head("127.0.0.1:9", token=TOKEN), admin_token=None)
    assert refusal is not None and refusal.status == 401
