"""Model cards: a small YAML file beside a model that says how to feed it.

A user's model (``cls.onnx``) finds its card as ``cls.yaml``, ``cls.onnx.yaml`` or
``model-card.yaml`` in the same folder, so that sweeps can name user models with their
preprocessing. Everything is optional::

    edgequant: model-card/1      # the format, for later versions
    name: my-classifier
    num_classes: 10
    description: a 10-class CNN exported by another framework
    input:
      shape: [1, 3, 224, 224]    # N may be ?, -1 or N; or [3, 224, 224]; or 224x224
      layout: NCHW               # or NHWC
      mean: [123.675, 116.28, 103.53]   # per channel, model's channel order
      std: [58.395, 57.12, 57.375]      # or: scale: 1/255
      units: 0-255               # or 0-1 for torchvision-style mean/std
      resize: 256                # shorter side before the centre crop
      color: RGB                 # RGB | BGR | L
      interpolation: bilinear

The file is read as plain data: no anchors or aliases (a 500-byte alias bomb can hold gigabytes),
at most 64 KiB and 8 levels deep, unknown keys refused by name.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "cls.yaml").write_text("input:\\n  shape: 1,3,96,96\\n  scale: 1/255\\n")
    >>> card = read_card(find_card(d / "cls.onnx"))
    >>> card.input_spec().shape, card.input_spec().std[0]
    ((3, 96, 96), 255.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgequant.errors import ModelError, ValidationError
from edgequant.input_spec import InputSpec

CARD_NAME = "model-card.yaml"
FORMAT = "model-card/1"
MAX_BYTES = 64 * 1024
MAX_DEPTH = 8
TOP_KEYS = ("edgequant", "name", "num_classes", "description", "input")
#: card key → :meth:`InputSpec.from_options` option
INPUT_KEYS = {
    "shape": "input_shape",
    "layout": "layout",
    "mean": "mean",
    "std": "std",
    "scale": "scale",
    "units": "units",
    "resize": "resize",
    "color": "color",
    "interpolation": "interpolation",
}


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    """What a model card says; ``input`` holds :meth:`InputSpec.from_options` options."""

    path: Path
    name: str | None = None
    num_classes: int | None = None
    description: str = ""
    input: dict[str, Any] = field(default_factory=dict)

    def input_spec(self, base: InputSpec | None = None) -> InputSpec:
        """The card's input spec over ``base`` (the model's own, or ImageNet's)."""
        try:
            return InputSpec.from_options(base, **self.input)
        except ValidationError as e:
            raise ModelError(f"model card {self.path}: {e}") from None


def find_card(model_path: str | Path) -> Path | None:
    """The card beside a model file: ``<stem>.yaml``, ``<name>.yaml`` or ``model-card.yaml``."""
    p = Path(model_path)
    for candidate in (
        p.with_suffix(".yaml"),
        p.with_name(p.name + ".yaml"),
        p.with_name(CARD_NAME),
    ):
        if candidate != p and candidate.is_file():
            return candidate
    return None


def read_card(path: str | Path | None) -> ModelCard:
    """Read and check a model card; every problem is a :class:`ModelError` naming the file."""
    if path is None:
        raise ModelError("no model card given")
    path = Path(path)
    doc = _load_plain_yaml(path)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ModelError(
            f"model card {path} must be a mapping of keys (name, input, ...), got a {type(doc).__name__}"
        )
    unknown = sorted(str(k) for k in doc if k not in TOP_KEYS)
    if unknown:
        raise ModelError(
            f"model card {path}: unknown key(s) {unknown}; known: {', '.join(TOP_KEYS)}"
        )
    version = doc.get("edgequant", FORMAT)
    if version != FORMAT:
        raise ModelError(
            f"model card {path}: format {version!r} is not {FORMAT!r}, the one this edgequant reads"
        )
    raw_input = doc.get("input") or {}
    if not isinstance(raw_input, dict):
        raise ModelError(f"model card {path}: 'input' must be a mapping (shape, layout, mean, ...)")
    bad = sorted(str(k) for k in raw_input if k not in INPUT_KEYS)
    if bad:
        raise ModelError(
            f"model card {path}: unknown input key(s) {bad}; known: {', '.join(INPUT_KEYS)}"
        )
    num_classes = doc.get("num_classes")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ModelError(
            f"model card {path}: num_classes must be a whole number >= 1, got {num_classes!r}"
        )
    card = ModelCard(
        path=path,
        name=None if doc.get("name") is None else str(doc["name"]),
        num_classes=num_classes,
        description=str(doc.get("description") or ""),
        input={INPUT_KEYS[k]: v for k, v in raw_input.items() if v is not None},
    )
    card.input_spec()  # check the input now, naming the card
    return card


def _load_plain_yaml(path: Path) -> Any:
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read model card {path}: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise ModelError(
            f"model card {path} is {len(raw)} bytes; a card holds at most {MAX_BYTES} (is it the right file?)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelError(
            f"model card {path} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = _line(event)
                raise ModelError(
                    f"model card {path}:{line}: anchors and aliases (& and *) are not accepted; write the values out"
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = _line(event)
                    raise ModelError(
                        f"model card {path}:{line}: nested more than {MAX_DEPTH} levels deep"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ModelError(f"model card {path}{where}: not valid YAML ({problem})") from None


def _line(event: Any) -> int | str:
    mark = getattr(event, "start_mark", None)
    return "?" if mark is None else int(mark.line) + 1
