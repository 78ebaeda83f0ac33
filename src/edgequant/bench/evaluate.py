"""``evaluate``: a model's fp32 reference accuracy, the function behind ``edgequant eval``.

Example:
    >>> doc = evaluate("digits_cnn", "digits", limit=64, progress=False)
    >>> doc["samples"], doc["scheme"], doc["top1_pct"] > 90
    (64, 'fp32', True)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.console import log
from edgequant.errors import ValidationError

if TYPE_CHECKING:
    from edgequant.models.base import Model


def reference_backend(model: Model) -> str:
    """The registry's name of the runtime the fp32 reference of ``model`` runs on.

    A model with a PyTorch module runs in the first real (not simulated) backend that takes a
    torch module; a model file without one (a user's ``.onnx``) in the first real backend that
    needs no torch module. The registry lists the native runtimes first, so these are the ones
    :func:`edgequant.models.reference.reference_logits` uses.

    Example:
        >>> from edgequant.models import load_model
        >>> from edgequant.backends import backend_names
        >>> reference_backend(load_model("digits_cnn")) in backend_names()
        True
    """
    from edgequant.backends.base import backend_names, get_backend

    wants_module = model.module is not None
    for name in backend_names():
        be = get_backend(name)
        if not be.simulated and be.needs_torch_module == wants_module:
            return be.name
    raise ValidationError(f"no backend can run the fp32 reference of {model.name}")


def evaluate(
    model: str | Path | Model,
    data: str,
    *,
    weights: str | Path | None = None,
    arch: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Top-1/top-5 of the fp32 model on the labelled dataset ``data`` (its test split).

    ``model`` is a zoo name, a model file or an :class:`~edgequant.models.base.Model`; ``data``
    a dataset spec (``digits``, ``imagenet:DIR``, ``npy:FILE.npz`` with labels). ``limit`` takes
    a seeded subset of that many samples. Returns the document ``edgequant eval --json`` prints:
    ``model``, ``weights``, ``dataset``, ``samples``, ``top1_pct``, ``top1_ci95_pct`` (its 95%
    Wilson interval), ``top5_pct``, ``backend``, ``scheme`` (``fp32``), ``seconds``.

    Example:
        >>> evaluate("digits_cnn", "synthetic")
        Traceback (most recent call last):
        ...
        edgequant.errors.ValidationError: synthetic has no labels; eval needs labelled data (imagenet:DIR, digits, npy with y)
    """
    import numpy as np

    from edgequant.build.quantize import resolve_model
    from edgequant.data import open_dataset
    from edgequant.data.labels import validate_labels
    from edgequant.measure.accuracy import topk_accuracy, wilson_interval
    from edgequant.models.reference import reference_logits

    if batch_size < 1:
        raise ValidationError("--batch-size must be >= 1")
    m = resolve_model(model, weights=weights, arch=arch)
    ds = open_dataset(
        data, m.input_spec, split="test", limit=limit, seed=seed, num_classes=m.num_classes
    )
    if not ds.has_labels or ds.labels is None:
        raise ValidationError(
            f"{data} has no labels; eval needs labelled data (imagenet:DIR, digits, npy with y)"
        )
    labels = np.asarray(ds.labels)
    t0 = time.perf_counter()
    logits = reference_logits(m, ds, batch_size=batch_size, threads=threads, progress=progress)
    seconds = time.perf_counter() - t0
    validate_labels(ds, num_classes=logits.shape[1])  # a model file's real head width
    if not m.pretrained:
        log(f"warning: {m.name} has random weights (no --weights): its accuracy means nothing")
    return {
        "model": m.name,
        "weights": m.weights,
        "dataset": ds.spec,
        "samples": len(ds),
        "top1_pct": round(topk_accuracy(logits, labels, 1), 4),
        "top1_ci95_pct": [
            round(v, 2)
            for v in wilson_interval(int((logits.argmax(1) == labels).sum()), len(labels))
        ],
        "top5_pct": round(topk_accuracy(logits, labels, 5), 4),
        "backend": reference_backend(m),
        "scheme": "fp32",
        "seconds": round(seconds, 3),
    }


__all__ = ["evaluate", "reference_backend"]
