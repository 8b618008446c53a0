"""Worker manifests: the ``iii.worker.yaml`` schema and the manifests of the built-in actors.

Built-in actors and user workers are described the same way (DESIGN.md).
"""

from manifests.problems import ConfigProblem
from manifests.schema import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    RESERVED_ENV,
    ManifestError,
    ManifestReport,
    builtin_manifest,
    check_worker_name,
    load_manifest,
    parse_manifest,
    parse_manifest_text,
)
from manifests.yamlsource import YamlDoc, load_yaml, resolve_scalar

__all__ = [
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "RESERVED_ENV",
    "ConfigProblem",
    "ManifestError",
    "ManifestReport",
    "YamlDoc",
    "builtin_manifest",
    "check_worker_name",
    "load_manifest",
    "load_yaml",
    "parse_manifest",
    "parse_manifest_text",
    "resolve_scalar",
]
