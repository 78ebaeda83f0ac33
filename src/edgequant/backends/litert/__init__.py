"""LiteRT (TFLite) with XNNPACK, litert-torch and ai-edge-quantizer. See :mod:`.backend`.

Example:
    >>> from edgequant.backends.litert import LiteRtBackend
    >>> LiteRtBackend.name
    'litert'
"""

from edgequant.backends.litert.backend import LiteRtBackend

__all__ = ["LiteRtBackend"]
