"""Pure cores of the data plane: router, header rewriting, backoff, metrics, admin."""

from __future__ import annotations

import json

from meshkit.api.backoff import Backoff, BackoffCounter
from meshkit.proxy.codec.headers import (
    rewrite_request_headers,
    rewrite_response_headers,
    strip_hop_by_hop,
)
from meshkit.proxy.codec.messages import RequestHead
from meshkit.proxy.config import (
    AppTarget,
    Cluster,
    Endpoint,
    Listener,
    PrefixRoute,
    ProxyConfig,
)
from meshkit.proxy.policy.router import (
    ForwardToApp,
    ForwardToCluster,
    LocalReply,
    OpenTunnel,
    ServeAdmin,
    hostname,
    route_connect,
    route_request,
    split_target,
)
from meshkit.proxy.telemetry.admin import answer_admin
from meshkit.proxy.telemetry.metrics import Metrics

CATALOG = Cluster(
    name="catalog",
    endpoints=(
        Endpoint(instance="catalog-v1-0", host="127.0.0.1", port=1001),
        Endpoint(instance="catalog-v1-1", host="127.0.0.1", port=1002),
    ),
)
CONFIG = ProxyConfig(
    version=1,
    mesh="shop",
    instance="frontend-0",
    service="frontend",
    app=AppTarget(port=9000),
    clusters=(CATALOG, Cluster(name="reviews"), Cluster(name="frontend")),
)
GATEWAY = Listener(
    name="gateway",
    kind="gateway",
    routes=(
        PrefixRoute(prefix="/", cluster="frontend"),
        PrefixRoute(prefix="/api/catalog", cluster="catalog"),
        PrefixRoute(prefix="/api", cluster="reviews"),
        PrefixRoute(prefix="/gone", cluster="unknown"),
    ),
)


def request(target: bytes, host: bytes = b"catalog", method: bytes = b"GET") -> RequestHead:
    return RequestHead(method=method, target=target, headers=[(b"host", host)])


def test_split_target_separates_absolute_form() -> None:
    assert split_target(b"http://catalog:8080/items?a=1") == (b"catalog:8080", b"/items?a=1")
    assert split_target(b"http://catalog") == (b"catalog", b"/")
    assert split_target(b"/items") == (None, b"/items")
    assert split_target(b"/redirect?to=http://x/") == (None, b"/redirect?to=http://x/")


def test_hostname_drops_the_port_and_lowercases() -> None:
    assert hostname(b"Catalog:8080") == "catalog"
    assert hostname(b"[::1]:80") == "[::1]"


def test_outbound_uses_the_absolute_form_authority_and_rewrites_to_origin_form() -> None:
    listener = Listener(name="outbound", kind="outbound")
    decision = route_request(CONFIG, listener, request(b"http://catalog:80/items", host=b"ignored"))
    assert decision == ForwardToCluster(cluster=CATALOG, target=b"/items")


def test_outbound_falls_back_to_the_host_header() -> None:
    listener = Listener(name="outbound", kind="outbound")
    assert route_request(
        CONFIG, listener, request(b"/items", host=b"catalog:1234")
    ) == ForwardToCluster(cluster=CATALOG, target=b"/items")


def test_outbound_unknown_service_is_404_naming_it() -> None:
    listener = Listener(name="outbound", kind="outbound")
    assert route_request(CONFIG, listener, request(b"http://nosuch/")) == LocalReply(
        status=404, reason="no service named 'nosuch' in mesh 'shop'", flag="NR"
    )


def test_cluster_without_endpoints_is_503_uh() -> None:
    listener = Listener(name="upstream:reviews", kind="upstream", cluster="reviews")
    assert route_request(CONFIG, listener, request(b"/")) == LocalReply(
        status=503, reason="no healthy instance of service 'reviews'", flag="UH"
    )


def test_upstream_listener_pins_its_cluster_whatever_the_host() -> None:
    listener = Listener(name="upstream:catalog", kind="upstream", cluster="catalog")
    decision = route_request(CONFIG, listener, request(b"/x", host=b"localhost:5000"))
    assert decision == ForwardToCluster(cluster=CATALOG, target=b"/x")


def test_inbound_goes_to_the_local_app() -> None:
    listener = Listener(name="inbound", kind="inbound")
    assert route_request(CONFIG, listener, request(b"/x")) == ForwardToApp(
        app=AppTarget(port=9000), target=b"/x"
    )


def test_admin_listener_serves_its_pages() -> None:
    listener = Listener(name="admin", kind="admin")
    assert route_request(CONFIG, listener, request(b"/metrics?x")) == ServeAdmin(path=b"/metrics")


def test_gateway_longest_prefix_wins() -> None:
    assert route_request(CONFIG, GATEWAY, request(b"/api/catalog/items")) == ForwardToCluster(
        cluster=CATALOG, target=b"/api/catalog/items"
    )
    decision = route_request(CONFIG, GATEWAY, request(b"/api/other"))
    assert isinstance(decision, LocalReply) and decision.flag == "UH"
    decision = route_request(CONFIG, GATEWAY, request(b"/index.html"))
    assert isinstance(decision, LocalReply) and "'frontend'" in decision.reason


