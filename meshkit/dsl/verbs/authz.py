"""The Meshfile's authorization verbs: ``mesh.allow(...)`` and ``mesh.deny(...)``.

They read like Istio's AuthorizationPolicy with one rule: ``source`` is
Istio's ``principals`` (a service name of the mesh, ``"gateway"``, or a whole
SPIFFE ID), ``namespaces`` are mesh names, ``methods``, ``paths`` (``/items``
exact, ``/api/*`` prefix, ``*.js`` suffix, ``*`` any), ``headers`` (name ->
pattern or patterns), ``ip_blocks`` (the client address the gateway sees), each
with a ``not_`` form.  Type mistakes become problems at the caller's line;
whether the values make sense is ``meshkit.dsl.checks.authz``'s to say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypedDict, Unpack

from meshkit.api.authz import AuthzAction, AuthzRule, HeaderCondition
from meshkit.dsl.checks.problems import Problem, describe_value
from meshkit.dsl.evaluate.userframes import caller_origin
from meshkit.dsl.spec import AuthorizationMode, AuthzSpec, JwtSpec, Origin
from meshkit.dsl.verbs.collect import report
from meshkit.dsl.verbs.jwt import declare_jwt
from meshkit.dsl.verbs.reader import ArgumentReader

Names = str | Iterable[str] | None
AUTHORIZATION_MODES: tuple[AuthorizationMode, ...] = ("open", "deny", "upstreams")


def authorization_mode(choice: str | None) -> AuthorizationMode:
    """``Mesh(authorization=...)`` as read (``"open"`` when it was not one of the modes)."""
    for mode in AUTHORIZATION_MODES:
        if choice == mode:
            return mode
    return "open"


class _AuthzReader(ArgumentReader):
    def strings(self, field: str, value: object) -> tuple[str, ...]:
        """Names or patterns: a string, what ``mesh.service`` returned, or a list of them."""
        if value is None:
            return ()
        single = isinstance(value, str) or isinstance(getattr(value, "name", None), str)
        if not single and not (
            isinstance(value, Iterable) and not isinstance(value, bytes | Mapping)
        ):
            self.fail(f"{field} must be a string or a list of strings, got {describe_value(value)}")
            return ()
        items: Iterable[object] = (value,) if single or not isinstance(value, Iterable) else value
        found: list[str] = []
        for item in items:
            text = item if isinstance(item, str) else getattr(item, "name", None)
            if isinstance(text, str):
                found.append(text)
            else:
                self.fail(f"{field} entries must be strings, got {describe_value(item)}")
        return tuple(dict.fromkeys(found))

    def conditions(
        self, field_name: str, values: object, not_values: object, *, lower: bool = True
    ) -> tuple[HeaderCondition, ...]:
        """``headers=``/``claims=`` and their ``not_`` forms: name -> pattern(s)."""
        conditions: dict[str, HeaderCondition] = {}
        for field, given, negated in (
            (field_name, values, False),
            (f"not_{field_name}", not_values, True),
        ):
            if given is None:
                continue
            if not isinstance(given, Mapping):
                self.fail(
                    f"{field} must be a dict of name -> pattern(s), got {describe_value(given)}"
                )
                continue
            for name, patterns in given.items():
                if not isinstance(name, str):
                    self.fail(f"{field}: a name must be a string, got {describe_value(name)}")
                    continue
                key = name.lower() if lower else name
                found = conditions.get(key, HeaderCondition(name=key))
                read = self.names(f"{field} {name!r}", patterns)
                conditions[key] = (
                    HeaderCondition(name=key, values=found.values, not_values=read)
                    if negated
                    else HeaderCondition(name=key, values=read, not_values=found.not_values)
                )
        return tuple(conditions.values())


def declare_authz(
    action: AuthzAction,
    *,
    origin: Origin,
    index: int,
    to: object,
    name: object,
    arguments: Mapping[str, object],
) -> tuple[list[AuthzSpec], list[Problem]]:
    """The policies of one ``mesh.allow``/``mesh.deny`` call (one per service in ``to``)."""
    verb = "allow" if action == "ALLOW" else "deny"
    reader = _AuthzReader(origin=origin, subject=f"mesh.{verb}(...)")
    services = reader.strings("to", to)
    if not services:
        reader.fail("to= must name the service the policy protects")
    rule = AuthzRule(
        principals=reader.strings("source", arguments["source"]),
        not_principals=reader.strings("not_source", arguments["not_source"]),
        namespaces=reader.strings("namespaces", arguments["namespaces"]),
        not_namespaces=reader.strings("not_namespaces", arguments["not_namespaces"]),
        ip_blocks=reader.strings("ip_blocks", arguments["ip_blocks"]),
        not_ip_blocks=reader.strings("not_ip_blocks", arguments["not_ip_blocks"]),
        methods=reader.strings("methods", arguments["methods"]),
        not_methods=reader.strings("not_methods", arguments["not_methods"]),
        paths=reader.strings("paths", arguments["paths"]),
        not_paths=reader.strings("not_paths", arguments["not_paths"]),
        headers=reader.conditions("headers", arguments["headers"], arguments["not_headers"]),
        request_principals=reader.strings("request_principals", arguments["request_principals"]),
        not_request_principals=reader.strings(
            "not_request_principals", arguments["not_request_principals"]
        ),
        claims=reader.conditions(
            "claims", arguments["claims"], arguments["not_claims"], lower=False
        ),
    )
    given_name = reader.optional_text("name", name)
    specs = [
        AuthzSpec(
            name=given_name or f"{verb}-{service}-{index}",
            service=service,
            action=action,
            rule=rule,
            origin=origin,
        )
        for service in services
    ]
    return specs, reader.problems


class Conditions(TypedDict, total=False):
    """The keyword arguments of ``mesh.allow`` and ``mesh.deny``."""

    source: Names
    not_source: Names
    namespaces: Names
    not_namespaces: Names
    methods: Names
    not_methods: Names
    paths: Names
    not_paths: Names
    headers: Mapping[str, str | Iterable[str]] | None
    not_headers: Mapping[str, str | Iterable[str]] | None
    ip_blocks: Names
    not_ip_blocks: Names
    request_principals: Names
    not_request_principals: Names
    claims: Mapping[str, str | Iterable[str]] | None
    not_claims: Mapping[str, str | Iterable[str]] | None
    name: str | None


_CONDITIONS = tuple(name for name in Conditions.__annotations__ if name != "name")


class AuthorizationVerbs:
    """``mesh.allow`` and ``mesh.deny``, part of ``Mesh``."""

    _authz: list[AuthzSpec]
    _jwt: list[JwtSpec]

    def _declare(self, action: AuthzAction, to: object, conditions: Mapping[str, object]) -> None:
        origin = caller_origin()
        index = 1 + sum(1 for spec in self._authz if spec.action == action)
        reader = _AuthzReader(origin=origin, subject=f"mesh.{action.lower()}(...)")
        unknown = sorted(set(conditions) - {*_CONDITIONS, "name"})
        for field in unknown:
            reader.fail(f"unknown argument {field}={conditions[field]!r}")
        arguments = {field: conditions.get(field) for field in _CONDITIONS}
        specs, problems = declare_authz(
            action, origin=origin, index=index, to=to, name=conditions.get("name"),
            arguments=arguments,
        )  # fmt: skip
        report([*reader.problems, *problems])
        self._authz.extend(specs)

    def allow(self, to: object, **conditions: Unpack[Conditions]) -> None:
        """Allow the requests to ``to`` that every given condition matches (Istio's ALLOW).

        Once a service has an ALLOW policy, requests no ALLOW policy matches are
        denied (403, flag ``RBAC``).  Conditions (each also as ``not_...``):
        ``source`` (services of the mesh, ``"gateway"``, or whole SPIFFE IDs),
        ``namespaces``, ``methods``, ``paths``, ``headers`` (name -> patterns),
        ``ip_blocks`` (CIDRs of the client of the gateway), ``request_principals``
        (``issuer/subject`` of the request's verified JWT; ``"*"``: any token) and
        ``claims`` (claim -> patterns); ``name`` names the policy (default
        ``allow-<service>-<n>``).
        """
        self._declare("ALLOW", to, conditions)

    def deny(self, to: object, **conditions: Unpack[Conditions]) -> None:
        """Deny the requests to ``to`` that every given condition matches (Istio's DENY).

        DENY policies are decided before ALLOW ones; the conditions are ``allow``'s.
        """
        self._declare("DENY", to, conditions)

    def request_authentication(self, *, issuer: str, jwks: str, audiences: Names = None) -> None:
        """Verify requests' bearer tokens of ``issuer`` (Istio's RequestAuthentication).

        ``jwks`` is a local JWKS file (relative to the Meshfile); ``audiences``,
        when given, must include the token's ``aud``.  A request with an invalid
        token gets 401 (flag ``JWT``); one without a token passes, and policies
        decide (``mesh.allow(..., request_principals=["*"])`` requires a token).
        """
        origin = caller_origin()
        reader = _AuthzReader(origin=origin, subject="mesh.request_authentication(...)")
        found = reader.strings("audiences", audiences)
        spec, problems = declare_jwt(
            origin=origin, issuer=issuer, audiences=found, jwks=jwks, earlier=self._jwt
        )
        report([*reader.problems, *problems])
        if spec is not None:
            self._jwt.append(spec)
