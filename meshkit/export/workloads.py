"""The Kubernetes side of an export: Namespace, ServiceAccounts, Services, Deployments.

What a Meshfile's service becomes, and why:

* a ServiceAccount per service, so Istio's identity of its pods is
  ``spiffe://cluster.local/ns/NS/sa/SERVICE``, the shape of meshkit's;
* a Service per service, port 80 named for its protocol (``http``, ``http2``,
  ``grpc``: Istio's protocol selection) to the pods' port of the same name;
* a Deployment per version (``catalog-v1``), labelled ``app`` and ``version``
  (Istio's subsets), with the replicas, the environment meshkit gives an app
  (``PORT``, ``MESHKIT_*``, ``<UPSTREAM>_URL``/``_ADDR`` now naming the
  upstream's Service), the health check as readiness and liveness probes, and
  the sidecar started before the app, as meshkit does.

Settings with no Kubernetes equivalent become ``Finding``s.
"""

from __future__ import annotations

import math
from typing import Any

from meshkit.dsl.spec import HealthCheck, MeshSpec, Origin, RestartPolicy, ServiceSpec
from meshkit.export.model import (
    ORIGIN_ANNOTATION,
    ExportOptions,
    Finding,
    Manifest,
    Notes,
    show_origin,
)

APP_PORT = 8080
"""The container port of an app whose environment does not set ``PORT``."""
SERVICE_PORT = 80
PORT_NAMES = {"http1": "http", "http2": "http2", "grpc": "grpc"}
APP_PROTOCOLS = {"http1": "http", "http2": "kubernetes.io/h2c", "grpc": "grpc"}
# Istio holds the app until its sidecar is ready, as meshkit's supervisor does.
PROXY_CONFIG = '{"holdApplicationUntilProxyStarts": true}'


def metadata(
    name: str,
    origin: Origin,
    options: ExportOptions,
    *,
    namespace: str | None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``metadata`` with the namespace, labels and the origin annotation."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    meta["annotations"] = {ORIGIN_ANNOTATION: show_origin(origin, options.base)}
    return meta


def namespace_of(spec: MeshSpec, options: ExportOptions) -> str:
    return options.namespace if options.namespace is not None else spec.name


def namespace_manifest(spec: MeshSpec, options: ExportOptions) -> Manifest:
    """The Namespace, labelled so Istio injects a sidecar into every pod."""
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(
            namespace_of(spec, options),
            spec.origin,
            options,
            namespace=None,
            labels={"istio-injection": "enabled"},
        ),
    }
    return Manifest(body=body, origin=spec.origin)


def service_account(first: ServiceSpec, namespace: str, options: ExportOptions) -> Manifest:
    body = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(
            first.name, first.origin, options, namespace=namespace, labels={"app": first.name}
        ),
    }
    return Manifest(body=body, origin=first.origin)


def service(first: ServiceSpec, namespace: str, options: ExportOptions) -> Manifest:
    """The Service of every version of ``first.name``: port 80 to the pods' named port."""
    port_name = PORT_NAMES[first.protocol]
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            first.name, first.origin, options, namespace=namespace, labels={"app": first.name}
        ),
        "spec": {
            "selector": {"app": first.name},
            "ports": [
                {
                    "name": port_name,
                    "port": SERVICE_PORT,
                    "targetPort": port_name,
                    "protocol": "TCP",
                    "appProtocol": APP_PROTOCOLS[first.protocol],
                }
            ],
        },
    }
    return Manifest(body=body, origin=first.origin)


def upstream_environment(upstreams: tuple[str, ...]) -> list[dict[str, Any]]:
    """``<UPSTREAM>_URL`` and ``_ADDR`` (named as the supervisor names them), to the Service."""
    env: list[dict[str, Any]] = []
    for upstream in upstreams:
        name = upstream.upper().replace("-", "_")
        env.append({"name": f"{name}_URL", "value": f"http://{upstream}"})
        env.append({"name": f"{name}_ADDR", "value": f"{upstream}:{SERVICE_PORT}"})
    return env


def deployment(
    deployed: ServiceSpec, namespace: str, options: ExportOptions, findings: list[Finding]
) -> Manifest:
    """The Deployment of one version of a service."""
    labels = {"app": deployed.name}
    if deployed.version is not None:
        labels["version"] = deployed.version
    port = _app_port(deployed, findings)
    container = _container(deployed, port, options, findings)
    _note_runtime_only(deployed, findings)
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            deployed.key, deployed.origin, options, namespace=namespace, labels=dict(labels)
        ),
        "spec": {
            "replicas": deployed.replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {"proxy.istio.io/config": PROXY_CONFIG},
                },
                "spec": {
                    "serviceAccountName": deployed.name,
                    "terminationGracePeriodSeconds": math.ceil(options.grace),
                    "containers": [container],
                },
            },
        },
    }
    return Manifest(body=body, origin=deployed.origin)


