"""``meshkit export``: a Meshfile's spec as the manifests of another platform.

One target, Kubernetes with Istio: ``export_kubernetes(spec, options)`` gives
every object as plain data, each with the Meshfile line it came from, and the
``Finding``s (settings with no equivalent, and what was done instead);
``documents`` writes the objects as multi-document YAML.  Nothing here does
I/O: the command is ``meshkit.cli.export``.
"""

from meshkit.export.kubernetes import export_kubernetes, file_names
from meshkit.export.model import Export, ExportOptions, Finding, Manifest
from meshkit.export.yamltext import document, documents

__all__ = [
    "Export",
    "ExportOptions",
    "Finding",
    "Manifest",
    "document",
    "documents",
    "export_kubernetes",
    "file_names",
]
