"""The static-table HPACK encoder: what it writes decodes to the same fields, and never
touches the peer's dynamic table."""

from __future__ import annotations

from hpack import Decoder, NeverIndexedHeaderTuple

from meshkit.proxy.codec.hpackstatic import StaticTableEncoder

FIELDS = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"catalog"),
    (b":path", b"/items?page=2"),
    (b"accept", b"*/*"),
    (b"x-request-id", b"0123456789abcdef"),
    (b"x-long", b"v" * 300),
    (b"a-new-name-that-is-long-" + b"n" * 200, b""),
]


def test_fields_round_trip_through_a_standard_decoder() -> None:
    encoder, decoder = StaticTableEncoder(), Decoder()
    for _ in range(3):
        assert decoder.decode(encoder.encode(FIELDS), raw=True) == FIELDS
    assert len(decoder.header_table.dynamic_entries) == 0


def test_static_table_matches_are_sent_indexed() -> None:
    assert StaticTableEncoder().encode([(b":method", b"GET"), (b":path", b"/")]) == b"\x82\x84"


def test_secret_fields_are_never_indexed() -> None:
    fields = [(b"authorization", b"Bearer abc"), (b"cookie", b"short=1"), (b"cookie", b"x" * 40)]
    decoded = Decoder().decode(StaticTableEncoder().encode(fields), raw=True)
    assert decoded == fields
    assert [isinstance(field, NeverIndexedHeaderTuple) for field in decoded] == [True, True, False]


def test_a_table_size_change_is_acknowledged_first() -> None:
    encoder, decoder = StaticTableEncoder(), Decoder()
    encoder.header_table_size = 0
    block = encoder.encode([(b"x-a", b"1")])
    assert block[0] == 0x20  # dynamic table size update to 0
    decoder.max_allowed_table_size = 0
    assert decoder.decode(block, raw=True) == [(b"x-a", b"1")]


def test_endless_new_names_do_not_grow_the_name_cache() -> None:
    encoder, decoder = StaticTableEncoder(), Decoder()
    for number in range(3000):
        field = [(b"x-%d" % number, b"v")]
        assert decoder.decode(encoder.encode(field), raw=True) == field
    assert len(encoder._prefixes) <= 1024
