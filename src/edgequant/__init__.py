"""edgequant — quantize a CNN once, run it on every edge runtime, measure it the MLPerf way.

Importing this package is cheap: no runtime (ONNX Runtime, OpenVINO, LiteRT, torch) is imported
until a backend or model is used.

Example:
    >>> import edgequant
    >>> edgequant.__version__
    '0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
