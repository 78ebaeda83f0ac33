"""Pieces the zoo architectures share: torchvision's weight initialisation.

Example:
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 2))
    >>> torchvision_init(net, linear="normal")
    >>> bool((net[1].weight == 1).all()), bool((net[2].bias == 0).all())
    (True, True)
"""

from __future__ import annotations

from typing import Literal

import torch.nn as nn


def torchvision_init(
    net: nn.Module,
    *,
    conv_mode: Literal["fan_in", "fan_out"] = "fan_out",
    linear: Literal["normal", "bias", "keep"] = "keep",
) -> None:
    """Initialise ``net`` as torchvision does, so random-weight runs look like real ones.

    Convs get Kaiming-normal weights (``conv_mode``) and zero biases, batch norms ones and
    zeros; linear layers keep PyTorch's default (``"keep"``), get zero biases (``"bias"``) or
    also N(0, 0.01) weights (``"normal"``). Modules are visited in registration order, so a seeded
    build draws the same numbers as torchvision's own loop.
    """
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear != "keep":
            if linear == "normal":
                nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
