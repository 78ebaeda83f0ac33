"""OpenVINO's configuration choices: precision hints and the int8 overflow fix for this CPU.

Example:
    >>> cpu_int8_choice(["INT8"], {"avx512_vnni"})["overflow_fix"]
    'disable'
"""

from __future__ import annotations

from typing import Any

#: the CPU plugin's INFERENCE_PRECISION_HINT for each float dtype of a scheme
PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def cpu_int8_choice(capabilities: list[str], flags: set[str] | frozenset[str]) -> dict[str, Any]:
    """Choose NNCF's overflow fix from the CPU: VNNI/AMX accumulate u8×i8 in int32 without the
    16-bit saturation of plain AVX2/AVX-512 (vpmaddubsw), so the full 8-bit weight range is safe.

    Example:
        >>> cpu_int8_choice(["INT8"], {"avx512_vnni"})["overflow_fix"]
        'disable'
    """
    vnni = sorted(f for f in flags if f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    if vnni:
        return {
            "overflow_fix": "disable",
            "cpu_int8_isa": vnni,
            "reason": f"CPU has {', '.join(vnni)}: int32 accumulation without saturation, "
            "so weights use the full 8-bit range (better accuracy, same speed)",
        }
    return {
        "overflow_fix": "first_layer_only",
        "cpu_int8_isa": [],
        "reason": "CPU has no VNNI/AMX: u8×i8 pairs can saturate in 16 bits, so NNCF's "
        "overflow fix halves the first layer's weight range"
        + ("" if "INT8" in capabilities else "; the CPU plugin reports no INT8 capability"),
    }


__all__ = ["PRECISION_HINT", "cpu_int8_choice"]
