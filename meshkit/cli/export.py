"""``meshkit export kubernetes``: the Meshfile as Kubernetes + Istio manifests.

``meshkit export kubernetes [-f FILE] [--namespace NS] [--image SERVICE=IMAGE ...]
[-o DIR | -] [--strict]`` writes multi-document YAML that ``kubectl apply -f``
takes as it is: to stdout (``-o -``, the default) or one numbered file per
object in DIR.  What has no Kubernetes or Istio equivalent is listed on
stderr as ``FILE:LINE: ...``, with what was done instead; ``--strict`` makes
that an error (exit 1, nothing written).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from meshkit.cli.check import add_meshfile_arguments, evaluate_for_command
from meshkit.dsl.checks.suggest import did_you_mean
from meshkit.dsl.checks.validate import is_dns_label
from meshkit.dsl.spec import MeshSpec
from meshkit.export import ExportOptions, documents, export_kubernetes, file_names
from meshkit.export.model import DEFAULT_GRACE, Export

EXPORTED_FILE = re.compile(r"[0-9]{2,}-[a-z]+-[a-z0-9.-]+\.yaml")
"""The files ``-o DIR`` writes (``07-deployment-catalog-v1.yaml``)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the Meshfile as the manifests of another platform",
        description="Write the Meshfile as the manifests of another platform.",
    )
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    kubernetes = targets.add_parser(
        "kubernetes",
        help="Kubernetes + Istio manifests (multi-document YAML)",
        description="Write the Meshfile as Kubernetes and Istio objects that "
        "`kubectl apply -f` takes as they are, each annotated with its Meshfile line.",
    )
    add_meshfile_arguments(kubernetes)
    kubernetes.add_argument(
        "--namespace", metavar="NS", default=None, help="the namespace (default: the mesh's name)"
    )
    kubernetes.add_argument(
        "--image",
        metavar="SERVICE=IMAGE",
        action="append",
        default=[],
        help="the container image of a service (or of one version: catalog-v2=IMAGE); "
        "repeat for each; wins over image= in the Meshfile",
    )
    kubernetes.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default="-",
        help="a directory for one file per object, or - for stdout (the default)",
    )
    kubernetes.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"the pods' termination grace period (default: {DEFAULT_GRACE:g}, as meshkit up)",
    )
    kubernetes.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1) when anything in the Meshfile has no Kubernetes/Istio equivalent",
    )


def parse_images(given: list[str], spec: MeshSpec) -> dict[str, str] | str:
    """``--image`` values as a map, or the message saying which one is wrong."""
    known = [*spec.service_names(), *(deployed.key for deployed in spec.services)]
    images: dict[str, str] = {}
    for item in given:
        target, separator, image = item.partition("=")
        if not separator or not target or not image:
            return f"--image {item!r}: write SERVICE=IMAGE (for example catalog=shop/catalog:1.4)"
        if target not in known:
            return f"--image {item!r}: no service {target!r} in the Meshfile" + did_you_mean(
                target, known
            )
        images[target] = image
    return images


def run(args: argparse.Namespace) -> int:
    evaluated = evaluate_for_command(args)
    if evaluated is None:
        return 1
    meshfile, spec = evaluated
    images = parse_images(args.image, spec)
    if isinstance(images, str):
        print(f"meshkit export: {images}", file=sys.stderr)
        return 2
    if args.namespace is not None and not is_dns_label(args.namespace):
        print(
            f"meshkit export: --namespace {args.namespace!r} is not a Kubernetes namespace name "
            "(lowercase letters, digits and '-', at most 63 characters)",
            file=sys.stderr,
        )
        return 2
    options = ExportOptions(
        namespace=args.namespace,
        images=images,
        grace=args.grace,
        base=os.path.dirname(os.path.abspath(meshfile)),
    )
    result = export_kubernetes(spec, options)
    for finding in result.findings:
        print(finding.located(options.base), file=sys.stderr)
    if args.strict and result.findings:
        print(
            f"meshkit export: {len(result.findings)} setting(s) have no Kubernetes/Istio "
            "equivalent (--strict); nothing written",
            file=sys.stderr,
        )
        return 1
    _write(result, args.output)
    return 0


def _write(result: Export, output: str) -> None:
    if output == "-":
        sys.stdout.write(documents(manifest.body for manifest in result.manifests))
        sys.stdout.flush()
        return
    os.makedirs(output, exist_ok=True)
    names = file_names(result.manifests)
    # A file an earlier export wrote for an object that is gone would still be applied.
    stale = [
        name for name in os.listdir(output) if EXPORTED_FILE.fullmatch(name) and name not in names
    ]
    for name in stale:
        os.remove(os.path.join(output, name))
    for name, manifest in zip(names, result.manifests, strict=True):
        with open(os.path.join(output, name), "w", encoding="utf-8") as handle:
            handle.write(documents([manifest.body]))
    removed = f" (removed {len(stale)} left from an earlier export)" if stale else ""
    print(f"wrote {len(result.manifests)} objects to {output}{removed}", file=sys.stderr)
