"""The per-request cost of the authorization check, on the pure core.

    python benchmarks/authz.py [--requests 100000] [--rounds 5]

What the inbound sidecar does per request (``check_request`` with the
config's policies), for: no policies (the baseline every sidecar pays), the
``authorization="upstreams"`` mode (one ALLOW policy naming three callers),
and eight policies on the service (ALLOW by source/method/path/header, two
DENY rules, default deny), the request allowed by the last ALLOW.  Prints the
median microseconds per request of ``--rounds`` rounds, and the cost over the
baseline.  Not a test; CI does not run it.
"""

from __future__ import annotations

import time

from meshbench.percall import compare

from meshkit.api.authz import AuthzPolicy, AuthzRule, HeaderCondition
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.policy.authz import check_request

MESH = "spiffe://meshkit.local/ns/shop/sa/"
CALLER = MESH + "frontend"


def _policies(kind: str) -> tuple[AuthzPolicy, ...]:
    if kind == "none":
        return ()
    callers = tuple(MESH + name for name in ("gateway", "reviews", "frontend"))
    upstreams = AuthzPolicy(
        name="declared-upstreams", service="catalog", rules=(AuthzRule(principals=callers),)
    )
    if kind == "upstreams":
        return (upstreams,)
    deny = AuthzPolicy(
        name="no-admin",
        service="catalog",
        action="DENY",
        rules=(AuthzRule(paths=("/admin*",)), AuthzRule(not_namespaces=("shop",))),
    )
    allows = [
        AuthzPolicy(
            name=f"allow-{n}",
            service="catalog",
            rules=(
                AuthzRule(
                    principals=(MESH + f"caller{n}",),
                    methods=("GET", "HEAD"),
                    paths=("/api/*", "*.js"),
                    headers=(HeaderCondition(name="x-env", values=("dev",)),),
                ),
            ),
        )
        for n in range(5)
    ]
    other = AuthzPolicy(name="elsewhere", service="reviews", rules=())
    return (deny, *allows, other, AuthzPolicy(name="default-deny", service="catalog"), upstreams)


def _round(kind: str, requests: int) -> float:
    config = ProxyConfig(
        version=1, mesh="shop", instance="catalog-0", service="catalog",
        authorization=_policies(kind),
    )  # fmt: skip
    headers = [(b"host", b"catalog"), (b"x-env", b"dev"), (b"user-agent", b"bench")]
    started = time.perf_counter()
    for _ in range(requests):
        denied = check_request(
            config, service="catalog", at_gateway=False, method=b"GET",
            target=b"/items/42?x=1", headers=headers, identity=CALLER, client_address=None, now=0.0,
        )  # fmt: skip
        assert denied is None
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    compare(__doc__.splitlines()[0], "policies", ("none", "upstreams", "eight"), _round, requests=100_000)


if __name__ == "__main__":
    main()
