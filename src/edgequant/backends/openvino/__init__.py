"""OpenVINO CPU plugin with NNCF quantization. See :mod:`.backend`.

Example:
    >>> from edgequant.backends.openvino import OpenVinoBackend
    >>> OpenVinoBackend.name
    'openvino'
"""

from edgequant.backends.openvino.backend import OpenVinoBackend
from edgequant.backends.openvino.session import OpenVinoSession

__all__ = ["OpenVinoBackend", "OpenVinoSession"]
