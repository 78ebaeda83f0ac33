"""Datasets named ``KIND[:PATH]``: ``imagenet:DIR``, ``digits``, ``synthetic``, ``npy:FILE``.

Example:
    >>> from edgequant.data import open_dataset
    >>> from edgequant.input_spec import InputSpec
    >>> open_dataset("synthetic:4", InputSpec.imagenet()).load([0]).shape
    (1, 3, 224, 224)
"""

from edgequant.data.base import Dataset
from edgequant.data.calibration import calibration_samples, select_indices, validate_batch
from edgequant.data.labels import validate_labels
from edgequant.data.registry import ArrayDataset, SubsetDataset, open_dataset, parse_dataset_spec

__all__ = [
    "ArrayDataset",
    "Dataset",
    "SubsetDataset",
    "calibration_samples",
    "open_dataset",
    "parse_dataset_spec",
    "select_indices",
    "validate_batch",
    "validate_labels",
]
