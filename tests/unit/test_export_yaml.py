"""The YAML writer: what it writes, a YAML reader reads back as the same data."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.export import document, documents
from meshkit.export.yamltext import YamlError, scalar

KEYS = st.text(min_size=1, max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(KEYS, DATA, max_size=6))
def test_any_plain_data_reads_back_the_same(data: dict[str, Any]) -> None:
    assert yaml.safe_load(document(data)) == (data or None)


@pytest.mark.parametrize(
    "text",
    [
        "yes", "No", "on", "OFF", "true", "null", "~", "", " lead", "trail ", "1", "0x1F",
        "1e3", ".inf", "-", "- item", "a: b", "a #b", "#c", "[x]", "{x}", "*ref", "&a", "!tag",
        "%x", "@x", "`x", "'q'", '"q"', "2026-12-01", "12:30", "a\nb", "tab\t", "é", "\u2028",
        "x:", "?", "|", ">",
    ],
)  # fmt: skip
def test_strings_a_reader_could_mistake_are_quoted(text: str) -> None:
    assert yaml.safe_load(f"value: {scalar(text)}\n") == {"value": text}


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("catalog", "catalog"),
        ("/healthz", "/healthz"),
        ("meshfile.example.py:14", "meshfile.example.py:14"),
        ("python catalog.py", "python catalog.py"),
        ("shop/catalog:1.4", "shop/catalog:1.4"),
        ("15s", '"15s"'),
        ("*", '"*"'),
    ],
)
def test_plain_when_nothing_else_could_be_meant(text: str, written: str) -> None:
    assert scalar(text) == written


def test_kubectl_layout() -> None:
    data = {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80}]}], "x": []},
        "empty": {},
    }
    assert document(data) == (
        "metadata:\n"
        "  name: web\n"
        "  labels:\n"
        "    app: web\n"
        "spec:\n"
        "  containers:\n"
        "  - name: web\n"
        "    ports:\n"
        "    - containerPort: 80\n"
        "  x: []\n"
        "empty: {}\n"
    )


def test_documents_are_separated_and_nested_lists_kept() -> None:
    text = documents([{"a": [[1, 2], [], [{"b": True}]]}, {"c": None}])
    assert text == "---\na:\n- - 1\n  - 2\n- []\n- - b: true\n---\nc: null\n"
    assert list(yaml.safe_load_all(text)) == [{"a": [[1, 2], [], [{"b": True}]]}, {"c": None}]


def test_what_is_not_plain_data_is_refused_with_its_path() -> None:
    with pytest.raises(YamlError, match=r"spec\.ports\[0\]: set is not plain data"):
        document({"spec": {"ports": [set()]}})
    with pytest.raises(YamlError, match=r"timeout: nan is not a finite number"):
        document({"timeout": float("nan")})
