"""The Host allow-list against DNS rebinding: loopback with any port, declared names, nothing else."""

from __future__ import annotations

import pytest

from meshkit.proxy.policy.hosts import HostAllowList, host_name
from meshkit.proxy.policy.local_access import _allow_list


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:4000", "[::1]", "[::1]:9000", "app.localhost:1"],
)
def test_loopback_is_allowed_with_any_port(host: str) -> None:
    assert HostAllowList.of().allows(host)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.2", "[::2]:80", "", None])
def test_other_names_and_a_missing_host_are_refused(host: str | None) -> None:
    assert not HostAllowList.of().allows(host)


def test_declared_names_are_allowed_case_insensitively_with_any_port() -> None:
    allow = HostAllowList.of(["shop.test", "Catalog"])
    assert allow.allows("shop.test")
    assert allow.allows("SHOP.TEST:8443")
    assert allow.allows("catalog")
    assert allow.allows("catalog:80")
    assert not allow.allows("shop.test.evil.example")


def test_host_name_strips_port_brackets_and_trailing_dot() -> None:
    assert host_name("[::1]:80") == "::1"
    assert host_name("Shop.Test.:443") == "shop.test"
    assert host_name("localhost") == "localhost"


def test_the_allow_list_of_a_config_follows_its_names() -> None:
    assert _allow_list(("Shop.test:8443",)).allows("shop.test")
    assert not _allow_list(("other.test",)).allows("shop.test")
    assert _allow_list(("a.test",)) is _allow_list(("a.test",))
