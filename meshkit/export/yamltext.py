"""A small YAML writer for plain data: what ``kubectl apply -f`` reads.

It writes dicts (keys in their insertion order), lists, strings, ints,
floats, booleans and ``None``, in block style the way ``kubectl get -o yaml``
does, one document per object.  A string is written plain only when no YAML
reader could take it for anything else (a number, a boolean, a null, a date,
a comment, a flow collection); every other string is double-quoted with JSON's
escapes, which YAML's double-quoted style shares.  The same data always gives
the same bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./ :-]*")
# Plain scalars that YAML 1.1 (PyYAML, and so many tools) reads as booleans or null.
_RESERVED = frozenset(("y", "n", "yes", "no", "on", "off", "true", "false", "null", "none"))
# What JSON leaves unescaped but YAML may not hold as it is: characters outside
# YAML's printable set, its extra line breaks (NEL, LS, PS) and the byte order mark.
_YAML_UNSAFE = re.compile(
    "[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


class YamlError(TypeError):
    """A value that is not plain data (the message names its path)."""


def documents(objects: Iterable[Mapping[str, object]]) -> str:
    """Every object as one YAML document, each introduced by ``---``."""
    return "".join("---\n" + document(item) for item in objects)


def document(value: Mapping[str, object]) -> str:
    """One mapping as a YAML document (no ``---``), ending with a newline."""
    lines = _mapping_lines(value, indent=0, path="")
    return "\n".join(lines) + "\n"


def scalar(value: object, path: str = "") -> str:
    """One scalar as YAML text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise YamlError(f"{path or 'value'}: {value!r} is not a finite number")
        text = repr(value)
        # YAML 1.1 readers take "5e-324" for a string: a float needs its dot.
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(value, str):
        return _string(value)
    raise YamlError(f"{path or 'value'}: {type(value).__name__} is not plain data")


def _string(text: str) -> str:
    if (
        _PLAIN.fullmatch(text)
        and not text.endswith((" ", ":"))
        and ": " not in text
        and text.lower() not in _RESERVED
    ):
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", quoted)


def _is_collection(value: object) -> bool:
    return isinstance(value, Mapping | list | tuple) and len(value) > 0


def _empty(value: object) -> str | None:
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, list | tuple) and not value:
        return "[]"
    return None


def _mapping_lines(value: Mapping[str, object], *, indent: int, path: str) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for key, item in value.items():
        if not isinstance(key, str):
            raise YamlError(f"{path or 'value'}: key {key!r} is not a string")
        where = f"{path}.{key}" if path else key
        head = f"{pad}{_string(key)}:"
        if isinstance(item, Mapping) and item:
            lines.append(head)
            lines.extend(_mapping_lines(item, indent=indent + 2, path=where))
        elif isinstance(item, list | tuple) and item:
            lines.append(head)
            lines.extend(_sequence_lines(item, indent=indent, path=where))
        else:
            lines.append(f"{head} {_inline(item, where)}")
    return lines


def _sequence_lines(value: Sequence[object], *, indent: int, path: str) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for number, item in enumerate(value):
        where = f"{path}[{number}]"
        if _is_collection(item):
            nested = (
                _mapping_lines(item, indent=indent + 2, path=where)
                if isinstance(item, Mapping)
                else _sequence_lines(item, indent=indent + 2, path=where)  # type: ignore[arg-type]
            )
            lines.append(f"{pad}- {nested[0].lstrip()}")
            lines.extend(nested[1:])
        else:
            lines.append(f"{pad}- {_inline(item, where)}")
    return lines


def _inline(value: object, path: str) -> str:
    empty = _empty(value)
    return empty if empty is not None else scalar(value, path)