def _container(
    deployed: ServiceSpec, port: int, options: ExportOptions, findings: list[Finding]
) -> dict[str, Any]:
    port_name = PORT_NAMES[deployed.protocol]
    image = _image(deployed, options)
    container: dict[str, Any] = {"name": deployed.name}
    if image is None:
        image = f"{deployed.name}:{deployed.version or 'latest'}"
        container["image"] = image
        container["command"] = ["/bin/sh", "-c", deployed.command]
        _notes(deployed, findings).add(
            "run= is a local command and no image is given",
            f"image {image!r} (a placeholder) runs the command; give image= "
            f"or --image {deployed.name}=IMAGE",
        )
    else:
        container["image"] = image
    container["ports"] = [{"name": port_name, "containerPort": port, "protocol": "TCP"}]
    container["env"] = _environment(deployed, port)
    check = deployed.health if deployed.health is not None else HealthCheck(kind="tcp")
    container["readinessProbe"] = _probe(check, port_name, deployed, findings)
    container["livenessProbe"] = {**_probe(check, port_name, deployed, []), "successThreshold": 1}
    return container


def _image(deployed: ServiceSpec, options: ExportOptions) -> str | None:
    for key in (deployed.key, deployed.name):
        if key in options.images:
            return options.images[key]
    return deployed.image


def _app_port(deployed: ServiceSpec, findings: list[Finding]) -> int:
    given = deployed.env.get("PORT")
    if given is None:
        return APP_PORT
    if given.isdigit() and 0 < int(given) < 65536:
        return int(given)
    _notes(deployed, findings).add(
        f"env PORT={given!r} is not a port number", f"the container port is {APP_PORT}"
    )
    return APP_PORT


def _environment(deployed: ServiceSpec, port: int) -> list[dict[str, Any]]:
    ours: list[dict[str, Any]] = [
        {"name": "PORT", "value": str(port)},
        {"name": "MESHKIT_SERVICE", "value": deployed.name},
    ]
    if deployed.version is not None:
        ours.append({"name": "MESHKIT_VERSION", "value": deployed.version})
    ours.append(
        {"name": "MESHKIT_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    )
    ours.extend(upstream_environment(deployed.upstreams))
    # The Meshfile's env wins over the mesh's variables, as it does under ``meshkit up``.
    env = [item for item in ours if item["name"] not in deployed.env]
    env.extend({"name": name, "value": value} for name, value in deployed.env.items())
    return env


def _probe(
    check: HealthCheck, port_name: str, deployed: ServiceSpec, findings: list[Finding]
) -> dict[str, Any]:
    probe: dict[str, Any] = (
        {"httpGet": {"path": check.path, "port": port_name}}
        if check.kind == "http"
        else {"tcpSocket": {"port": port_name}}
    )
    timings = (
        ("periodSeconds", check.period, 1),
        ("timeoutSeconds", check.timeout, 1),
        ("initialDelaySeconds", check.initial_delay, 0),
    )
    notes = _notes(deployed, findings, what=" health check")
    for field, seconds, least in timings:
        whole = max(least, math.ceil(seconds))
        if whole != seconds:
            notes.add(
                f"{field} must be whole seconds (at least {least}), not {seconds:g}",
                f"{field}: {whole}",
            )
        probe[field] = whole
    probe["successThreshold"] = check.success_threshold
    probe["failureThreshold"] = check.failure_threshold
    return probe


def _note_runtime_only(deployed: ServiceSpec, findings: list[Finding]) -> None:
    """Findings for the settings that only meshkit's supervisor understands."""
    note = _notes(deployed, findings).add

    if deployed.watch:
        note("watch= restarts on a local file change", "dropped (a cluster rolls out new images)")
    if deployed.depends_on:
        note(
            f"depends_on={list(deployed.depends_on)} orders start-up",
            "dropped: Kubernetes starts every Deployment at once (readiness probes gate "
            "traffic; the app must retry its upstreams)",
        )
    restart = deployed.restart_policy
    if restart.mode != "always":
        note(
            f"restart mode {restart.mode!r}",
            "a Deployment always restarts its pods (restartPolicy: Always)",
        )
    elif restart != RestartPolicy():
        note(
            "restart back-off settings",
            "dropped: the kubelet's crash-loop back-off (10s doubling to 5m) applies",
        )


def _notes(deployed: ServiceSpec, findings: list[Finding], *, what: str = "") -> Notes:
    subject = f"service {deployed.key!r}{what}"
    return Notes(findings=findings, subject=subject, origin=deployed.origin)
