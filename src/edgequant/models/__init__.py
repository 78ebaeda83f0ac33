"""The model zoo and model loading. See :func:`load_model`.

``load_model`` and ``count_params_macs`` import PyTorch only when called, so importing this
package stays light.

Example:
    >>> from edgequant.models import list_models, load_model
    >>> len(list_models()) >= 9
    True
    >>> load_model("mobilenet_v2", pretrained=False).num_classes
    1000
"""

from edgequant.input_spec import InputSpec
from edgequant.models.base import Model, Samples
from edgequant.models.loader import load_model
from edgequant.models.profile import count_params_macs
from edgequant.models.registry import ZooEntry, get_entry, list_models, register

__all__ = [
    "InputSpec",
    "Model",
    "Samples",
    "ZooEntry",
    "count_params_macs",
    "get_entry",
    "list_models",
    "load_model",
    "register",
]
