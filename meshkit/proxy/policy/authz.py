"""Whether a request may reach a service: Istio's AuthorizationPolicy decision, pure.

``decide(facts, policies)`` applies the policies of the called service
(``meshkit.api.authz``): DENY first, then ALLOW; a service without ALLOW
policies allows what no DENY policy matches.  The facts come from the
verified peer certificate (``principal``), never from a header.

Client-address conditions (``ip_blocks``) are the gateway's: only the gateway
sees the client.  The gateway decides with ``client_address`` set; an inbound
sidecar called by the gateway (``behind_gateway``) takes those conditions as
the gateway already settled them (an ALLOW rule's hold, a DENY rule's do not
match: the gateway refused those requests); for any other caller they do not
hold, since its requests did not come through the gateway.

A request's JWT (``meshkit.proxy.policy.jwt``) is verified wherever a
decision is made -- the gateway and the called instance's inbound sidecar --
from the ``Authorization`` header itself, so its ``request_principal`` and
claims are only what a signature of a key the Meshfile names vouches for (a
client cannot forge them with a header); an invalid token is a 401.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import attrs

from meshkit.api.authz import AuthzPolicy, AuthzRule, HeaderCondition, address_in, pattern_matches
from meshkit.ca.errors import InvalidSpiffeId
from meshkit.ca.spiffe import TRUST_DOMAIN, parse_workload_identity, spiffe_id
from meshkit.proxy.codec.messages import Headers
from meshkit.proxy.config import ProxyConfig
from meshkit.proxy.policy.jwt import JWT_FLAG, Unauthenticated, authenticate, claim_values
from meshkit.proxy.policy.matching import joined_header

RBAC = "RBAC"
"""Envoy's response flag for a request refused by authorization."""
GATEWAY_SERVICE = "gateway"
"""The service name in the gateway's SPIFFE ID."""
_MESHKIT_NS = f"spiffe://{TRUST_DOMAIN}/ns/"


def namespace_of(principal: str | None) -> str | None:
    """The mesh (namespace) of a meshkit identity, or None for any other SPIFFE ID."""
    if principal is None or not principal.startswith(_MESHKIT_NS):
        return None
    namespace, _, rest = principal[len(_MESHKIT_NS) :].partition("/")
    return namespace if rest.startswith("sa/") else None


@attrs.frozen(kw_only=True)
class RequestFacts:
    """What a decision may look at: the request, and who sent it (verified)."""

    method: str
    path: str  # normalised, without the query
    headers: Headers = attrs.field(factory=list)
    principal: str | None = None  # the peer's SPIFFE ID; None: no certificate
    client_address: str | None = None  # the gateway's client (set only at the gateway)
    behind_gateway: bool = False  # an inbound sidecar called by the gateway
    request_principal: str | None = None  # a verified JWT's issuer/subject
    claims: Mapping[str, object] = attrs.field(factory=dict)  # its claims
    namespace: str | None = attrs.field(
        default=attrs.Factory(lambda facts: namespace_of(facts.principal), takes_self=True)
    )


@attrs.frozen(kw_only=True)
class Allowed:
    pass


@attrs.frozen(kw_only=True)
class Denied:
    """A refusal: the policy that decided, its ``FILE:LINE``, and a sentence for people."""

    policy: str
    origin: str
    reason: str
    status: int = 403
    flag: str = RBAC


Decision = Allowed | Denied
ALLOWED = Allowed()


def _field(
    values: Sequence[str], not_values: Sequence[str], matches: Callable[[str], bool]
) -> bool:
    """A condition and its ``not_`` form: some of ``values`` (if any), none of ``not_values``."""
    if not values and not not_values:
        return True
    if values and not any(matches(value) for value in values):
        return False
    return not any(matches(value) for value in not_values)


def _header_holds(condition: HeaderCondition, headers: Headers) -> bool:
    value = joined_header(headers, condition.name.encode("latin-1"))
    if value is None:
        return not condition.values and bool(condition.not_values)
    return _field(condition.values, condition.not_values, lambda p: pattern_matches(p, value))


def _claim_holds(condition: HeaderCondition, claims: Mapping[str, object]) -> bool:
    values = claim_values(claims, condition.name)
    if values is None:
        return not condition.values and bool(condition.not_values)
    return _field(
        condition.values,
        condition.not_values,
        lambda p: any(pattern_matches(p, value) for value in values),
    )


def _request_principal_holds(rule: AuthzRule, principal: str | None) -> bool:
    return _field(
        rule.request_principals,
        rule.not_request_principals,
        lambda p: principal is not None and pattern_matches(p, principal),
    )


def _address_holds(rule: AuthzRule, facts: RequestFacts, action: str) -> bool:
    if not rule.speaks_of_client_address:
        return True
    address = facts.client_address
    if address is None:
        return facts.behind_gateway and action == "ALLOW"
    return _field(rule.ip_blocks, rule.not_ip_blocks, lambda block: address_in(address, block))


