"""Parameter and MAC counts, measured by forward hooks on every Conv2d and Linear.

A multiply-accumulate is counted per output element: ``Cin/groups × kh × kw`` for a conv,
``in_features`` for a linear layer, per sample (the batch is divided out). Element-wise ops,
batch norm and pooling are not counted, as in the published figures. The module may live on
the ``meta`` device: the hooks only need shapes, so the count costs no compute and no weights.

Example:
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    >>> count_params_macs(net, (3, 4, 4))
    (1514, 4736)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from edgequant.errors import ValidationError

if TYPE_CHECKING:
    import torch.nn as nn


def count_params(module: nn.Module) -> int:
    """Number of parameters (each shared tensor counted once; buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_params_macs(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """``(params, MACs per sample)`` of ``module`` for one input of ``input_shape``.

    ``input_shape`` is ``(C, H, W)`` or ``(N, C, H, W)``; MACs are per sample either way. The
    input is zeros on the module's device and dtype, so a module built under
    ``torch.device("meta")`` is counted without allocating its weights.

    Example:
        >>> import torch
        >>> from edgequant.models.resnet import build_resnet18
        >>> with torch.device("meta"):
        ...     net = build_resnet18()
        >>> params, macs = count_params_macs(net, (3, 224, 224))
        >>> round(params / 1e6, 2), round(macs / 1e9, 2)
        (11.69, 1.81)
    """
    import torch
    import torch.nn as nn

    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValidationError(
            f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}"
        )
    batch = shape[0]
    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32

    macs = 0

    def conv_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(m, nn.Conv2d)  # narrowing for mypy: the hook is only put on convs
        kh, kw = m.kernel_size
        macs += out.numel() // batch * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(m, nn.Linear)
        macs += out.numel() // batch * m.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    return count_params(module), int(macs)


_MACS: dict[str, tuple[int | None, str]] = {}


def model_macs(model: Any) -> tuple[int | None, str]:
    """``(MACs per sample, where the figure comes from)`` of an edgequant ``Model``.

    Counted on its fp32 module (:func:`edgequant.models.profile.count_params_macs`) when it has
    one, else the zoo's published figure when the input is the zoo's default; ``None`` with the
    reason otherwise. Counted once per model and process.
    """
    key = f"{model.key}|{model.input_spec.shape}"
    if key in _MACS:
        return _MACS[key]
    out: tuple[int | None, str]
    if model.module is not None:
        try:
            out = (count_params_macs(model.module, model.input_spec.shape)[1], "counted")
        except Exception as e:  # a module the counter cannot run: no figure, and why
            from edgequant.errors import condense_error

            out = (None, f"the MACs could not be counted: {condense_error(e)}")
    else:
        out = _published_macs(model)
    _MACS[key] = out
    return out


def _published_macs(model: Any) -> tuple[int | None, str]:
    from edgequant.errors import ModelError
    from edgequant.models.registry import get_entry

    try:
        entry = get_entry(model.name)
    except ModelError:
        return None, "the model has no module to count its MACs on and is not in the zoo"
    if entry.published is None or tuple(entry.input_spec.shape) != tuple(model.input_spec.shape):
        return None, "the model has no module to count its MACs on and no published figure"
    return int(entry.published[1] * 1e9), "published"
