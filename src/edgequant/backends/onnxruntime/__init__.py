"""ONNX Runtime (CPU execution provider) with ORT's own quantizer. See :mod:`.backend`.

Example:
    >>> from edgequant.backends.onnxruntime import OnnxRuntimeBackend
    >>> OnnxRuntimeBackend.name
    'onnxruntime'
"""

from edgequant.backends.onnxruntime.backend import OnnxRuntimeBackend
from edgequant.backends.onnxruntime.config import int8_choice
from edgequant.backends.onnxruntime.session import OnnxRuntimeSession

__all__ = ["OnnxRuntimeBackend", "OnnxRuntimeSession", "int8_choice"]
