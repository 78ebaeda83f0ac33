"""ONNX Runtime's configuration choices: session options and the int8 layout for this CPU.

Example:
    >>> int8_choice({"avx512_vnni"}, "x86_64")["activation_type"]
    'QUInt8'
"""

from __future__ import annotations

from typing import Any

#: session config entries every session gets (recorded in each artifact's metadata).
#: Idle worker threads sleep instead of spinning: on a CPU shared with other work (an edge box,
#: or this 2-core build machine) spinning steals the cores the other worker needs. Measured on
#: ResNet-50, 2 threads, load ~12 on 2 cores: fp32 +11%, U8S8 int8 +33% images/s without spinning.
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def int8_choice(
    flags: set[str] | frozenset[str] | None = None, machine: str | None = None
) -> dict[str, Any]:
    """Which int8 activation type (and reduce_range) makes ORT's CPU kernels fast here, and why.

    ``flags`` and ``machine`` default to this CPU's (:func:`edgequant.hw.cpu.cpu_profile`).

    Example:
        >>> int8_choice({"avx512_vnni"}, "x86_64")["activation_type"]
        'QUInt8'
        >>> int8_choice(set(), "aarch64")["activation_type"]
        'QInt8'
    """
    from edgequant.hw.cpu import cpu_profile

    profile = cpu_profile()
    flags = profile.flags if flags is None else flags
    machine = (machine or profile.arch).lower()
    vnni = sorted(set(flags) & {"avx512_vnni", "avx_vnni", "amx_int8", "avx_vnni_int8"})
    if machine in ("x86_64", "amd64", "i686", "x86"):
        if vnni:
            return {
                "activation_type": "QUInt8",
                "reduce_range": False,
                "reason": f"x86 with {', '.join(vnni)}: ORT's int8 GEMM kernels (vpdpbusd) take uint8 "
                "activations x int8 weights (U8S8); S8S8 is emulated and measured ~3x slower",
                "reduce_range_reason": "VNNI accumulates u8 x s8 products in int32: no saturation, full 8-bit weights",
            }
        return {
            "activation_type": "QUInt8",
            "reduce_range": True,
            "reason": "x86 without VNNI: U8S8 is ORT's fast path, and 7-bit weights (reduce_range) avoid "
            "the int16 saturation of pmaddubsw",
        }
    return {
        "activation_type": "QInt8",
        "reduce_range": False,
        "reason": f"{machine}: signed dot-product instructions make S8S8 ORT's fast int8 path",
    }


__all__ = ["SESSION_CONFIG", "int8_choice"]
