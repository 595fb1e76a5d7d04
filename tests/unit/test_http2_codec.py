"""The sans-I/O HTTP/2 codec against a raw h2 peer: limits and abuse, no sockets."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
from h2.errors import ErrorCodes

from meshkit.proxy.codec.h2guard import OutboundFrameBudget, RapidResetDetector, count_frames
from meshkit.proxy.codec.http2 import (
    ConnectionEnded,
    Http2Codec,
    RequestReceived,
    StreamReset,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_pair(*, validate: bool = True) -> tuple[Http2Codec, h2.connection.H2Connection, FakeClock]:
    clock = FakeClock()
    server = Http2Codec(client_side=False, clock=clock)
    server.initiate()
    peer = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
    )
    peer.initiate_connection()
    return server, peer, clock


REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


def peer_events(server: Http2Codec, peer: h2.connection.H2Connection) -> list[h2.events.Event]:
    return list(peer.receive_data(server.data_to_send()))


def test_valid_request_becomes_a_request_head() -> None:
    server, peer, _ = make_pair()
    peer.send_headers(1, [*REQUEST, (b"x-a", b"1")], end_stream=True)
    events = server.receive_data(peer.data_to_send())
    (request,) = [e for e in events if isinstance(e, RequestReceived)]
    assert request.head.method == b"GET"
    assert request.head.target == b"/"
    assert (b"host", b"a") in request.head.headers
    assert request.end_stream


def test_the_101st_concurrent_stream_is_refused_not_the_connection() -> None:
    server, peer, _ = make_pair()
    for index in range(101):
        peer.send_headers(1 + 2 * index, REQUEST)
    events = server.receive_data(peer.data_to_send())
    assert len([e for e in events if isinstance(e, RequestReceived)]) == 100
    assert server.ended is None
    resets = [e for e in peer_events(server, peer) if isinstance(e, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(201, ErrorCodes.REFUSED_STREAM)]
    # HPACK stayed in step: once a stream closes, the next request is served.
    peer.reset_stream(1)
    peer.send_headers(203, REQUEST, end_stream=True)
    events = server.receive_data(peer.data_to_send())
    assert [e.stream_id for e in events if isinstance(e, RequestReceived)] == [203]


def test_rapid_reset_loop_ends_with_goaway_enhance_your_calm() -> None:
    server, peer, _ = make_pair()
    ended: list[ConnectionEnded] = []
    for index in range(600):
        stream_id = 1 + 2 * index
        peer.send_headers(stream_id, REQUEST)
        peer.reset_stream(stream_id)
        ended += [
            e for e in server.receive_data(peer.data_to_send()) if isinstance(e, ConnectionEnded)
        ]
        if ended:
            break
    assert ended and ended[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert "rapid reset" in ended[0].reason
    goaways = [
        e for e in peer_events(server, peer) if isinstance(e, h2.events.ConnectionTerminated)
    ]
    assert goaways[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert goaways[0].last_stream_id == 999  # the 500th stream


def test_slow_resets_are_not_rapid_resets() -> None:
    detector = RapidResetDetector()
    for stream_id in range(1, 1200, 2):
        detector.stream_opened(stream_id, now=float(stream_id))
        detector.stream_reset_by_peer(stream_id, now=float(stream_id) + 2.0)
    assert not detector.should_close()


def test_oversize_header_list_ends_the_connection_with_enhance_your_calm() -> None:
    server, peer, _ = make_pair()
    # An HPACK bomb: one 4 KB field, then indexed references to it (a few bytes each).
    bomb = [*REQUEST, *[(b"x-bomb", b"b" * 4000)] * 40]
    peer.send_headers(1, bomb, end_stream=True)
    wire = peer.data_to_send()
    assert len(wire) < 8 * 1024
    events = server.receive_data(wire)
    assert isinstance(events[-1], ConnectionEnded)
    assert events[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert not [e for e in events if isinstance(e, RequestReceived)]


def assert_stream_protocol_error(fields: list[tuple[bytes, bytes]]) -> None:
    server, peer, _ = make_pair(validate=False)
    peer.send_headers(1, fields, end_stream=True)
    events = server.receive_data(peer.data_to_send())
    (reset,) = [e for e in events if isinstance(e, StreamReset)]
    assert reset.error_code == ErrorCodes.PROTOCOL_ERROR and not reset.by_peer
    assert server.ended is None
    resets = [e for e in peer_events(server, peer) if isinstance(e, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(1, ErrorCodes.PROTOCOL_ERROR)]
    peer.send_headers(3, REQUEST, end_stream=True)  # the connection still serves
    events = server.receive_data(peer.data_to_send())
    assert [e.stream_id for e in events if isinstance(e, RequestReceived)] == [3]


def test_uppercase_header_name_is_a_stream_protocol_error() -> None:
    assert_stream_protocol_error([*REQUEST, (b"X-Upper", b"1")])


def test_missing_path_is_a_stream_protocol_error() -> None:
    assert_stream_protocol_error(REQUEST[:3])


def test_repeated_pseudo_header_is_a_stream_protocol_error() -> None:
    assert_stream_protocol_error([*REQUEST, (b":path", b"/again")])


def test_connection_header_is_a_stream_protocol_error() -> None:
    assert_stream_protocol_error([*REQUEST, (b"connection", b"keep-alive")])


def test_te_other_than_trailers_is_a_stream_protocol_error() -> None:
    assert_stream_protocol_error([*REQUEST, (b"te", b"gzip")])


def test_window_pushed_past_the_maximum_is_a_flow_control_error() -> None:
    server, peer, _ = make_pair()
    peer.receive_data(server.data_to_send())
    wire = peer.data_to_send()
    window_update = (4).to_bytes(3, "big") + b"\x08\x00" + (0).to_bytes(4, "big")
    events = server.receive_data(wire + window_update + (2**31 - 1).to_bytes(4, "big"))
    assert isinstance(events[-1], ConnectionEnded)
    assert events[-1].error_code == ErrorCodes.FLOW_CONTROL_ERROR


def test_ping_flood_without_reading_trips_the_outbound_budget() -> None:
    server, peer, _ = make_pair()
    ended: list[ConnectionEnded] = []
    for round_ in range(1100):
        peer.ping(round_.to_bytes(8, "big"))
        events = server.receive_data(peer.data_to_send())
        ended += [e for e in events if isinstance(e, ConnectionEnded)]
        if ended:
            break
    assert server.flooded and ended[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert "not reading" in ended[0].reason
    assert server.queued_frames <= 1002
    # What the peer left unread is dropped; only GOAWAY ENHANCE_YOUR_CALM goes out.
    goaways = [e for e in peer.receive_data(server.data_to_send())]
    assert [type(e).__name__ for e in goaways] == ["ConnectionTerminated"]
    assert goaways[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_a_peer_that_reads_its_ping_acks_is_not_cut_off_by_a_large_batch() -> None:
    server, peer, _ = make_pair()
    peer.receive_data(server.data_to_send())
    for round_ in range(5000):
        peer.ping(round_.to_bytes(8, "big"))
    events = server.receive_data(peer.data_to_send())  # 5000 PINGs in one read
    assert not server.flooded and not [e for e in events if isinstance(e, ConnectionEnded)]
    acks = peer.receive_data(server.data_to_send())
    assert len(acks) >= 5000
    peer.ping(b"12345678")
    assert not server.flooded and not server.receive_data(peer.data_to_send())


def test_count_frames_and_budget() -> None:
    peer = h2.connection.H2Connection()
    peer.initiate_connection()
    peer.ping(b"12345678")
    count = count_frames(peer.data_to_send())
    assert (count.frames, count.control_frames) == (2, 2)
    budget = OutboundFrameBudget(max_control_frames=1, max_frames=10)
    budget.queued(count)
    assert budget.exceeded()
    budget.written(count)
    assert not budget.exceeded()
