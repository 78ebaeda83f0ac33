"""A small supervised trainer for models that are trained here (the digits CNN).

Adam + cosine schedule, light augmentation (random shifts of up to 2 pixels), seeded, so the
shipped digits weights can be rebuilt exactly from one command.

Example:
    >>> from edgequant.models import load_model
    >>> from edgequant.data import open_dataset
    >>> m = load_model("digits_cnn", pretrained=False)
    >>> train = open_dataset("digits", m.input_spec, split="train")
    >>> test = open_dataset("digits", m.input_spec, split="test")
    >>> stats = train_classifier(m, train, test, epochs=1, progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgequant.console import progress as progress_bar
from edgequant.errors import ValidationError
from edgequant.measure.accuracy import topk_accuracy
from edgequant.models.base import Model, Samples


@dataclass(kw_only=True)
class TrainStats:
    """What training achieved, on the held-out split."""

    epochs: int
    train_samples: int
    test_samples: int
    test_top1_pct: float
    final_loss: float
    seconds: float


def train_classifier(
    model: Model,
    train: Samples,
    test: Samples,
    *,
    epochs: int = 20,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    shift: int = 2,
    progress: bool = True,
) -> TrainStats:
    """Train ``model.module`` in place on ``train``; evaluate top-1 on ``test``."""
    import time

    import torch
    import torch.nn.functional as F

    if model.module is None:
        raise ValidationError("only PyTorch models can be trained")
    if train.labels is None or test.labels is None:
        raise ValidationError("training needs labelled data (e.g. --data digits)")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = model.module
    x_all = torch.from_numpy(train.load(range(len(train))))
    y_all = torch.from_numpy(np.asarray(train.labels))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x_all) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    pad_value = float(x_all.min())
    loss_val = float("nan")
    for _ in progress_bar(
        range(epochs), desc=f"train {model.name}", unit="epoch", disable=None if progress else True
    ):
        net.train()
        perm = torch.from_numpy(rng.permutation(len(x_all)))
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            xb, yb = x_all[idx], y_all[idx]
            if shift:
                h, w = xb.shape[-2:]
                xb = F.pad(xb, (shift,) * 4, value=pad_value)
                dy, dx = (int(v) for v in rng.integers(0, 2 * shift + 1, 2))
                xb = xb[..., dy : dy + h, dx : dx + w]
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_val = loss.item()
    net.eval()
    with torch.inference_mode():
        logits = net(torch.from_numpy(test.load(range(len(test))))).numpy()
    return TrainStats(
        epochs=epochs,
        train_samples=len(x_all),
        test_samples=len(test),
        test_top1_pct=topk_accuracy(logits, np.asarray(test.labels), 1),
        final_loss=loss_val,
        seconds=time.perf_counter() - t0,
    )
