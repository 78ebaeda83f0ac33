"""The model zoo and model loading. See :func:`load_model`.

Example:
    >>> from edgequant.models import list_models
    >>> len(list_models()) >= 9
    True
"""

from edgequant.models.base import Model
from edgequant.models.registry import ZooEntry, get_entry, list_models, register
from edgequant.models.spec import InputSpec

__all__ = ["InputSpec", "Model", "ZooEntry", "get_entry", "list_models", "register"]
