"""Validate exported objects against the Kubernetes API schema and Istio's CRD schemas.

``validate(body)`` raises ``AssertionError`` naming the object and the path of
the first problem.  Core kinds go through ``kubernetes_validate`` (Kubernetes
1.37, strict: unknown fields are errors).  Istio kinds go through the
``openAPIV3Schema`` of the CRD in ``istio-1.30.3-crds-v1.yaml``, made strict
the same way, with the CRDs' CEL rules checked by the Python equivalents in
``CEL_RULES``; their ``metadata`` is checked as Kubernetes' ObjectMeta.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import referencing
import yaml

KUBERNETES_VERSION = "1.37"
ISTIO_CRDS = pathlib.Path(__file__).with_name("istio-1.30.3-crds-v1.yaml")
CORE_KINDS = frozenset(("Namespace", "ServiceAccount", "Service", "Deployment"))

_GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_AT_MOST_ONE = re.compile(r"\(has\(self\.\w+\) \? 1 : 0\)( \+ \(has\(self\.\w+\) \? 1 : 0\))* <= 1")


def go_duration_seconds(text: str) -> float | None:
    if not isinstance(text, str) or not _GO_DURATION.fullmatch(text):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def _duration_at_least_1ms(value: Any) -> bool:
    seconds = go_duration_seconds(value)
    return seconds is not None and seconds >= 0.001


def _no_principals_with_service_accounts(value: Any) -> bool:
    if "serviceAccounts" in value or "notServiceAccounts" in value:
        return not any(
            key in value for key in ("principals", "notPrincipals", "namespaces", "notNamespaces")
        )
    return True


def _port_level_mtls_needs_selector(value: Any) -> bool:
    if "portLevelMtls" not in value:
        return True
    return bool(value.get("selector", {}).get("matchLabels"))


CEL_RULES: dict[str, Callable[[Any], bool]] = {
    "duration(self) >= duration('1ms')": _duration_at_least_1ms,
    'self.all(key, !key.contains("*"))': lambda value: all("*" not in key for key in value),
    "self.all(key, key.size() != 0)": lambda value: all(key for key in value),
    '!self.contains("*")': lambda value: "*" not in value,
    "self.size() == 0": lambda value: len(value) == 0,
    "self.all(key, 0 < int(key) && int(key) <= 65535)": lambda value: all(
        key.isdigit() and 0 < int(key) <= 65535 for key in value
    ),
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&\n"
    "!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true": (
        _no_principals_with_service_accounts
    ),
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? "
    "self.selector.matchLabels : {}).size() > 0) : true": _port_level_mtls_needs_selector,
    # EnvoyFilter: a port number, and ``waypoint`` exactly when the context is WAYPOINT.
    "0 < self && self <= 65535": lambda value: 0 < value <= 65535,
    'has(self.context) ? ((self.context == "WAYPOINT") ? has(self.waypoint) : '
    "!has(self.waypoint)) : !has(self.waypoint)": lambda value: (
        value.get("context") == "WAYPOINT"
    )
    == ("waypoint" in value),
}


def _cel_rule(rule: str) -> Callable[[Any], bool]:
    if rule in CEL_RULES:
        return CEL_RULES[rule]
    if _AT_MOST_ONE.fullmatch(rule):
        fields = re.findall(r"has\(self\.(\w+)\)", rule)
        return lambda value: sum(field in value for field in fields) <= 1
    raise AssertionError(f"no Python equivalent for the CRD's CEL rule {rule!r}: add one")


def _kubernetes_validations(
    validator: Any, rules: list[dict[str, str]], instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    for rule in rules:
        if not _cel_rule(rule["rule"])(instance):
            yield jsonschema.ValidationError(f"{instance!r}: {rule.get('message', rule['rule'])}")


_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"x-kubernetes-validations": _kubernetes_validations}
)


def _strict(schema: Any) -> Any:
    """Unknown fields are errors wherever the schema lists the known ones."""
    if isinstance(schema, dict):
        strict = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            strict["additionalProperties"] = False
        return strict
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.cache
def istio_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind)`` -> the strict openAPIV3Schema of the CRD's served v1."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for crd in yaml.load_all(ISTIO_CRDS.read_text(encoding="utf-8"), Loader=loader):
        if not crd:
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                api_version = f"{group}/{version['name']}"
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(api_version, kind)] = _strict(copy.deepcopy(schema))
    return schemas


@functools.cache
def _istio_validator(api_version: str, kind: str) -> Any:
    return _StrictValidator(istio_schemas()[(api_version, kind)])


def _describe(body: dict[str, Any]) -> str:
    return f"{body.get('kind')}/{body.get('metadata', {}).get('name')}"


def validate(body: dict[str, Any]) -> None:
    """Raise AssertionError unless ``body`` is a valid object of its kind."""
    kind = body.get("kind")
    if kind in CORE_KINDS:
        _validate_core(body)
        return
    assert (body.get("apiVersion", ""), kind or "") in istio_schemas(), (
        f"{_describe(body)}: no schema for {body.get('apiVersion')} {kind}"
    )
    assert set(body) <= {"apiVersion", "kind", "metadata", "spec"}, (
        f"{_describe(body)}: {set(body)}"
    )
    _validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": body["metadata"]})
    errors = sorted(
        _istio_validator(body["apiVersion"], body["kind"]).iter_errors(
            {"spec": body.get("spec", {})}
        ),
        key=lambda error: list(error.absolute_path),
    )
    if errors:
        error = errors[0]
        path = ".".join(str(part) for part in error.absolute_path)
        raise AssertionError(f"{_describe(body)}: {path}: {error.message}")


def _validate_core(body: dict[str, Any]) -> None:
    validator = _core_validator(body["apiVersion"], body["kind"])
    errors = sorted(validator.iter_errors(body), key=lambda error: list(error.absolute_path))
    if errors:
        path = ".".join(str(part) for part in errors[0].absolute_path)
        raise AssertionError(f"{_describe(body)}: {path}: {errors[0].message}")


@functools.cache
def _core_definitions() -> referencing.Registry[Any]:
    return referencing.Resource.from_contents(_core_schema("_definitions.json")) @ (
        referencing.Registry()
    )


def _core_schema(name: str) -> Any:
    folder = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    resource = importlib.resources.files("kubernetes_validate").joinpath(f"{folder}/{name}")
    return json.loads(resource.read_text(encoding="utf-8"))


@functools.cache
def _core_validator(api_version: str, kind: str) -> Any:
    """kubernetes_validate's strict schema of one kind (found as it finds it), loaded once."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = _core_schema(f"{kind.lower()}-{group_version}.json")
    return jsonschema.Draft202012Validator(schema, registry=_core_definitions())


def export_validated(meshfile: pathlib.Path, options: Any = None) -> Any:
    """Evaluate ``meshfile``, export it, validate every object; the ``Export``."""
    from meshkit.dsl import evaluate_in_process
    from meshkit.export import ExportOptions, export_kubernetes

    result = evaluate_in_process(meshfile)
    assert result.spec is not None and not result.problems, [str(p) for p in result.problems]
    if options is None:
        options = ExportOptions(base=str(meshfile.parent))
    exported = export_kubernetes(result.spec, options)
    for manifest in exported.manifests:
        validate(manifest.body)
    return exported
