"""Label checks at dataset opening: every class index must be a class of the model's output.

One validation for every consumer (``eval``, ``bench --accuracy``, training): a label outside
``[0, num_classes)`` is refused when the dataset is opened, naming where it came from (the
``val_map.txt`` line, the ``synsets.txt`` entry, the ``y[i]`` of an ``.npz``), instead of being
scored as a miss or failing late.

Example:
    >>> from edgequant.data import ArrayDataset
    >>> from edgequant.input_spec import InputSpec
    >>> import numpy as np
    >>> ds = ArrayDataset(np.zeros((2, 1, 4, 4), np.float32), np.array([0, 7]),
    ...                   InputSpec(shape=(1, 4, 4), mean=(0.0,), std=(1.0,), color="L"), "npy:x.npz")
    >>> try:
    ...     validate_labels(ds, num_classes=5)
    ... except DatasetError as e:
    ...     print(e)
    npy:x.npz: y[1]: label 7 is not a class of the model (0..4); fix the class index, or check the model (1 of 2 labels are out of range)
"""

from __future__ import annotations

import numpy as np

from edgequant.data.base import Dataset
from edgequant.errors import DatasetError, ValidationError


def validate_labels(dataset: Dataset, num_classes: int | None = None) -> None:
    """Refuse negative labels, and labels ``>= num_classes`` when the class count is known."""
    labels = dataset.labels
    if labels is None or len(labels) == 0:
        return
    if num_classes is not None and num_classes < 1:
        raise ValidationError(f"num_classes must be >= 1, got {num_classes}")
    y = np.asarray(labels)
    bad = y < 0
    if num_classes is not None:
        bad |= y >= num_classes
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    value = int(y[i])
    if num_classes is None:
        what = f"label {value} is negative; class indices start at 0"
    else:
        what = (
            f"label {value} is not a class of the model (0..{num_classes - 1}); fix the class "
            "index, or check the model"
        )
    raise DatasetError(
        f"{dataset.label_origin(i)}: {what} ({int(bad.sum())} of {len(y)} labels are out of range)"
    )
