"""PyTorch: Inductor-compiled float and PT2E INT8 as AOTInductor packages. See :mod:`.backend`.

Example:
    >>> from edgequant.backends.pytorch import PyTorchBackend
    >>> PyTorchBackend.name
    'pytorch'
"""

from edgequant.backends.pytorch.backend import GRAPH_NAME, PROGRAM_NAME, PyTorchBackend
from edgequant.backends.pytorch.session import PyTorchSession

__all__ = ["GRAPH_NAME", "PROGRAM_NAME", "PyTorchBackend", "PyTorchSession"]
