"""Builders for tiny models and inputs used across the test suite."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import cast

import numpy as np
import torch
import torch.nn as nn

from edgequant.input_spec import InputSpec
from edgequant.models.base import Model


class TwoOutputs(nn.Module):
    """A detector's shape: scores and a second head, both batch-first (sessions return the first)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.conv(x)
        return self.fc(f.mean((2, 3))), f.amax((2, 3))


class TinyNet(nn.Module):
    """conv-bn-relu → depthwise-separable block with a residual → pool → linear. 10 classes."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.pw = nn.Conv2d(16, 16, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.conv3 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn3(self.pw(self.relu2(self.bn2(self.dw(x)))))
        x = x + y
        x = self.relu3(self.conv3(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def make_tiny_model(seed: int = 0, size: int = 32) -> Model:
    """A trained-looking TinyNet (random weights, BN statistics set to non-trivial values)."""
    torch.manual_seed(seed)
    net = TinyNet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                cast(torch.Tensor, m.running_mean).uniform_(-0.2, 0.2)
                cast(torch.Tensor, m.running_var).uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    digest = hashlib.sha1(
        b"".join(p.detach().numpy().tobytes() for p in net.state_dict().values())
    ).hexdigest()
    spec = InputSpec(shape=(3, size, size), resize=size)
    return Model(
        name="tinynet",
        family="test",
        input_spec=spec,
        num_classes=10,
        module=net,
        weights="test init",
        weights_hash=digest,
    )


def tiny_inputs(model: Model, n: int, seed: int = 0) -> np.ndarray:
    """Normalised float32 NCHW inputs for the model (standard normal)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *model.input_spec.shape)).astype(np.float32)


def module_model(name: str, module: nn.Module, num_classes: int, size: int = 8) -> Model:
    """Any small module as a Model taking 3 x ``size`` x ``size`` inputs (the module in eval mode).

    Example:
        >>> module_model("mlp", nn.Sequential(nn.Flatten(), nn.Linear(192, 4)), 4).input_spec.shape
        (3, 8, 8)
    """
    return Model(
        name=name,
        family="test",
        input_spec=InputSpec(shape=(3, size, size), resize=size),
        num_classes=num_classes,
        module=module.eval(),
    )


@contextlib.contextmanager
def cpu_hog(seconds: float = 60.0) -> Iterator[int]:
    """A real CPU hog that is **not** a descendant of this process, as another job's would be.

    The noise monitor counts the monitored process's own children as its own work, so a hog
    started with a plain ``Popen`` would not be noise; a short-lived launcher leaves the hog
    orphaned (reparented to init). Yields its pid and kills it on exit.
    """
    code = f"import time\nt = time.time()\nwhile time.time() - t < {seconds}: pass\n"
    launcher = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {code!r}], start_new_session=True, "
        "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", launcher], capture_output=True, text=True, check=True
    )
    pid = int(out.stdout.strip())
    try:
        time.sleep(0.3)  # let it start burning
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
