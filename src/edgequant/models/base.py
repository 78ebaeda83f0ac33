"""The model handle every stage passes along: an fp32 module (or a user's ONNX file) + its spec.

Example:
    >>> from edgequant.models import load_model
    >>> m = load_model("digits_cnn")
    >>> m.input_spec.shape
    (1, 32, 32)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgequant.input_spec import InputSpec

if TYPE_CHECKING:
    import torch.nn as nn


#: ``Model.source_format`` of a model read from a ``.tflite`` file
TFLITE = ".tflite"


@dataclass(kw_only=True)
class Model:
    """A model ready for quantization.

    ``module`` is the fp32 ``nn.Module`` in eval mode; it is ``None`` for a user's ``.onnx``
    file (``onnx_path`` is set) and for a runtime's own format (``.tflite``, an IR ``.xml``:
    ``source_path`` is set), in which case backends that need PyTorch report n/a.
    ``source_format`` names where the model came from (``zoo``, ``pth``, ``pt2``, ``factory``,
    ``onnx``, ``.tflite``, ``ir``); ``weights_hash`` identifies the weights (part of the
    artifact cache key).
    """

    name: str
    family: str
    input_spec: InputSpec
    num_classes: int
    module: nn.Module | None = None
    onnx_path: Path | None = None
    weights: str | None = None  # where the weights came from, in words; None = random init
    weights_hash: str = "random"
    info: dict[str, Any] = field(default_factory=dict)
    #: the file a runtime reads natively when there is no module nor ONNX file (.tflite, .xml)
    source_path: Path | None = None
    source_format: str = "zoo"

    def __post_init__(self) -> None:
        # a model made from an ONNX file alone (no module) is an ONNX source, whoever built it
        if self.source_format == "zoo" and self.module is None and self.onnx_path is not None:
            self.source_format = "onnx"

    @property
    def pretrained(self) -> bool:
        return self.weights is not None

    @property
    def key(self) -> str:
        """A short string naming the model and its weights, for cache keys and run names."""
        digest, plus, techniques = self.weights_hash.partition("+")
        key = f"{self.name}-{digest[:10]}{plus}{techniques}"
        if self.info.get("input_options"):
            # an input spec the user chose (shape, layout, normalisation) builds other artifacts
            spec = hashlib.sha1(self.input_spec.identity.encode()).hexdigest()[:8]
            key += f"-in{spec}"
        return key


class Samples(Protocol):
    """What running or training a model needs of its data: sized, loadable, maybe labelled.

    :class:`edgequant.data.Dataset` satisfies it; ``models/`` names this protocol instead of
    importing ``data/``, so the two packages stay independent (data feeds models, neither
    imports the other).

    Example:
        >>> from edgequant.data import open_dataset
        >>> from edgequant.input_spec import InputSpec
        >>> def first(samples: Samples) -> tuple[int, ...]:
        ...     return samples.load([0]).shape
        >>> first(open_dataset("synthetic:2", InputSpec.imagenet(32)))
        (1, 3, 32, 32)
    """

    spec: str

    def __len__(self) -> int: ...

    @property
    def labels(self) -> np.ndarray | None: ...

    def load(self, indices: Sequence[int]) -> np.ndarray: ...
