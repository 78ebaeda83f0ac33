"""The INT8 table of ``edgequant backends``: per runtime and CPU INT8 class, what a static INT8
scheme gets and why (the rules of :mod:`edgequant.backends.int8_cpu`).

Example:
    >>> class_config("litert", "avx2")["config"]
    'XNNPACK qs8 (int8 widened to int16)'
"""

from __future__ import annotations

from typing import Any

from edgequant.backends.int8_cpu import (
    _LITERT,
    BITE_PCT,
    BITE_SQNR_DB,
    NOISE_SHARE,
    REMEDY,
    REMEDY_TEXT,
    _exact_reason,
    arithmetic_for,
    runtime_int8_class,
)
from edgequant.hw.cpu import INT8_CLASSES, PAIR_SATURATING, cpu_profile

_CONFIG = {
    ("onnxruntime", "saturating"): "U8S8; U8U8 on the convs that saturate",
    ("onnxruntime", "x86"): "U8S8, 8-bit weights",
    ("onnxruntime", "arm"): "S8S8, 8-bit weights",
    ("openvino", "saturating"): "NNCF, f32 for the convs that saturate (ignored_scope)",
    ("openvino", "x86"): "NNCF, overflow fix off",
    ("openvino", "arm"): "NNCF, overflow fix off",
    ("pytorch", "saturating"): "PT2E, f32 for the convs that saturate (module config None)",
    ("pytorch", "x86"): "PT2E X86InductorQuantizer, weights -127..127",
    ("pytorch", "arm"): "PT2E, weights -127..127",
}


def class_config(runtime: str, cls: str) -> dict[str, str]:
    """What ``runtime`` does for a static int8 scheme on INT8 class ``cls``, and why.

    Example:
        >>> class_config("onnxruntime", "avx512-vnni")["config"]
        'U8S8, 8-bit weights'
    """
    if runtime == "litert":
        lite, why = _LITERT.get(cls, _LITERT["other"])
        return {"config": lite, "reason": why + "; nothing to remedy"}
    kind = "saturating" if cls in PAIR_SATURATING else ("arm" if cls.startswith("arm") else "x86")
    config = _CONFIG.get((runtime, kind))
    if config is None:
        return {"config": "as the runtime decides", "reason": "no CPU-class choice for it"}
    if kind == "saturating":
        arith = arithmetic_for(runtime, cls)
        reason = (
            f"{INT8_CLASSES[cls]}; the sim ({arith}) finds the layers whose pair sums saturate on "
            f"the calibration data (> {BITE_PCT}% or < {BITE_SQNR_DB:g} dB, plus the fewest more "
            f"that keep saturation under {NOISE_SHARE:.0%} of the int8 output noise) and only those "
            f"get {REMEDY_TEXT[REMEDY[runtime]]}"
        )
    else:
        reason = _exact_reason(runtime, cls)
    return {"config": config, "reason": reason}


#: the runtimes with a CPU-class INT8 choice (rows of ``edgequant backends``' INT8 table)
INT8_RUNTIMES = ("onnxruntime", "openvino", "pytorch", "litert")


def this_cpu() -> dict[str, Any]:
    """This CPU and the INT8 class each runtime's kernels get here (oneDNN: under any cap).

    Example:
        >>> sorted(this_cpu())[:2]
        ['int8_class', 'model']
    """
    import os

    p = cpu_profile()
    return {
        "model": p.model,
        "int8_class": p.int8_class,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or None,
        "runtime_class": {rt: runtime_int8_class(rt, p) for rt in INT8_RUNTIMES},
    }


def class_table(runtimes: list[str] | tuple[str, ...]) -> dict[str, dict[str, dict[str, str]]]:
    """``{runtime: {int8 class: {config, reason}}}`` for every class (``edgequant backends``).

    Example:
        >>> sorted(class_table(["litert"])["litert"])[:2]
        ['amx-int8', 'arm-dotprod']
    """
    return {rt: {cls: class_config(rt, cls) for cls in INT8_CLASSES} for rt in runtimes}


__all__ = ["INT8_RUNTIMES", "class_config", "class_table", "this_cpu"]
