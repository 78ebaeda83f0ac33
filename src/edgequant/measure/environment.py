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

#: CPU flags that decide which int8/bf16 kernels a runtime can use
QUANT_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "avx_vnni_int8",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
)


def cpu_info(root: Path | str = "/") -> dict[str, Any]:
    """CPU model, quantization-relevant flags and core counts, read from ``/proc/cpuinfo``."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    physical: set[tuple[str, str]] = set()
    try:
        text = (Path(root) / "proc/cpuinfo").read_text()
    except OSError:
        text = ""
    phys_id = core_id = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model") and value:
            model = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            core_id = value
            physical.add((phys_id, core_id))
    return {
        "cpu": model,
        "cpu_flags": [f for f in QUANT_FLAGS if f in flags],
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
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
