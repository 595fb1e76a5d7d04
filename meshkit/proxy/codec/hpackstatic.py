"""HPACK that uses only the static table and sends literals raw, and its fast decoder.

hpack's ``Encoder`` searches and grows the dynamic table for every field and
Huffman-codes every literal in pure Python: about a third of an HTTP/2
exchange's CPU in a sidecar (profiled).  Between sidecars on one machine the
bytes those save are cheap and the CPU is not, and most fields that vary per
request (request ids, trace context, dates) would only churn the table.  So:

* a field in the static table is sent indexed;
* anything else is a literal *without indexing* (the peer's table is never
  touched), with the name indexed when the static table has it;
* ``authorization``, ``proxy-authorization`` and short ``cookie`` values are
  sent *never indexed*, as h2's outbound normalisation would mark them, so no
  intermediary puts them in a compression context (RFC 7541 7.1.3);
* a table size change the peer asked for is still acknowledged first.

The encoding of each name is computed once; values are copied as they are.

``FastDecoder`` reads blocks made of indexed fields and literals without
indexing or Huffman (what the encoder above writes, so what one sidecar sends
another) in one loop; a block with anything else (incremental indexing, a
table size update, Huffman, a bad index) is left, untouched, to hpack's decoder.
Neither changes the dynamic table, so handing a block over half read is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple, OversizedHeaderListError
from hpack.exceptions import HPACKError
from hpack.table import HeaderTable

_STATIC: dict[tuple[bytes, bytes], bytes] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC.setdefault((_name, _value), bytes((_index | 0x80,)))
    _STATIC_NAMES.setdefault(_name, _index)

_SECRET_NAMES = frozenset({b"authorization", b"proxy-authorization"})
_MAX_CACHED_NAMES = 1024


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: ``value`` on a ``prefix_bits`` prefix OR-ed into ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _name_prefix(name: bytes, *, never_indexed: bool) -> bytes:
    """The representation's first byte(s) and the name (indexed when the static table has it)."""
    first = 0x10 if never_indexed else 0x00
    index = _STATIC_NAMES.get(name)
    if index is not None:
        return _integer(index, 4, first)
    return bytes((first,)) + _integer(len(name), 7, 0) + name


class StaticTableEncoder(Encoder):
    """``hpack.Encoder`` without the dynamic table or Huffman coding (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._prefixes: dict[bytes, bytes] = {}

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        block: list[bytes] = []
        if self.header_table.resized:
            block.append(self._encode_table_size_change())
            self.header_table.resized = False
        prefixes = self._prefixes
        for name, value, *_ in headers:
            indexed = _STATIC.get((name, value))
            if indexed is not None:
                block.append(indexed)
                continue
            if name in _SECRET_NAMES or (name == b"cookie" and len(value) < 20):
                block.append(_name_prefix(name, never_indexed=True))
            else:
                prefix = prefixes.get(name)
                if prefix is None:
                    if len(prefixes) >= _MAX_CACHED_NAMES:
                        prefixes.clear()  # a peer sending endless new names gains nothing
                    prefix = prefixes[name] = _name_prefix(name, never_indexed=False)
                block.append(prefix)
            length = len(value)
            block.append(bytes((length,)) if length < 127 else _integer(length, 7, 0))
            block.append(value)
        return b"".join(block)


class _Unusual(Exception):
    """A representation ``FastDecoder`` leaves to hpack."""


def _read_integer(data: bytes, position: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 5.1 at ``position``: (value, position after it); _Unusual if odd."""
    limit = (1 << prefix_bits) - 1
    value = data[position] & limit
    position += 1
    if value < limit:
        return value, position
    for shift in (0, 7, 14, 21):
        if position >= len(data):
            raise _Unusual
        byte = data[position]
        position += 1
        value += (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
    raise _Unusual


def _read_string(data: bytes, position: int) -> tuple[bytes, int]:
    if position >= len(data) or data[position] & 0x80:  # truncated, or Huffman-coded
        raise _Unusual
    length, position = _read_integer(data, position, 7)
    end = position + length
    if end > len(data):
        raise _Unusual
    return data[position:end], end


class FastDecoder(Decoder):
    """``hpack.Decoder`` with a fast path for raw literals (module docstring)."""

    def decode(self, data: bytes, raw: bool = False) -> Any:
        if not raw:
            return super().decode(data, raw)
        try:
            return self._decode_plain(bytes(data))
        except _Unusual:
            return super().decode(data, raw)

    def _decode_plain(self, data: bytes) -> list[HeaderTuple]:
        headers: list[HeaderTuple] = []
        size = 0
        position = 0
        table = self.header_table
        while position < len(data):
            first = data[position]
            if first & 0x80:
                index, position = _read_integer(data, position, 7)
                try:
                    header = HeaderTuple(*table.get_by_index(index))
                except HPACKError:
                    raise _Unusual from None
            elif first & 0xE0:  # incremental indexing or a table size update
                raise _Unusual
            else:
                index, position = _read_integer(data, position, 4)
                if index:
                    try:
                        name = table.get_by_index(index)[0]
                    except HPACKError:
                        raise _Unusual from None
                else:
                    name, position = _read_string(data, position)
                value, position = _read_string(data, position)
                kind = NeverIndexedHeaderTuple if first & 0x10 else HeaderTuple
                header = kind(name, value)
            headers.append(header)
            size += len(header[0]) + len(header[1]) + 32
            if size > self.max_header_list_size:
                raise OversizedHeaderListError(
                    f"A header list larger than {self.max_header_list_size} has been received"
                )
        self._assert_valid_table_size()
        return headers
