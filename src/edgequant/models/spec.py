"""Old home of :class:`~edgequant.input_spec.InputSpec`, kept only for callers outside ``models/``.

The input spec is the contract between a model and its data, so it lives in the neutral
:mod:`edgequant.input_spec` that both ``models/`` and ``data/`` import. Delete this module once
``cli/models_cmd.py``, ``quant/qat_export.py``, ``tests/helpers.py`` and
``tests/backends/test_onnxruntime.py`` import from :mod:`edgequant.input_spec`.

Example:
    >>> from edgequant.models.spec import InputSpec
    >>> InputSpec.imagenet().shape
    (3, 224, 224)
"""

from edgequant.input_spec import IMAGENET_MEAN_255, IMAGENET_STD_255, InputSpec

__all__ = ["IMAGENET_MEAN_255", "IMAGENET_STD_255", "InputSpec"]
