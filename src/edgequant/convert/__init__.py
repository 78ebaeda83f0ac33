"""Conversions between model formats and their numerical checks.

- :mod:`~edgequant.convert.check`: compare fp32 outputs (cosine, max abs error, SQNR, top-1
  agreement) and run a model the way its source format defines it;
- :mod:`~edgequant.convert.onnx_opset`: upgrade an old-opset ``.onnx`` for the quantizers;
- :mod:`~edgequant.convert.tflite_outputs`: keep the first output of a several-output ``.tflite``;
- :mod:`~edgequant.convert.source`: the ``model_source`` record of an artifact.

Example:
    >>> from edgequant.convert import compare
    >>> import numpy as np
    >>> compare(np.eye(3), np.eye(3))["top1_agreement_pct"]
    100.0
"""

from edgequant.convert.check import compare, reference_runner
from edgequant.convert.source import model_source, require_source

__all__ = ["compare", "model_source", "reference_runner", "require_source"]
