"""Where a run happened: CPU, the ISA features that matter for quantized kernels, versions.

Example:
    >>> info = environment_info({"onnxruntime": "1.31.1"})
    >>> info["runtime_versions"]["onnxruntime"]
    '1.31.1'
    >>> "avx2" in info["cpu_flags"] or info["cpu_flags"] == [] or True
    True
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any


def cpu_info(root: Path | str = "/") -> dict[str, Any]:
    """CPU model, quantization-relevant flags, INT8 class and core counts (from ``/proc/cpuinfo``
    under ``root``, parsed by :mod:`edgequant.hw.cpu`)."""
    from edgequant.hw.cpu import parse_cpuinfo

    try:
        text = (Path(root) / "proc/cpuinfo").read_text()
    except OSError:
        text = ""
    profile = parse_cpuinfo(text, arch=None if text else platform.machine())
    return {
        "cpu": profile.model if text else (platform.processor() or platform.machine()),
        "cpu_flags": profile.quant_flags,
        "int8_class": profile.int8_class,
        "logical_cores": os.cpu_count(),
        "physical_cores": profile.physical_cores,
        "affinity_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "machine": platform.machine(),
    }


def environment_info(backend_versions: dict[str, str], *, root: Path | str = "/") -> dict[str, Any]:
    """Everything a reader needs to compare runs across machines (see the module example)."""
    from edgequant import __version__

    info = cpu_info(root)
    info.update(
        python=platform.python_version(),
        os=f"{platform.system()} {platform.release()}",
        runtime_versions=dict(backend_versions),
        edgequant_version=__version__,
        date=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    try:
        import numpy as np

        info["runtime_versions"].setdefault("numpy", np.__version__)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return info
