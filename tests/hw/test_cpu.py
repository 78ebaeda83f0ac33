"""The CPU profile on fixture cpuinfo files of every INT8 class, x86 and ARM."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgequant.hw import cpu
from edgequant.hw.cpu import INT8_CLASSES, cpu_profile, parse_cpuinfo

FIXTURES = Path(__file__).parent / "cpuinfo"

EXPECTED = {
    "zen3-avx2.txt": ("avx2", "x86_64", True),
    "zen4-avx512vnni.txt": ("avx512-vnni", "x86_64", False),
    "skylake-avx512.txt": ("avx512", "x86_64", True),
    "sapphirerapids-amx.txt": ("amx-int8", "x86_64", False),
    "alderlake-avxvnni.txt": ("avx-vnni", "x86_64", False),
    "rpi4-neon.txt": ("arm-neon", "aarch64", False),
    "rpi5-dotprod.txt": ("arm-dotprod", "aarch64", False),
    "graviton3-i8mm.txt": ("arm-i8mm", "aarch64", False),
}


def test_every_fixture_is_checked() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.txt")) == sorted(EXPECTED)
    # every class but "other" has a fixture
    assert {v[0] for v in EXPECTED.values()} == set(INT8_CLASSES) - {"other"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_int8_class_per_cpu(name: str) -> None:
    cls, arch, saturates = EXPECTED[name]
    text = (FIXTURES / name).read_text()
    p = parse_cpuinfo(text)
    assert p.int8_class == cls
    assert p.arch == arch
    assert p.pair_saturation is saturates
    assert p.exact_int8_dot is (cls in cpu.EXACT_DOT)
    assert p.logical_cores == text.count("processor\t:")
    assert p.model and p.to_dict()["int8_class"] == cls


def test_model_names() -> None:
    assert parse_cpuinfo((FIXTURES / "zen3-avx2.txt").read_text()).model.startswith("AMD EPYC 7B13")
    pi5 = parse_cpuinfo((FIXTURES / "rpi5-dotprod.txt").read_text())
    assert pi5.model.startswith("Raspberry Pi 5")  # the board, not its SoC's Hardware line
    g3 = parse_cpuinfo((FIXTURES / "graviton3-i8mm.txt").read_text())
    assert "0xd40" in g3.model and g3.vendor == "ARM"


def test_empty_cpuinfo_is_other() -> None:
    p = parse_cpuinfo("", arch="x86_64")
    assert p.int8_class == "other" and p.flags == frozenset()


def test_env_override_reads_another_file(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_profile.cache_clear()
    monkeypatch.setenv("EDGEQUANT_CPUINFO", str(FIXTURES / "rpi4-neon.txt"))
    try:
        assert cpu_profile().int8_class == "arm-neon"
    finally:
        monkeypatch.delenv("EDGEQUANT_CPUINFO")
        cpu_profile.cache_clear()
    assert cpu_profile().int8_class in INT8_CLASSES


def test_quant_flags_keep_order() -> None:
    p = parse_cpuinfo("flags : avx512_vnni fma avx2\n")
    assert p.quant_flags == ["avx2", "fma", "avx512_vnni"]


def test_onednn_cap_lowers_the_class_never_raises_it() -> None:
    from edgequant.hw.cpu import onednn_int8_class

    vnni = parse_cpuinfo((FIXTURES / "zen4-avx512vnni.txt").read_text())
    avx2 = parse_cpuinfo((FIXTURES / "zen3-avx2.txt").read_text())
    assert onednn_int8_class(vnni, "AVX2") == "avx2"
    assert onednn_int8_class(vnni, "avx512_core") == "avx512"
    assert onednn_int8_class(vnni, "AVX512_CORE_AMX") == "avx512-vnni"  # no instruction added
    assert onednn_int8_class(avx2, "AVX512_CORE_VNNI") == "avx2"
    assert onednn_int8_class(vnni, "") == onednn_int8_class(vnni, "bogus") == "avx512-vnni"
    pi = parse_cpuinfo((FIXTURES / "rpi5-dotprod.txt").read_text())
    assert onednn_int8_class(pi, "AVX2") == "arm-dotprod"
