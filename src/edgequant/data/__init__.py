"""Datasets named ``KIND[:PATH]``: ``imagenet:DIR``, ``digits``, ``synthetic``.

Example:
    >>> from edgequant.data import open_dataset   # doctest: +SKIP
"""

from edgequant.data.base import Dataset

__all__ = ["Dataset"]
