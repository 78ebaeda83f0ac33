"""Train a zoo architecture from scratch and save its weights: what ``edgequant train`` runs.

The training loop itself is :func:`edgequant.models.training.train_classifier`; this module is the
public entry point (checks, datasets, saving), reached as ``edgequant.train``.

Example:
    >>> import edgequant
    >>> out = edgequant.train("digits_cnn", data="digits", epochs=1, output="d.pt")  # doctest: +SKIP
    >>> out["weights"], out["test_top1_pct"] > 50                                   # doctest: +SKIP
    ('d.pt', True)
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgequant.errors import ValidationError


def train(
    model: str = "digits_cnn",
    *,
    data: str = "digits",
    epochs: int = 20,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    threads: int = 2,
    output: Path | str | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a zoo name) on ``data``'s train split, test it, save its ``state_dict``.

    Returns ``{model, dataset, weights, epochs, train_samples, test_samples, test_top1_pct,
    final_loss, seconds}``; ``weights`` is ``output`` (default ``MODEL.pt``).

    Example:
        >>> train("digits_cnn", data="imagenet:/x")
        Traceback (most recent call last):
        ...
        edgequant.errors.ValidationError: train needs a dataset with train/test splits; 'imagenet:/x' has none (use digits)
    """
    from edgequant.data.registry import parse_dataset_spec

    kind, arg = parse_dataset_spec(data)
    if kind != "digits" or arg is not None:
        raise ValidationError(
            f"train needs a dataset with train/test splits; {data!r} has none (use digits)"
        )
    if epochs < 1:
        raise ValidationError("--epochs must be >= 1")
    import torch

    from edgequant.console import log
    from edgequant.data import open_dataset
    from edgequant.models import load_model
    from edgequant.models.training import train_classifier

    torch.set_num_threads(max(1, threads))
    m = load_model(model, pretrained=False)
    train_ds = open_dataset(data, m.input_spec, split="train")
    test = open_dataset(data, m.input_spec, split="test")
    log(
        f"training {m.name} on {train_ds.spec} ({len(train_ds)} images), "
        f"testing on {test.spec} ({len(test)})"
    )
    stats = train_classifier(
        m, train_ds, test, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed
    )
    out = Path(output) if output is not None else Path(f"{m.name}.pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    if m.module is None:
        raise ValidationError(
            f"{model} is not a PyTorch model; only zoo architectures can be trained"
        )
    torch.save(m.module.state_dict(), out)
    return {"model": m.name, "dataset": data, "weights": str(out), **asdict(stats)}


__all__ = ["train"]
