"""The CPU profile: what this processor can do for INT8, read once from ``/proc/cpuinfo``.

Every part of edgequant that depends on the CPU (which INT8 configuration a runtime gets, what
``inspect`` says, what a result record stores) reads it from here. The *INT8 class* is the fact that
decides kernels:

========================  ==========================================================================
class                     what the int8 dot product is
========================  ==========================================================================
``amx-int8``              AMX tiles (TDPBUSD): int32 accumulation, no saturation
``avx512-vnni``           VPDPBUSD on 512-bit vectors: u8×s8 summed straight into int32
``avx-vnni``              VPDPBUSD on 256-bit vectors (Alder Lake and later without AVX-512)
``avx512``                AVX-512BW without VNNI: VPMADDUBSW, pairs of u8×s8 summed in *saturating* int16
``avx2``                  VPMADDUBSW on 256-bit vectors: the same int16 pair saturation
``arm-i8mm``              SMMLA/USMMLA int8 matrix multiply into int32
``arm-dotprod``           SDOT/UDOT into int32
``arm-neon``              plain NEON: int8 widened to int16 (SMLAL), no dot product
``other``                 none of the above (scalar or unknown)
========================  ==========================================================================

Example:
    >>> p = parse_cpuinfo("model name : Demo\\nflags : fma avx2 avx512f avx512bw avx512_vnni\\n")
    >>> p.int8_class, p.pair_saturation
    ('avx512-vnni', False)
    >>> parse_cpuinfo("flags : avx2 fma\\n").pair_saturation
    True
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: CPU flags that decide which int8/bf16/fp16 kernels a runtime can use (x86 and ARM names)
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

#: INT8 classes from fastest int8 path to slowest, with one line on each
INT8_CLASSES: dict[str, str] = {
    "amx-int8": "AMX int8 tiles: int32 accumulation, no saturation",
    "avx512-vnni": "AVX-512 VNNI (vpdpbusd): u8 x s8 products summed straight into int32",
    "avx-vnni": "AVX-VNNI (256-bit vpdpbusd): u8 x s8 products summed straight into int32",
    "avx512": "AVX-512 without VNNI: vpmaddubsw sums u8 x s8 pairs in saturating int16",
    "avx2": "AVX2 without VNNI: vpmaddubsw sums u8 x s8 pairs in saturating int16",
    "arm-i8mm": "ARM i8mm (smmla): int8 matrix multiply into int32",
    "arm-dotprod": "ARM dotprod (sdot/udot): int8 dot products into int32",
    "arm-neon": "ARM NEON without dotprod: int8 widened to int16 (no dot product instruction)",
    "other": "no known int8 dot-product instructions",
}

#: classes whose fast u8 x s8 path sums pairs of products in saturating int16 (``pmaddubsw``)
PAIR_SATURATING = frozenset({"avx512", "avx2"})
#: classes with an int8 dot product into int32 (int8 is expected to be much faster than fp32)
EXACT_DOT = frozenset({"amx-int8", "avx512-vnni", "avx-vnni", "arm-i8mm", "arm-dotprod"})


#: the keys of :meth:`CpuProfile.to_dict`, in order: fields and properties of the profile
RECORD_KEYS = (
    *("model", "vendor", "arch", "int8_class", "int8_description", "pair_saturation"),
    *("flags", "logical_cores", "physical_cores"),
)


@dataclass(frozen=True, kw_only=True)
class CpuProfile:
    """What the processor is and which int8 kernels it gets.

    Example:
        >>> p = parse_cpuinfo("vendor_id : GenuineIntel\\nflags : avx2 fma avx_vnni\\n")
        >>> p.vendor, p.int8_class, p.has("avx_vnni")
        ('GenuineIntel', 'avx-vnni', True)
    """

    model: str
    vendor: str = ""
    arch: str = "x86_64"
    flags: frozenset[str] = field(default_factory=frozenset)
    int8_class: str = "other"
    logical_cores: int | None = None
    physical_cores: int | None = None

    def has(self, *flags: str) -> bool:
        """True when the CPU has every one of these flags."""
        return all(f in self.flags for f in flags)

    @property
    def pair_saturation(self) -> bool:
        """True when the fast u8 x s8 int8 path sums product pairs in saturating int16."""
        return self.int8_class in PAIR_SATURATING

    @property
    def exact_int8_dot(self) -> bool:
        """True when int8 dot products accumulate in int32 without saturation (VNNI, AMX, sdot)."""
        return self.int8_class in EXACT_DOT

    @property
    def int8_description(self) -> str:
        return INT8_CLASSES[self.int8_class]

    @property
    def quant_flags(self) -> list[str]:
        """The flags that matter for quantized kernels, in a fixed order."""
        return [f for f in QUANT_FLAGS if f in self.flags]

    def to_dict(self) -> dict[str, Any]:
        """The fields a result record and an artifact store under ``cpu_profile``."""
        d = {key: getattr(self, key) for key in RECORD_KEYS}
        d["flags"] = self.quant_flags  # the flags that matter for int8 kernels, in a fixed order
        return d


def int8_class(flags: set[str] | frozenset[str], arch: str = "x86_64") -> str:
    """The INT8 class for a set of CPU flags (x86 ``flags`` or ARM ``Features``).

    Example:
        >>> int8_class({"avx2", "fma"})
        'avx2'
        >>> int8_class({"asimd", "asimddp"}, "aarch64")
        'arm-dotprod'
    """
    if arch.startswith(("aarch64", "arm")) or "asimd" in flags:
        if "i8mm" in flags:
            return "arm-i8mm"
        if "asimddp" in flags:
            return "arm-dotprod"
        if "asimd" in flags or "neon" in flags:
            return "arm-neon"
        return "other"
    if "amx_int8" in flags:
        return "amx-int8"
    if "avx512_vnni" in flags:
        return "avx512-vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "other"


def parse_cpuinfo(text: str, *, arch: str | None = None) -> CpuProfile:
    """Build a profile from the text of a ``/proc/cpuinfo`` (tests pass fixture files).

    ``arch`` defaults to aarch64 when the text has ARM ``Features`` lines, else x86_64.

    Example:
        >>> parse_cpuinfo("CPU implementer : 0x41\\nFeatures : fp asimd\\n").int8_class
        'arm-neon'
    """
    vendor = ""
    names: dict[str, str] = {}
    flags: set[str] = set()
    physical: set[tuple[str, str]] = set()
    processors = 0
    phys_id = ""
    arm = False
    implementer = part = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            processors += 1
        elif key in ("model name", "Model", "Hardware") and value:
            names.setdefault(key, value)
        elif key == "vendor_id":
            vendor = value
        elif key == "flags":
            flags.update(value.split())
        elif key == "Features":
            arm = True
            flags.update(value.split())
        elif key == "CPU implementer":
            arm, implementer = True, value
        elif key == "CPU part":
            part = value
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            physical.add((phys_id, value))
    arch = arch or ("aarch64" if arm else "x86_64")
    # a board's "Model" (Raspberry Pi 5 Model B) says more than its SoC's "Hardware" line
    model = names.get("model name") or names.get("Model") or names.get("Hardware", "")
    if not model and implementer:
        model = f"ARM implementer {implementer} part {part or '?'}"
    if arm and not vendor:
        vendor = {"0x41": "ARM", "0x61": "Apple", "0x51": "Qualcomm"}.get(implementer, implementer)
    return CpuProfile(
        model=model or platform.processor() or arch,
        vendor=vendor,
        arch=arch,
        flags=frozenset(flags),
        int8_class=int8_class(flags, arch),
        logical_cores=processors or None,
        physical_cores=len(physical) or None,
    )


@functools.cache
def cpu_profile(path: str = "/proc/cpuinfo") -> CpuProfile:
    """This machine's profile, read once per process (empty flags where cpuinfo is unreadable).

    ``EDGEQUANT_CPUINFO`` names another cpuinfo file to read instead (to ask what edgequant would
    choose on another CPU; it changes no kernel the runtimes pick).

    Example:
        >>> cpu_profile().int8_class in INT8_CLASSES
        True
    """
    path = os.environ.get("EDGEQUANT_CPUINFO", path)
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    profile = parse_cpuinfo(text, arch=None if text else platform.machine())
    if profile.logical_cores is None:
        profile = CpuProfile(**{**_fields(profile), "logical_cores": os.cpu_count()})
    return profile


#: ``ONEDNN_MAX_CPU_ISA`` values and the INT8 class oneDNN's kernels then have (oneDNN docs)
ONEDNN_CAPS: dict[str, str] = {
    "SSE41": "other",
    "AVX": "other",
    "AVX2": "avx2",
    "AVX2_VNNI": "avx-vnni",
    "AVX2_VNNI_2": "avx-vnni",
    "AVX512_CORE": "avx512",
    "AVX512_CORE_VNNI": "avx512-vnni",
    "AVX512_CORE_BF16": "avx512-vnni",
    "AVX512_CORE_FP16": "avx512-vnni",
    "AVX10_1_512": "avx512-vnni",
    "AVX512_CORE_AMX": "amx-int8",
    "AVX512_CORE_AMX_FP16": "amx-int8",
    "AVX10_1_512_AMX": "amx-int8",
    "AVX10_1_512_AMX_FP16": "amx-int8",
}
_ORDER = ["other", "avx2", "avx512", "avx-vnni", "avx512-vnni", "amx-int8"]


def onednn_int8_class(profile: CpuProfile | None = None, cap: str | None = None) -> str:
    """The INT8 class oneDNN's kernels (PyTorch, OpenVINO) really use: the CPU's, lowered by a cap.

    ``ONEDNN_MAX_CPU_ISA`` (read from the environment when ``cap`` is None) makes oneDNN dispatch
    its kernels for an older ISA — an AVX-512 VNNI machine then runs the AVX2 ``vpmaddubsw``
    kernels, saturation included. ONNX Runtime (MLAS) and LiteRT (XNNPACK) honour no such cap.

    Example:
        >>> p = parse_cpuinfo("flags : avx2 avx512f avx512bw avx512_vnni\\n")
        >>> onednn_int8_class(p, "AVX2"), onednn_int8_class(p, "")
        ('avx2', 'avx512-vnni')
    """
    p = profile or cpu_profile()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "") if cap is None else cap
    capped = ONEDNN_CAPS.get(cap.strip().upper())
    if p.arch != "x86_64" or capped is None or p.int8_class not in _ORDER:
        return p.int8_class
    return min(p.int8_class, capped, key=_ORDER.index)


def _fields(p: CpuProfile) -> dict[str, Any]:
    return {k: getattr(p, k) for k in p.__dataclass_fields__}


def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (lower case; empty where ``/proc/cpuinfo`` is absent)."""
    return cpu_profile().flags


__all__ = [
    "EXACT_DOT",
    "INT8_CLASSES",
    "PAIR_SATURATING",
    "QUANT_FLAGS",
    "CpuProfile",
    "cpu_flags",
    "cpu_profile",
    "int8_class",
    "onednn_int8_class",
    "parse_cpuinfo",
]
