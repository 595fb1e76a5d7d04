"""The static-table HPACK encoder and the fast decoder: what they write and read is what
hpack writes and reads, and the encoder never touches the peer's dynamic table."""

from __future__ import annotations

import pytest
from hpack import (
    Decoder,
    Encoder,
    HPACKDecodingError,
    NeverIndexedHeaderTuple,
    OversizedHeaderListError,
)

from meshkit.proxy.codec.hpackstatic import FastDecoder, StaticTableEncoder

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


def test_the_fast_decoder_reads_what_the_encoder_writes() -> None:
    encoder, decoder = StaticTableEncoder(), FastDecoder()
    fields = [*FIELDS, (b"authorization", b"secret")]
    for _ in range(3):
        decoded = decoder.decode(encoder.encode(fields), raw=True)
        assert decoded == fields
        assert isinstance(decoded[-1], NeverIndexedHeaderTuple)


def test_the_fast_decoder_agrees_with_hpack_on_any_encoding() -> None:
    # Huffman, incremental indexing and dynamic-table references go to hpack's path.
    encoder, fast, reference = Encoder(), FastDecoder(), Decoder()
    for number in range(20):
        block = encoder.encode([*FIELDS, (b"x-n", b"%d" % (number % 3))])
        assert fast.decode(block, raw=True) == reference.decode(block, raw=True)
    assert fast.header_table.dynamic_entries == reference.header_table.dynamic_entries


@pytest.mark.parametrize(
    "block",
    [b"\x80", b"\xff\xff\xff\xff\xff\xff\x7f", b"\x00\x03ab", b"\x00\x01a\x05abc", b"\x0f"],
    ids=["index 0", "huge index", "truncated name", "truncated value", "truncated integer"],
)
def test_the_fast_decoder_refuses_what_hpack_refuses(block: bytes) -> None:
    with pytest.raises(HPACKDecodingError):
        FastDecoder().decode(block, raw=True)


def test_the_fast_decoder_bounds_the_header_list() -> None:
    decoder = FastDecoder()
    decoder.max_header_list_size = 100
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(StaticTableEncoder().encode([(b"x-big", b"v" * 200)]), raw=True)
