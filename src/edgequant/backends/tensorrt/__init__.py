"""The ``tensorrt`` backend. See :mod:`.backend`.

Example:
    >>> from edgequant.backends.tensorrt import TensorRtBackend
    >>> TensorRtBackend.name
    'tensorrt'
"""

from edgequant.backends.tensorrt.backend import TensorRtBackend
from edgequant.backends.tensorrt.session import TensorRtSession

__all__ = ["TensorRtBackend", "TensorRtSession"]
