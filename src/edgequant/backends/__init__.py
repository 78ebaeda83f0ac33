"""Runtimes behind one contract. See :mod:`edgequant.backends.base`.

Example:
    >>> from edgequant.backends import backend_names
    >>> backend_names()[:4]
    ['pytorch', 'onnxruntime', 'openvino', 'litert']
"""

from edgequant.backends.base import (
    Artifact,
    Backend,
    InspectReport,
    OpInfo,
    Session,
    backend_names,
    canonical_name,
    get_backend,
    register_backend,
    runtime_names,
)

__all__ = [
    "Artifact",
    "Backend",
    "InspectReport",
    "OpInfo",
    "Session",
    "backend_names",
    "canonical_name",
    "get_backend",
    "register_backend",
    "runtime_names",
]
