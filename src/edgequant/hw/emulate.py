"""Run a program on an *emulated* INT8 class: the real runtime kernels of a CPU you do not have.

``ONEDNN_MAX_CPU_ISA`` caps oneDNN (PyTorch, OpenVINO) down to AVX2 kernels, but MLAS (ONNX
Runtime) and XNNPACK (LiteRT) pick their kernels from CPUID and honour no cap. qemu-user
(``qemu-x86_64``, Debian's ``qemu-user``) translates every x86-64 instruction through TCG and
answers CPUID for the CPU model it is given; every runtime in the emulated process dispatches as on
that CPU. TCG implements AVX2 and FMA (QEMU ≥ 7.2) but neither AVX-512 nor VNNI, so the one class it
can emulate is ``avx2`` — the pair-saturating ``vpmaddubsw`` path of oneDNN and MLAS and XNNPACK's
widened int8, run by their own code. Results are the real kernels' numbers; timings are not
(TCG ran SIMD code 80-140× slower on an Intel Xeon, INT8 class amx-int8), so only accuracy is measured this way.

=========  =================================================================================
class      how this machine can run its kernels
=========  =================================================================================
avx2       ``qemu-x86_64 -cpu Haswell-noTSX`` (any x86-64 host; every runtime), or natively
           ``ONEDNN_MAX_CPU_ISA=AVX2`` for oneDNN only
avx512     oneDNN only (``ONEDNN_MAX_CPU_ISA=AVX512_CORE`` on an AVX-512 host): TCG has no AVX-512
VNNI/AMX   natively on such a host only; TCG has no VNNI
ARM        not here (qemu-aarch64 would need an aarch64 Python with every runtime installed)
=========  =================================================================================

The emulated process reads a cpuinfo written for the emulated CPU (``EDGEQUANT_CPUINFO``), since
qemu-user shows the host's ``/proc/cpuinfo``.

Example:
    >>> emu = emulator("avx2")
    >>> emu is None or emu.command(["python", "-V"])[:3] == [emu.qemu, "-cpu", "Haswell-noTSX"]
    True
    >>> emulation_unavailable("avx512-vnni")
    'qemu-user cannot emulate avx512-vnni: TCG implements AVX2 and FMA but neither AVX-512 nor VNNI'
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgequant.hw.cpu import CpuProfile

#: INT8 class -> the qemu CPU model whose CPUID the runtimes see (no TSX: TCG has none)
QEMU_MODELS = {"avx2": "Haswell-noTSX"}
#: the flags the emulated process's cpuinfo lists (what TCG gives a Haswell-noTSX guest)
_FLAGS = {
    "avx2": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx "
    "fxsr sse sse2 syscall nx lm constant_tsc rep_good nopl pni pclmulqdq ssse3 fma cx16 sse4_1 "
    "sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms",
}


@dataclass(frozen=True)
class Emulator:
    """qemu-user set up to run x86-64 programs as on a CPU of ``int8_class``.

    Example:
        >>> Emulator("avx2", "/usr/bin/qemu-x86_64").command(["/usr/bin/python3", "-V"])
        ['/usr/bin/qemu-x86_64', '-cpu', 'Haswell-noTSX', '/usr/bin/python3', '-V']
    """

    int8_class: str
    qemu: str

    @property
    def cpu_model(self) -> str:
        return QEMU_MODELS[self.int8_class]

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` (an ELF binary first: a Python interpreter, not a console script) under qemu."""
        return [self.qemu, "-cpu", self.cpu_model, *argv]

    def cpuinfo(self, folder: Path) -> Path:
        """Write the emulated CPU's cpuinfo into ``folder`` (for ``EDGEQUANT_CPUINFO``)."""
        path = folder / f"cpuinfo-{self.int8_class}.txt"
        lines = [
            f"processor\t: {i}\nvendor_id\t: GenuineIntel\n"
            f"model name\t: QEMU TCG {self.cpu_model} (emulated {self.int8_class})\n"
            f"flags\t\t: {_FLAGS[self.int8_class]}\n"
            for i in range(os.cpu_count() or 1)
        ]
        path.write_text("\n".join(lines))
        return path

    def env(self, base: Mapping[str, str], folder: Path) -> dict[str, str]:
        """``base`` for the emulated process: its cpuinfo, no oneDNN cap, qemu's warnings off."""
        env = {k: v for k, v in base.items() if k != "ONEDNN_MAX_CPU_ISA"}
        env["EDGEQUANT_CPUINFO"] = str(self.cpuinfo(folder))
        return env

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` emulated (text output captured; qemu's own TCG warnings dropped)."""
        with tempfile.TemporaryDirectory(prefix="eq-emu-") as tmp:
            proc = subprocess.run(
                self.command(argv),
                env=self.env(env if env is not None else os.environ, Path(tmp)),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        err = "".join(
            ln for ln in proc.stderr.splitlines(keepends=True) if not ln.startswith("qemu-x86_64:")
        )
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, err)


def emulation_unavailable(int8_class: str) -> str | None:
    """Why ``int8_class`` cannot be emulated here (None: :func:`emulator` gives one).

    Example:
        >>> emulation_unavailable("arm-dotprod")
        'qemu-user cannot emulate arm-dotprod here: it would need an aarch64 Python with every runtime'
    """
    import platform

    if int8_class.startswith("arm"):
        return (
            f"qemu-user cannot emulate {int8_class} here: it would need an aarch64 Python with "
            "every runtime"
        )
    if int8_class not in QEMU_MODELS:
        return (
            f"qemu-user cannot emulate {int8_class}: TCG implements AVX2 and FMA but neither "
            "AVX-512 nor VNNI"
        )
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"emulating {int8_class} needs an x86-64 host (this is {platform.machine()})"
    if _qemu() is None:
        return "qemu-x86_64 is not installed (Debian/Ubuntu: apt-get install qemu-user)"
    return None


def emulator(int8_class: str) -> Emulator | None:
    """An :class:`Emulator` for ``int8_class``, or None (:func:`emulation_unavailable` says why).

    Example:
        >>> emulator("amx-int8") is None
        True
    """
    if emulation_unavailable(int8_class):
        return None
    qemu = _qemu()
    return Emulator(int8_class, qemu) if qemu else None


def run_here(int8_class: str, profile: CpuProfile | None = None) -> str:
    """How this machine can run the real kernels of ``int8_class`` (one line for ``backends``).

    Example:
        >>> from edgequant.hw.cpu import parse_cpuinfo
        >>> run_here("avx512", parse_cpuinfo("flags : avx2 avx512bw avx512_vnni\\n"))
        'oneDNN only (PyTorch, OpenVINO): ONEDNN_MAX_CPU_ISA=AVX512_CORE'
    """
    from edgequant.hw.cpu import ONEDNN_CAPS, cpu_profile, onednn_int8_class

    p = profile or cpu_profile()
    if int8_class == p.int8_class:
        return "natively (this CPU)"
    ways = []
    cap = next(
        (
            c
            for c, cls in ONEDNN_CAPS.items()
            if cls == int8_class
            and onednn_int8_class(p, c) == cls
            and (cls != "avx-vnni" or p.has("avx_vnni"))  # no VEX VNNI without the flag
        ),
        None,
    )
    if cap is not None:
        ways.append(f"oneDNN only (PyTorch, OpenVINO): ONEDNN_MAX_CPU_ISA={cap}")
    why = emulation_unavailable(int8_class)
    if int8_class in QEMU_MODELS:
        ways.insert(0, "every runtime under qemu-user (accuracy only)" if why is None else why)
    return "; ".join(ways) or (why or f"not on this machine ({int8_class})")


def _qemu() -> str | None:
    return shutil.which("qemu-x86_64") or shutil.which("qemu-x86_64-static")


__all__ = [
    "QEMU_MODELS",
    "Emulator",
    "emulation_unavailable",
    "emulator",
    "run_here",
]
