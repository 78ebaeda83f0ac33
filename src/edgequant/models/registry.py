"""The model zoo registry: one :class:`ZooEntry` per architecture, registered by its module.

Example:
    >>> from edgequant.models import list_models
    >>> "resnet50" in [e.name for e in list_models()]
    True
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgequant.errors import ModelError
from edgequant.input_spec import InputSpec

if TYPE_CHECKING:
    import torch.nn as nn

#: modules that register zoo entries when imported (one per family)
FAMILY_MODULES = (
    "edgequant.models.digits",
    "edgequant.models.mobilenet",
    "edgequant.models.resnet",
    "edgequant.models.vgg",
    "edgequant.models.densenet",
    "edgequant.models.efficientnet",
)


@dataclass(frozen=True, kw_only=True)
class ZooEntry:
    """How to build one zoo model.

    ``build(num_classes)`` returns the architecture with random weights; ``pretrained()``
    returns a state_dict of offline pretrained weights (or None when none are available here),
    with ``pretrained_source`` naming where they come from.
    """

    name: str
    family: str
    build: Callable[..., nn.Module]
    input_spec: InputSpec
    num_classes: int = 1000
    description: str = ""
    pretrained: Callable[[], dict[str, Any] | None] | None = None
    pretrained_source: str | None = None
    published: tuple[float, float] | None = None  # (params M, GMAC) at the default input size

    def has_pretrained(self) -> bool:
        """Whether pretrained weights can be loaded here, offline."""
        if self.pretrained is None:
            return False
        try:
            return self.pretrained() is not None
        except Exception:
            return False


_ENTRIES: dict[str, ZooEntry] = {}
_loaded = False


def register(entry: ZooEntry) -> ZooEntry:
    """Add an entry to the zoo (called by the family modules)."""
    _ENTRIES[entry.name] = entry
    return entry


def register_imagenet(
    family: str, *rows: tuple[str, Callable[..., nn.Module], str, tuple[float, float]]
) -> None:
    """Register ImageNet-shaped models of one family from ``(name, build, description, published)`` rows.

    ``published`` is (params M, GMAC) at 224x224; the entries take :meth:`InputSpec.imagenet`.

    Example (the VGG module registers its two models so):
        >>> entry = get_entry("vgg16")
        >>> entry.family, entry.input_spec == InputSpec.imagenet(), entry.published
        ('vgg', True, (138.36, 15.47))
    """
    for name, build, description, published in rows:
        register(
            ZooEntry(
                name=name,
                family=family,
                build=build,
                input_spec=InputSpec.imagenet(),
                description=description,
                published=published,
            )
        )


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    for mod in FAMILY_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    _loaded = True


def list_models() -> list[ZooEntry]:
    """All zoo entries, in registration order."""
    _load_families()
    return list(_ENTRIES.values())


def get_entry(name: str) -> ZooEntry:
    """The zoo entry for a name; unknown names list the close matches."""
    _load_families()
    key = name.lower().replace("-", "_")
    if key in _ENTRIES:
        return _ENTRIES[key]
    close = difflib.get_close_matches(key, list(_ENTRIES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelError(f"unknown model {name!r}{hint} (see `edgequant models`)")
