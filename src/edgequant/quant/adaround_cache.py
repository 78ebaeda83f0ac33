"""AdaRound's results kept on disk, so one learnt rounding serves every runtime that shares a grid.

AdaRound is the slowest step of a build (EfficientNet-Lite0, 100 calibration images, 2 cores:
~160 s, measured on an Intel Xeon, amx-int8). Its result depends only on the folded fp32 weights,
the scheme's weight quantizer, the target grid of every layer, the optimisation settings and
the calibration data — not on the runtime that will execute it. On a VNNI/AMX CPU all four
runtimes use the same grid, so a sweep of ``w8a8-ada`` over ONNX Runtime, OpenVINO, PyTorch and
LiteRT learns it once instead of four times.

Entries live in ``$EDGEQUANT_CACHE/adaround/<key>.pt`` (default ``~/.cache/edgequant``): the
rounded module's ``state_dict`` and the per-layer stats, written atomically. A corrupt or
mismatched entry is ignored and rebuilt (it is a cache, never the only copy of anything).

Example:
    >>> from edgequant.quant.scheme import get_scheme
    >>> key = adaround_key("m-1234", get_scheme("w8a8"), np.zeros((2, 3, 4, 4)), "scheme", "cfg")
    >>> len(key), key == adaround_key("m-1234", get_scheme("w4a8"), np.zeros((2, 3, 4, 4)),
    ...                                "scheme", "cfg")
    (24, False)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn

    from edgequant.quant.adaround import AdaRoundConfig, GridFor, LayerStats, WeightGrid
    from edgequant.quant.scheme import Scheme

#: bump when the rounding itself changes, so older entries are not reused (2: the simulator's
#: activation ranges are calibrated on the original calibration images, not their crops/flips)
FORMAT = 2


def signature() -> str:
    """What decides a rounding besides its inputs: this cache's format and the library defaults
    (:func:`~edgequant.quant.adaround.defaults_signature`). Part of the artifact cache key of
    schemes with a rounding technique, so a release that rounds differently rebuilds them.

    Example:
        >>> signature().startswith("adaround/")
        True
    """
    from edgequant.quant.adaround import defaults_signature

    return f"adaround/{FORMAT}/{defaults_signature()}"


def grid_description(module: nn.Module, scheme: Scheme, grid: WeightGrid | GridFor | None) -> str:
    """What grid each layer is rounded to, as text: ``scheme`` (the scheme's own), one grid for
    all, or the per-layer ``{layer: [bits, granularity] | null}`` a runtime's plan gives.

    Example:
        >>> import torch.nn as nn
        >>> from edgequant.quant.scheme import get_scheme
        >>> grid_description(nn.Conv2d(1, 1, 1), get_scheme("w8a8"), None)
        'scheme'
    """
    import torch.nn as nn

    from edgequant.quant.adaround import WeightGrid

    if grid is None:
        return "scheme"
    if isinstance(grid, WeightGrid):
        if grid.scale_rule is not None:
            return f"{grid.bits}/{grid.granularity}/{getattr(grid.scale_rule, '__qualname__', '?')}"
        return f"{grid.bits}/{grid.granularity}"
    layers = {}
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            g = grid(name, layer)
            layers[name] = None if g is None else [g.bits, g.granularity]
    return json.dumps(layers, sort_keys=True)


def adaround_key(
    weights_hash: str, scheme: Scheme, calibration: np.ndarray, grids: str, config: str
) -> str:
    """The cache key of one AdaRound run (hex, 24 characters). The activations and their
    calibrator are part of it: AdaRound's inputs come from the scheme's simulator.

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> x = np.zeros((1, 3, 2, 2), np.float32)
        >>> keys = {adaround_key("w", get_scheme(s), x, "scheme", "") for s in ("w8a8", "w8a8-sym")}
        >>> len(keys)
        2
    """
    inputs = f"{scheme.activations!r}/{scheme.calibration.method}"
    h = hashlib.sha1()
    for part in (f"adaround/{FORMAT}", weights_hash, scheme.weights_key, inputs, grids, config):
        h.update(part.encode() + b"\0")
    h.update(np.ascontiguousarray(calibration, np.float32).tobytes())
    return h.hexdigest()[:24]


def cache_dir() -> Path:
    """Where AdaRound entries live: ``<artifact cache>/adaround``."""
    from edgequant.paths import default_cache_dir

    return default_cache_dir() / "adaround"


def load(key: str, module: nn.Module) -> tuple[nn.Module, list[LayerStats]] | None:
    """A copy of ``module`` with the entry's weights, and its stats; None when there is no
    usable entry (missing, unreadable, or for another architecture)."""
    import copy

    import torch

    from edgequant.quant.adaround import LayerStats

    path = cache_dir() / f"{key}.pt"
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        out = copy.deepcopy(module)
        out.load_state_dict(entry["state"], strict=True)
        stats = [LayerStats(**s) for s in entry["stats"]]
    except Exception:
        return None  # a broken entry is rebuilt below, and overwritten
    return out.eval(), stats


def store(key: str, module: nn.Module, stats: list[LayerStats]) -> None:
    """Write an entry atomically; a cache that cannot be written is skipped silently."""
    import torch

    directory = cache_dir()
    tmp = directory / f".{key}.{os.getpid()}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {
            "state": module.state_dict(),
            "stats": [dataclasses.asdict(s) for s in stats],
        }
        torch.save(entry, tmp)
        os.replace(tmp, directory / f"{key}.pt")
    except OSError:
        tmp.unlink(missing_ok=True)


def cached_adaround(
    module: nn.Module,
    scheme: Scheme,
    calibration: np.ndarray,
    *,
    weights_hash: str,
    config: AdaRoundConfig | None,
    grid: WeightGrid | GridFor | None,
) -> tuple[nn.Module, list[LayerStats], str, bool]:
    """:func:`~edgequant.quant.adaround.adaround_module`, through the disk cache:
    ``(module, stats, key, reused)`` (the key names the rounding: weights, grids, data and
    settings)."""
    from edgequant.quant.adaround import AdaRoundConfig, adaround_module, defaults_signature

    cfg = config or AdaRoundConfig()
    grids = grid_description(module, scheme, grid)
    # the library defaults that settle cfg's None fields are part of the key (FORMAT already is),
    # so a release that changes them learns again instead of reusing an older rounding
    key = adaround_key(weights_hash, scheme, calibration, grids, repr(cfg) + defaults_signature())
    hit = load(key, module)
    if hit is not None:
        return hit[0], hit[1], key, True
    from edgequant.console import log

    log(
        f"{cfg.method}: learning the weights' rounding on {len(calibration)} calibration samples "
        f"(once; reused from {cache_dir()} afterwards)"
    )
    out, stats = adaround_module(module, scheme, calibration, config=cfg, grid=grid)
    store(key, out, stats)
    return out, stats, key, False


__all__ = [
    "adaround_key",
    "cache_dir",
    "cached_adaround",
    "grid_description",
    "load",
    "signature",
    "store",
]