def rule_matches(rule: AuthzRule, facts: RequestFacts, action: str = "ALLOW") -> bool:
    """Whether every condition of ``rule`` holds for ``facts``."""
    principal, namespace = facts.principal or "", facts.namespace or ""
    return (
        _field(rule.principals, rule.not_principals, lambda p: p == principal)
        and _field(rule.namespaces, rule.not_namespaces, lambda n: n == namespace)
        and _field(rule.methods, rule.not_methods, lambda m: m == facts.method)
        and _field(rule.paths, rule.not_paths, lambda p: pattern_matches(p, facts.path))
        and all(_header_holds(condition, facts.headers) for condition in rule.headers)
        and _request_principal_holds(rule, facts.request_principal)
        and all(_claim_holds(condition, facts.claims) for condition in rule.claims)
        and _address_holds(rule, facts, action)
    )


def policy_matches(policy: AuthzPolicy, facts: RequestFacts) -> bool:
    return any(rule_matches(rule, facts, policy.action) for rule in policy.rules)


def caller_of(facts: RequestFacts) -> str:
    """The caller as a reason names it."""
    if facts.principal is None:
        return "a caller without a mesh certificate"
    try:
        return repr(parse_workload_identity(facts.principal).service)
    except InvalidSpiffeId:
        return facts.principal


def decide(facts: RequestFacts, policies: Sequence[AuthzPolicy]) -> Decision:
    """Allow or deny one request to the service these ``policies`` protect."""
    what = f"{facts.method} {facts.path}"
    for policy in policies:
        if policy.action == "DENY" and policy_matches(policy, facts):
            reason = f"{what} from {caller_of(facts)} denied by policy '{policy.name}'"
            return Denied(
                policy=policy.name, origin=policy.origin, reason=f"{reason} ({policy.origin})"
            )
    allows = [policy for policy in policies if policy.action == "ALLOW"]
    if not allows or any(policy_matches(policy, facts) for policy in allows):
        return ALLOWED
    first = allows[0]
    names = ", ".join(f"'{policy.name}' ({policy.origin})" for policy in allows)
    return Denied(
        policy=first.name,
        origin=first.origin,
        reason=f"{what} from {caller_of(facts)} matches no ALLOW policy: {names}",
    )


def policies_of(policies: Sequence[AuthzPolicy], service: str) -> tuple[AuthzPolicy, ...]:
    """The policies that protect ``service``."""
    return tuple(policy for policy in policies if policy.service == service)


def gateway_decides(policies: Sequence[AuthzPolicy]) -> bool:
    """Whether the gateway must decide (some rule speaks of the client address)."""
    return any(rule.speaks_of_client_address for policy in policies for rule in policy.rules)


def check_request(
    config: ProxyConfig,
    *,
    service: str,
    at_gateway: bool,
    method: bytes,
    target: bytes,
    headers: Headers,
    identity: str | None,
    client_address: str | None,
    now: float,
) -> Denied | None:
    """The refusal of one request to ``service`` by its policies, or None to let it pass.

    An inbound sidecar decides on every request (``identity``: the verified
    peer); the gateway (``at_gateway``) only when a rule of the service speaks
    of the client address, which only it sees.  Both refuse an invalid JWT
    (401) and give a valid one's principal and claims to the decision.
    """
    token = authenticate(config.request_authentication, headers, now=now)
    if isinstance(token, Unauthenticated):
        reason = f"{method.decode('latin-1')} {target.decode('latin-1')}: {token.reason}"
        return Denied(
            policy="request-authentication",
            origin=token.origin,
            reason=f"{reason} ({token.origin})" if token.origin else reason,
            status=401,
            flag=JWT_FLAG,
        )
    policies = _policies_of(config.authorization, service)
    if not policies or (at_gateway and not gateway_decides(policies)):
        return None
    gateway = _gateway_identity(config.mesh)
    facts = RequestFacts(
        method=method.decode("latin-1"),
        path=target.partition(b"?")[0].decode("latin-1"),
        headers=headers,
        principal=gateway if at_gateway else identity,
        client_address=client_address if at_gateway else None,
        behind_gateway=not at_gateway and identity == gateway,
        request_principal=None if token is None else token.principal,
        claims={} if token is None else token.claims,
    )
    decision = decide(facts, policies)
    return decision if isinstance(decision, Denied) else None


@functools.lru_cache(maxsize=8)
def _gateway_identity(mesh: str) -> str:
    return spiffe_id(mesh, GATEWAY_SERVICE)


_by_service: dict[str, tuple[AuthzPolicy, ...]] = {}
_indexed: list[tuple[AuthzPolicy, ...]] = [()]


def _policies_of(policies: tuple[AuthzPolicy, ...], service: str) -> tuple[AuthzPolicy, ...]:
    """``policies_of``, indexed once per config's policies (a sidecar serves one at a time)."""
    if policies is not _indexed[0]:
        _indexed[0] = policies
        _by_service.clear()
    found = _by_service.get(service)
    if found is None:
        found = _by_service[service] = policies_of(policies, service)
    return found
