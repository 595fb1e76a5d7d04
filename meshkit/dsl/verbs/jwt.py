"""The Meshfile's ``mesh.request_authentication(...)``: Istio's RequestAuthentication jwtRule.

``issuer`` (the ``iss`` a token must carry), ``audiences`` (one of them must
be its ``aud``; none given: not checked) and ``jwks``, a local JWKS file
(relative to the Meshfile) read and checked here, so a missing file or a bad
key is a problem at the call's line.
"""

from __future__ import annotations

import os

from meshkit.api.jwt import JwksError, JwtRule, jwks_keys
from meshkit.dsl.checks.problems import Problem
from meshkit.dsl.spec import JwtSpec, Origin
from meshkit.dsl.verbs.collect import base_directory
from meshkit.dsl.verbs.reader import ArgumentReader


def _read_jwks(reader: ArgumentReader, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        reader.fail(f"jwks: cannot read {path} ({error.__class__.__name__}: {error})")
        return ""
    try:
        jwks_keys(text)
    except JwksError as error:
        reader.fail(f"jwks: {path} is not a JWKS of public keys: {error}")
    return text


def declare_jwt(
    *, origin: Origin, issuer: object, audiences: list[str] | tuple[str, ...], jwks: object,
    earlier: list[JwtSpec],
) -> tuple[JwtSpec | None, list[Problem]]:  # fmt: skip
    """The rule of one ``mesh.request_authentication`` call (None when it has problems)."""
    reader = ArgumentReader(origin=origin, subject="mesh.request_authentication(...)")
    name = reader.text("issuer", issuer)
    if isinstance(issuer, str) and not issuer:
        reader.fail("issuer must not be empty (the 'iss' claim tokens carry)")
    for spec in earlier:
        if spec.rule.issuer == name:
            reader.fail(f"issuer {name!r} already has a rule (line {spec.origin.line})")
    path = reader.text("jwks", jwks)
    full = os.path.join(base_directory(origin), path) if path else ""
    text = _read_jwks(reader, full) if full else ""
    if reader.problems:
        return None, reader.problems
    rule = JwtRule(issuer=name, audiences=tuple(audiences), jwks=text)
    return JwtSpec(rule=rule, jwks_file=full, origin=origin), []