def test_gateway_without_a_matching_prefix_is_404_nr() -> None:
    listener = Listener(
        name="gateway", kind="gateway", routes=(PrefixRoute(prefix="/api", cluster="catalog"),)
    )
    assert route_request(CONFIG, listener, request(b"/other?q=1")) == LocalReply(
        status=404, reason="no gateway route matches '/other'", flag="NR"
    )


def test_connect_as_a_request_is_refused() -> None:
    # HTTP/1.1 CONNECT is taken by the connection (route_connect), never routed as a request.
    listener = Listener(name="outbound", kind="outbound")
    decision = route_request(CONFIG, listener, request(b"catalog:443", method=b"CONNECT"))
    assert isinstance(decision, LocalReply) and decision.status == 501


def test_connect_tunnels_to_a_mesh_service_on_the_outbound_listener_only() -> None:
    outbound = Listener(name="outbound", kind="outbound")
    connect = request(b"catalog:50051", method=b"CONNECT")
    assert route_connect(CONFIG, outbound, connect) == OpenTunnel(service="catalog")
    refused = route_connect(CONFIG, outbound, request(b"example.com:443", method=b"CONNECT"))
    assert refused == LocalReply(
        status=403,
        reason="CONNECT to 'example.com:443' refused: only services of mesh 'shop' are tunnelled",
        flag="NR",
    )
    no_port = route_connect(CONFIG, outbound, request(b"catalog", method=b"CONNECT"))
    assert isinstance(no_port, LocalReply) and no_port.status == 400
    elsewhere = route_connect(CONFIG, GATEWAY, connect)
    assert isinstance(elsewhere, LocalReply) and elsewhere.status == 501
    assert "only on the outbound listener" in elsewhere.reason


def test_hop_by_hop_headers_and_those_named_in_connection_are_stripped() -> None:
    headers = [
        (b"connection", b"keep-alive, X-Private"),
        (b"x-private", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"te", b"trailers"),
        (b"trailer", b"x"),
        (b"upgrade", b"h2c"),
        (b"proxy-connection", b"keep-alive"),
        (b"transfer-encoding", b"chunked"),
        (b"accept", b"*/*"),
    ]
    assert strip_hop_by_hop(headers) == [(b"accept", b"*/*")]
    assert rewrite_response_headers(headers) == [(b"accept", b"*/*")]


def test_request_rewrite_appends_forwarded_for_and_generates_a_request_id() -> None:
    rewritten = rewrite_request_headers(
        [
            (b"host", b"a"),
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"x-forwarded-for", b"10.0.0.2"),
            (b"expect", b"100-continue"),
            (b"x-forwarded-client-cert", b"URI=spoofed"),
        ],
        client_address="127.0.0.1",
        append_forwarded_for=True,
        identity=None,
        chunked=True,
    )
    values = dict(rewritten)
    assert values[b"x-forwarded-for"] == b"10.0.0.1, 10.0.0.2, 127.0.0.1"
    assert values[b"x-forwarded-proto"] == b"http"
    assert len(values[b"x-request-id"]) == 32
    assert values[b"transfer-encoding"] == b"chunked"
    assert b"expect" not in values and b"x-forwarded-client-cert" not in values


def test_request_rewrite_keeps_given_ids_and_sets_the_verified_identity() -> None:
    rewritten = rewrite_request_headers(
        [
            (b"x-request-id", b"abc"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-for", b"1.2.3.4"),
        ],
        client_address="127.0.0.1",
        append_forwarded_for=False,
        identity="spiffe://meshkit.local/ns/shop/sa/frontend",
        local_identity="spiffe://meshkit.local/ns/shop/sa/catalog",
        chunked=False,
    )
    assert rewritten == [
        (b"x-request-id", b"abc"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (
            b"x-forwarded-client-cert",
            b"By=spiffe://meshkit.local/ns/shop/sa/catalog;"
            b"URI=spiffe://meshkit.local/ns/shop/sa/frontend",
        ),
    ]


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = BackoffCounter(Backoff(initial=0.1, cap=1.0))
    assert [backoff.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == 0.1


def test_metrics_render_prometheus_text() -> None:
    metrics = Metrics()
    metrics.record_request(listener="outbound", cluster="catalog", status=204)
    metrics.record_request(listener="outbound", cluster="catalog", status=200)
    metrics.record_request(listener="outbound", cluster='we"ird', status=503)
    metrics.record_connect_failure(cluster="catalog")
    metrics.connection_opened("outbound")
    text = metrics.render()
    assert (
        'meshkit_requests_total{listener="outbound",cluster="catalog",status_class="2xx"} 2' in text
    )
    assert 'cluster="we\\"ird",status_class="5xx"} 1' in text
    assert 'meshkit_upstream_connect_failures_total{cluster="catalog"} 1' in text
    assert 'meshkit_active_connections{listener="outbound"} 1' in text
    assert "# TYPE meshkit_requests_total counter" in text


def test_admin_pages() -> None:
    metrics = Metrics()
    assert answer_admin(b"/ready", config=None, ready=False, metrics=metrics).status == 503
    assert answer_admin(b"/ready", config=CONFIG, ready=True, metrics=metrics).body == b"ready\n"
    config = answer_admin(b"/config", config=CONFIG, ready=True, metrics=metrics)
    document = json.loads(config.body)
    assert document["version"] == 1 and document["config"]["instance"] == "frontend-0"
    missing = answer_admin(b"/x", config=CONFIG, ready=True, metrics=metrics)
    assert missing.status == 404 and b"/metrics" in missing.body
