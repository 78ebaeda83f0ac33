"""What each runtime does for INT8 on each CPU class, and where int16 pair saturation bites.

On a *pair-saturating* CPU class (``avx2``, ``avx512`` without VNNI: :data:`~edgequant.hw.cpu.
PAIR_SATURATING`) the fast u8 x s8 kernels of oneDNN (PyTorch, OpenVINO) and MLAS (ONNX Runtime)
sum pairs of products in saturating int16 (``vpmaddubsw``). Instead of one blanket remedy per
runtime, :func:`plan_int8` runs the simulator with *that runtime's* arithmetic
(:mod:`edgequant.quant.int8_arith`: ``pmaddubsw`` for oneDNN, ``pmaddubsw-mlas`` for MLAS) on the
calibration data, finds the layers where saturation really bites (more than
:data:`BITE_PCT` % of pair sums saturated, or SQNR against exact int32 below :data:`BITE_SQNR_DB`),
adds the fewest others whose saturation still adds up at the output (:func:`network_remedy`) and
names the runtime's own remedy for just those layers:

=============  =================================================================================
runtime        remedy on those layers (everything else keeps the fast 8-bit path)
=============  =================================================================================
onnxruntime    U8U8 for those nodes (``TensorQuantOverrides``: uint8 weights, zero point 128, the
               same grid as the int8 ±127 weights): MLAS's U8U8 AVX2 kernel widens to int16 and
               uses ``vpmaddwd`` (``MLAS_GEMM_U8U8_KERNEL_AVX2``): exact, measured on MLAS's real
               AVX2 kernels under qemu (``tests/quant/test_emulated_isa.py``)
openvino       NNCF ``ignored_scope`` for those convolutions (they run in f32: exact); overflow
               fix off elsewhere
pytorch        ``X86InductorQuantizer.set_module_name_qconfig(name, None)``: those modules stay
               f32 (exact). 7-bit weights (-63..63, ``"7bit"``: 2·255·63 < 32767) never
               saturate either but cost a weight bit: EfficientNet-Lite0 19.6 dB against 27.5 dB
               (AVX2 kernels under ONEDNN_MAX_CPU_ISA on an Intel Xeon, INT8 class amx-int8)
litert         nothing: XNNPACK's x86 qs8 kernels widen int8 to int16 (``vpmovsxbw`` +
               ``vpmaddwd``): exact on every class, and about fp32 speed without VNNI
=============  =================================================================================

On VNNI / AMX / ARM dot-product classes int8 accumulates in int32: no layer bites, nothing changes.

Example:
    >>> arithmetic_for("onnxruntime", "avx2"), arithmetic_for("openvino", "avx512-vnni")
    ('pmaddubsw-mlas', 'exact')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.hw.cpu import PAIR_SATURATING, CpuProfile, cpu_profile

if TYPE_CHECKING:
    import torch.nn as nn

    from edgequant.models.base import Model
    from edgequant.quant.adaround import WeightGrid
    from edgequant.quant.scheme import Scheme

#: a layer "bites" above this share of saturated pair sums (percent) ...
BITE_PCT = 0.1
#: ... or below this SQNR of its output against exact int32 accumulation (dB)
BITE_SQNR_DB = 25.0
#: calibration samples the saturation analysis runs (the pmaddubsw sim costs ~2.5x a forward)
ANALYSIS_SAMPLES = 64
#: beyond the layers that bite, more layers (worst first) are remedied until saturation adds at
#: most this share to the int8 model's own output noise (0.1: at most 0.4 dB less SQNR) ...
#: Layers that each stay under the per-layer bars still add up: on EfficientNet-Lite0 (real MLAS
#: AVX2 kernels run under qemu on an Intel Xeon, INT8 class amx-int8) the 5 biting layers alone
#: left the logits at 20.7 dB where exact int32 gives 23.4 dB
NOISE_SHARE = 0.1
#: ... or until the output under the saturating arithmetic reaches this SQNR against exact int32,
#: whichever is looser (a model already far more accurate than its task needs keeps its fast
#: kernels), and the bar itself without an fp32 reference (a QAT simulator)
NET_SQNR_DB = 35.0
#: samples the network-level check runs per step of its bisection (of the analysed ones)
NETWORK_SAMPLES = 16
#: bump when the plan of a pair-saturating class changes, so cached artifacts built there are
#: rebuilt (2: the network-level rule, OpenVINO's ignored scope on BN-folded ops, PyTorch's f32
#: remedy); artifacts of exact classes are not affected
PLAN_VERSION = 2

#: runtimes whose int8 kernels are oneDNN's (they honour ONEDNN_MAX_CPU_ISA)
ONEDNN_RUNTIMES = frozenset({"openvino", "pytorch"})
#: the sim arithmetic of each runtime's fast u8 x s8 path on a pair-saturating class
SATURATING_ARITH = {
    "onnxruntime": "pmaddubsw-mlas",
    "openvino": "pmaddubsw",
    "pytorch": "pmaddubsw",
}
#: the per-layer remedy of each runtime (see the module docstring)
REMEDY = {"onnxruntime": "u8u8", "openvino": "float", "pytorch": "float"}
REMEDY_TEXT = {
    "u8u8": "U8U8 (uint8 weights, zero point 128: MLAS's exact vpmaddwd kernel, same 8-bit grid)",
    "float": "left in f32 (NNCF ignored_scope, PT2E module config None): no int16 pair sums",
    "7bit": "7-bit weights (-63..63): pair sums stay inside int16",
}


def runtime_int8_class(runtime: str, profile: CpuProfile | None = None) -> str:
    """The INT8 class the runtime's kernels really use here (oneDNN: under ONEDNN_MAX_CPU_ISA).

    Example:
        >>> from edgequant.hw.cpu import parse_cpuinfo
        >>> runtime_int8_class("onnxruntime", parse_cpuinfo("flags : avx2 fma\\n"))
        'avx2'
    """
    from edgequant.hw.cpu import onednn_int8_class

    p = profile or cpu_profile()
    return onednn_int8_class(p) if runtime in ONEDNN_RUNTIMES else p.int8_class


def arithmetic_for(runtime: str, int8_class: str) -> str:
    """The sim arithmetic that reproduces the runtime's int8 convolutions on that class.

    Example:
        >>> arithmetic_for("pytorch", "avx512"), arithmetic_for("litert", "avx2")
        ('pmaddubsw', 'exact')
    """
    if int8_class in PAIR_SATURATING and runtime in SATURATING_ARITH:
        return SATURATING_ARITH[runtime]
    return "exact"


@dataclass(kw_only=True)
class Int8Plan:
    """The CPU-class treatment of one build: the arithmetic, each layer's saturation, the remedy.

    ``layers``: one dict per int8 conv/linear the analysis saw (name, kind, saturated_pct,
    sqnr_db, remedy); ``remedied``: the names of the layers that get ``remedy``.

    Example:
        >>> p = Int8Plan(runtime="pytorch", int8_class="avx2", arithmetic="pmaddubsw",
        ...              remedy="7bit", remedied=["stem"])
        >>> p.weight_bits()
        {'stem': 7}
    """

    runtime: str
    int8_class: str
    arithmetic: str
    remedy: str = ""
    layers: list[dict[str, Any]] = field(default_factory=list)
    remedied: list[str] = field(default_factory=list)
    note: str = ""
    #: the network-level check of :func:`network_remedy` (empty where nothing was analysed)
    network: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_runtime(cls, runtime: str, remedy: str, profile: CpuProfile | None = None) -> Int8Plan:
        """The plan of ``runtime`` on this CPU's (or ``profile``'s) int8 class, no layers yet.

        Example:
            >>> from edgequant.hw.cpu import parse_cpuinfo
            >>> Int8Plan.for_runtime("openvino", "float", parse_cpuinfo("flags : avx2\\n")).saturating
            True
        """
        int8_class = runtime_int8_class(runtime, profile)
        arithmetic = arithmetic_for(runtime, int8_class)
        return cls(runtime=runtime, int8_class=int8_class, arithmetic=arithmetic, remedy=remedy)

    def set_layers(self, layers: list[dict[str, Any]], extra: tuple[str, ...] = ()) -> None:
        """Take the analysed ``layers``; those that bite, and ``extra`` (the network-level
        check's), get the plan's remedy."""
        self.layers = layers
        more = set(extra)
        self.remedied = [r["name"] for r in layers if r["bites"] or r["name"] in more]
        for r in layers:
            r["remedy"] = self.remedy if r["name"] in self.remedied else ""

    @property
    def saturating(self) -> bool:
        return self.arithmetic != "exact"

    def weight_bits(self) -> dict[str, int]:
        """Layers whose runtime weights are not the scheme's 8 bits (the 7-bit remedy)."""
        return {n: 7 for n in self.remedied} if self.remedy == "7bit" else {}

    def float_layers(self) -> list[str]:
        """Layers the runtime computes in float (the ``float`` remedy): nothing to round there.

        Example:
            >>> Int8Plan(runtime="pytorch", int8_class="avx2", arithmetic="pmaddubsw",
            ...          remedy="float", remedied=["stem"]).float_layers()
            ['stem']
        """
        return list(self.remedied) if self.remedy == "float" else []

    def reason(self) -> str:
        """One line for ``choices`` / ``inspect``: what the arithmetic is and what was done."""
        if not self.saturating:
            return (
                f"{self.runtime} on {self.int8_class}: "
                + _exact_reason(self.runtime, self.int8_class)
                + "; no per-layer remedy needed"
            )
        if self.note:
            return self.note
        total = len(self.layers)
        extra = self.network.get("extra", [])
        biting = len(self.remedied) - len(extra)
        what = REMEDY_TEXT.get(self.remedy, self.remedy)
        base = (
            f"{self.runtime} on {self.int8_class}: {biting} of {total} int8 convs/linears saturate "
            f"int16 pair sums on the calibration data (sim arithmetic {self.arithmetic}: > "
            f"{BITE_PCT}% of pairs or < {BITE_SQNR_DB:g} dB vs exact)"
        )
        net = self.network
        if extra:
            base += (
                f"; {len(extra)} more whose sums add up at the output (output vs exact "
                f"int32 {_db(net['sqnr_before_db'])} → {_db(net['sqnr_after_db'])}, bar "
                f"{_db(net['bar_sqnr_db'])}: {NOISE_SHARE:.0%} of the int8 model's own noise or "
                f"{NET_SQNR_DB:g} dB, the looser)"
            )
        return base + (f"; {what} applied to those" if self.remedied else "; nothing to remedy")

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "int8_class": self.int8_class,
            "arithmetic": self.arithmetic,
            "remedy": self.remedy if self.remedied else "",
            "remedied": list(self.remedied),
            "layers": self.layers,
            "network": self.network,
            "reason": self.reason(),
        }


def _db(value: float | None) -> str:
    return "exact" if value is None else f"{value:.1f} dB"


def bites(saturated_pct: float, sqnr_db: float) -> bool:
    """True when a layer's saturation is worth a remedy (see :data:`BITE_PCT`).

    Example:
        >>> bites(0.5, 40.0), bites(0.01, 31.0), bites(0.0, 20.0)
        (True, False, True)
    """
    return saturated_pct > BITE_PCT or sqnr_db < BITE_SQNR_DB


def analyse(
    module: nn.Module,
    scheme: Scheme,
    calibration: np.ndarray,
    arithmetic: str,
    *,
    samples: int = ANALYSIS_SAMPLES,
    exact_layers: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Per int8 layer of the simulator of ``module``: saturated pairs and SQNR under ``arithmetic``.

    Calibrated on all of ``calibration`` (as the runtime), measured on its first ``samples``.

    Example:
        >>> import torch.nn as nn
        >>> from edgequant.quant.scheme import get_scheme
        >>> rows = analyse(nn.Sequential(nn.Conv2d(3, 4, 3)), get_scheme("w8a8"),
        ...                np.random.rand(4, 3, 8, 8).astype("float32"), "pmaddubsw")
        >>> rows[0]["name"], "saturated_pct" in rows[0]
        ('0', True)
    """
    from edgequant.quant.simulate import quantize_module

    x = np.ascontiguousarray(calibration, dtype=np.float32)
    gm = quantize_module(module, scheme, x)
    return measure(gm, x, arithmetic, samples=samples, exact_layers=exact_layers)


def measure(
    sim: nn.Module,
    x: np.ndarray,
    arithmetic: str,
    *,
    samples: int = ANALYSIS_SAMPLES,
    exact_layers: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """:func:`analyse` on an already calibrated (or QAT-trained) simulator; it is not changed."""
    from edgequant.quant.saturation import saturation_report

    gm = _with_arithmetic(sim, arithmetic, exact_layers)
    _outputs(gm, x[:samples])
    return [_row(r.to_dict()) for r in saturation_report(gm)]


def network_remedy(
    sim: nn.Module,
    x: np.ndarray,
    arithmetic: str,
    layers: list[dict[str, Any]],
    *,
    reference: np.ndarray | None = None,
    samples: int = NETWORK_SAMPLES,
) -> tuple[list[str], dict[str, Any]]:
    """The layers to remedy besides those that bite, so that saturation stays negligible at the
    *output*: the fewest of the others (worst SQNR first, found by bisection) that bring the
    output's deviation from exact int32 under :data:`NOISE_SHARE` of the int8 model's own output
    noise against ``reference`` (fp32 outputs of ``x[:samples]``) or above :data:`NET_SQNR_DB`,
    whichever is looser (the bar alone without a reference). Returns the names and the figures
    (recorded as the plan's ``network``).

    Example:
        >>> import torch.nn as nn
        >>> from edgequant.quant.scheme import get_scheme
        >>> from edgequant.quant.simulate import quantize_module
        >>> x = np.random.rand(4, 3, 8, 8).astype("float32")
        >>> sim = quantize_module(nn.Sequential(nn.Conv2d(3, 4, 3)), get_scheme("w8a8"), x)
        >>> network_remedy(sim, x, "pmaddubsw", measure(sim, x, "pmaddubsw"))[0]
        []
    """
    xs = x[:samples]
    floor = tuple(r["name"] for r in layers if r["bites"])
    candidates = [
        r["name"]
        for r in sorted(layers, key=lambda r: r["sqnr_db"] if r["sqnr_db"] is not None else 1e9)
        if not r["bites"] and r["sqnr_db"] is not None
    ]
    from edgequant.quant.saturation import set_arithmetic

    gm = _with_arithmetic(sim, "exact", ())  # one copy; each step only resets its arithmetic
    exact = _outputs(gm, xs)
    signal = float(np.sum(exact**2)) or 1e-30
    allowed = signal * 10 ** (-NET_SQNR_DB / 10)
    quant_noise = 0.0
    if reference is not None:
        ref = np.asarray(reference, np.float64)[: len(exact)].reshape(exact.shape)
        quant_noise = float(np.sum((ref - exact) ** 2))
        allowed = max(allowed, NOISE_SHARE * quant_noise)

    def noise(k: int) -> float:
        set_arithmetic(gm, arithmetic, exact_layers=floor + tuple(candidates[:k]))  # type: ignore[arg-type]
        return float(np.sum((_outputs(gm, xs) - exact) ** 2))

    def db(n: float) -> float | None:  # None: no deviation at all
        return round(10 * math.log10(signal / n), 1) if n > 0 else None

    before = noise(0)
    lo, hi, after = 0, len(candidates), before
    if before > allowed and candidates:
        after = 0.0  # all candidates exact: every pair sum the analysis saw is exact
        while hi - lo > 1:
            mid = (lo + hi) // 2
            n = noise(mid)
            if n <= allowed:
                hi, after = mid, n
            else:
                lo = mid
    else:
        hi = 0
    figures = {
        "samples": len(xs),
        "int8_sqnr_db": db(quant_noise) if reference is not None else None,
        "bar_sqnr_db": db(allowed),
        "sqnr_before_db": db(before),
        "sqnr_after_db": db(after),
        "extra": candidates[:hi],
    }
    return candidates[:hi], figures


def _with_arithmetic(sim: nn.Module, arithmetic: str, exact_layers: tuple[str, ...]) -> nn.Module:
    import copy

    from edgequant.quant.saturation import set_arithmetic

    gm = copy.deepcopy(sim).eval()
    set_arithmetic(gm, arithmetic, exact_layers=exact_layers)  # type: ignore[arg-type]
    return gm


def _outputs(gm: nn.Module, x: np.ndarray) -> np.ndarray:
    """The first output of ``gm`` on ``x`` in batches of 16, flattened per sample (float64)."""
    import torch

    x = np.ascontiguousarray(x, dtype=np.float32)
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), 16):
            y = gm(torch.from_numpy(x[i : i + 16]))
            y = y[0] if isinstance(y, (tuple, list)) else y
            outs.append(y.detach().double().reshape(y.shape[0], -1).numpy())
    return np.concatenate(outs)


def _row(d: dict[str, Any]) -> dict[str, Any]:
    sqnr = float(d.get("sqnr_db", math.inf))
    pct = float(d.get("saturated_pct", 0.0))
    return {
        "name": str(d["name"]),
        "kind": str(d.get("kind", "")),
        "saturated_pct": round(pct, 4),
        "sqnr_db": None if math.isinf(sqnr) else round(sqnr, 1),
        "bites": bites(pct, sqnr),
    }


def plan_int8(
    runtime: str,
    model: Model | nn.Module | None,
    scheme: Scheme,
    calibration: np.ndarray | None,
    profile: CpuProfile | None = None,
) -> Int8Plan:
    """The CPU-class plan of one static build of ``runtime`` on this CPU (or ``profile``'s).

    Exact classes: nothing to analyse. Pair-saturating: :func:`analyse` on the calibration data,
    the runtime's remedy on the layers that bite and on those :func:`network_remedy` adds.
    Without a PyTorch module (a user's ONNX file) or calibration data nothing can be analysed:
    ``note`` says so and the caller keeps its blanket fallback.

    Example:
        >>> from edgequant.hw.cpu import parse_cpuinfo
        >>> from edgequant.quant.scheme import get_scheme
        >>> vnni = parse_cpuinfo("flags : avx2 avx512bw avx512_vnni\\n")
        >>> plan_int8("onnxruntime", None, get_scheme("w8a8"), None, vnni).remedied
        []
    """
    plan = Int8Plan.for_runtime(runtime, REMEDY.get(runtime, ""), profile)
    if not plan.saturating or not scheme.is_static or scheme.weights is None:
        return plan
    module = getattr(model, "module", model)
    if module is None or calibration is None or len(calibration) == 0:
        plan.note = (
            f"{runtime} on {plan.int8_class}: int16 pair saturation cannot be analysed per layer without the "
            "PyTorch module and calibration data; the blanket remedy applies"
        )
        return plan
    from edgequant.quant.simulate import quantize_module

    x = np.ascontiguousarray(calibration, dtype=np.float32)
    sim = quantize_module(module, scheme, x)  # type: ignore[arg-type]
    layers = measure(sim, x, plan.arithmetic)
    reference = _outputs(module.eval(), x[:NETWORK_SAMPLES])  # type: ignore[union-attr]
    extra, plan.network = network_remedy(sim, x, plan.arithmetic, layers, reference=reference)
    plan.set_layers(layers, tuple(extra))
    return plan


#: how an exported QDQ file (QAT) is remedied per runtime: U8U8 weights for MLAS, f32 weights
#: (the same dequantized values, a float conv) for the others
QDQ_REMEDY = {"onnxruntime": "u8u8"}


def plan_qdq(
    runtime: str, sim: nn.Module, calibration: np.ndarray, profile: CpuProfile | None = None
) -> Int8Plan:
    """The CPU-class plan of a QDQ export (QAT) run by ``runtime``: the trained simulator under
    the runtime's arithmetic on ``calibration``; remedy ``u8u8`` (ORT) or ``float`` (others).

    Example:
        >>> from edgequant.hw.cpu import parse_cpuinfo
        >>> vnni = parse_cpuinfo("flags : avx2 avx512bw avx512_vnni\\n")
        >>> plan_qdq("openvino", None, np.zeros((1, 3, 4, 4)), vnni).arithmetic  # type: ignore[arg-type]
        'exact'
    """
    plan = Int8Plan.for_runtime(runtime, QDQ_REMEDY.get(runtime, "float"), profile)
    if plan.saturating:
        layers = measure(sim, calibration, plan.arithmetic)
        extra, plan.network = network_remedy(sim, calibration, plan.arithmetic, layers)
        plan.set_layers(layers, tuple(extra))
    return plan


def weight_grid_for(plan: Int8Plan, scheme: Scheme) -> WeightGrid | Callable[..., Any] | None:
    """The weight grid AdaRound/GPTQ must target for this plan: per layer 7 bits where
    remedied so, none (the layer's float weights kept) where the runtime computes it in float.

    None: the scheme's own grid (restricted symmetric ``max|w|/qmax``), which every runtime
    computes here (PyTorch's weights are -127..127, U8U8 keeps the same grid).

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> p = Int8Plan(runtime="pytorch", int8_class="avx2", arithmetic="pmaddubsw",
        ...              remedy="7bit", remedied=["0"])
        >>> g = weight_grid_for(p, get_scheme("w8a8")); g("0", None).bits, g("1", None).bits
        (7, 8)
        >>> p.remedy = "float"
        >>> f = weight_grid_for(p, get_scheme("w8a8"))
        >>> f("0", None), f("1", None).bits
        (None, 8)
    """
    from edgequant.quant.adaround import WeightGrid

    bits, floats = plan.weight_bits(), set(plan.float_layers())
    if not (bits or floats) or scheme.weights is None:
        return None
    base = WeightGrid.from_tensor_quant(scheme.weights)

    def grid(name: str, layer: Any) -> WeightGrid | None:
        if name in floats:
            return None
        return WeightGrid(bits=bits[name], granularity=base.granularity) if name in bits else base

    return grid


#: the simulator's target arithmetic: an arithmetic (exact, pmaddubsw, pmaddubsw-mlas), an INT8
#: class (avx2, avx512, avx512-vnni, ...), a runtime:class pair (onnxruntime:avx2) or ``host``
SIM_TARGET_ENV = "EDGEQUANT_SIM_TARGET"


def sim_target(meta: dict[str, Any] | None = None, target: str | None = None) -> str | None:
    """The arithmetic the simulator's int8 layers compute with (None: exact, today's default).

    ``target`` (default: ``$EDGEQUANT_SIM_TARGET``) may name a runtime and a class,
    ``onnxruntime:avx2``, to predict that runtime there (its arithmetic, :func:`arithmetic_for`).
    Records ``int8_arith`` and ``int8_target`` in ``meta``.

    Example:
        >>> sim_target({}, "onnxruntime:avx2"), sim_target({}, "avx512-vnni")
        ('pmaddubsw-mlas', 'exact')
    """
    import os

    from edgequant.errors import ValidationError
    from edgequant.quant.int8_arith import get_arithmetic

    raw = (target if target is not None else os.environ.get(SIM_TARGET_ENV, "")).strip()
    if not raw:
        return None
    runtime, _, cls = raw.rpartition(":")
    try:
        name = arithmetic_for(runtime, cls) if runtime else get_arithmetic(raw).name
    except Exception as e:
        raise ValidationError(
            f"{SIM_TARGET_ENV}={raw!r} is not an arithmetic, INT8 class or runtime:class ({e})"
        ) from None
    if meta is not None:
        meta.update(int8_arith=name, int8_target=raw)
    return name


def cache_facets(runtime: str) -> dict[str, Any]:
    """What besides versions decides an artifact here: the INT8 class the runtime's kernels use
    (its per-layer remedies depend on it) and the sim's target (``EDGEQUANT_SIM_TARGET``).

    Example:
        >>> sorted(cache_facets("litert"))
        ['int8_class', 'sim_target']
    """
    import os

    cls = runtime_int8_class(runtime)
    facets: dict[str, Any] = {
        "int8_class": cls,
        "sim_target": os.environ.get(SIM_TARGET_ENV, "").strip() or None,
    }
    if cls in PAIR_SATURATING and runtime in REMEDY:
        facets["int8_plan"] = PLAN_VERSION
    return facets


def _exact_reason(runtime: str, cls: str) -> str:
    if runtime == "litert":
        return _LITERT.get(cls, _LITERT["other"])[1]
    if cls.startswith("arm"):
        return "int8 dot products (or widened NEON) accumulate in int32: exact"
    if cls == "other":
        return "no int8 dot-product instructions: reference kernels, exact but slow"
    return "VNNI/AMX accumulate u8 x s8 in int32: exact, full 8-bit weights"


_LITERT = {
    "avx2": (
        "XNNPACK qs8 (int8 widened to int16)",
        "XNNPACK on AVX2 without VNNI widens int8 to 16 bits (vpmovsxbw + vpmaddwd): exact, "
        "but int8 convolutions run at about fp32 speed here",
    ),
    "avx512": (
        "XNNPACK qs8 (int8 widened to int16)",
        "XNNPACK on AVX-512 without VNNI widens int8 to 16 bits: exact, int8 about fp32 speed",
    ),
    "other": (
        "XNNPACK qs8",
        "XNNPACK's int8 kernels accumulate in int32 (VNNI / dot product / widened): exact",
    ),
}


def record_plan(meta: dict[str, Any], plan: Int8Plan) -> None:
    """Put the plan in an artifact's metadata: ``int8_plan`` and a ``choices`` entry.

    Example:
        >>> meta = {"choices": []}
        >>> record_plan(meta, Int8Plan(runtime="litert", int8_class="avx2", arithmetic="exact"))
        >>> meta["choices"][0]["what"]
        'int16 pair saturation'
    """
    meta["int8_plan"] = plan.to_dict()
    meta.setdefault("choices", []).append(
        {
            "what": "int16 pair saturation",
            "choice": (
                f"{plan.remedy} on {len(plan.remedied)} layer(s)"
                if plan.remedied
                else "no remedy needed"
            ),
            "reason": plan.reason(),
            "layers": [
                {k: r[k] for k in ("name", "saturated_pct", "sqnr_db", "remedy") if k in r}
                for r in plan.layers
            ],
        }
    )


def remedy_reasons(meta: dict[str, Any]) -> dict[str, str]:
    """Op name → why ``inspect`` sees it in float: the plan kept it off the int8 path on purpose
    (``float`` remedy; the layer's module name, and the runtime's op names where they differ).

    Example:
        >>> remedy_reasons({"int8_plan": {"remedy": "float", "remedied": ["stem"],
        ...                 "int8_class": "avx2"}})["stem"][:28]
        'kept in f32 on purpose: its '
    """
    plan = meta.get("int8_plan")
    if not isinstance(plan, dict) or plan.get("remedy") != "float":
        return {}
    quantizer = meta.get("quantizer", {})
    names = [
        *plan.get("remedied", []),
        *quantizer.get("ignored_ops", []),
        *quantizer.get("ignored_aliases", []),
    ]
    why = (
        f"kept in f32 on purpose: its int16 pair sums saturate on {plan.get('int8_class')} "
        "(the CPU-class remedy; int8_plan in artifact.json)"
    )
    return {str(n): why for n in names}


def inspect_note(meta: dict[str, Any]) -> str | None:
    """The ``inspect`` line naming the CPU reason, from a recorded plan (None: nothing to say).

    Example:
        >>> inspect_note({"int8_plan": {"reason": "x", "arithmetic": "exact", "runtime": "sim"}})
    """
    plan = meta.get("int8_plan")
    if not isinstance(plan, dict):
        return None
    if plan.get("runtime") == "litert" and plan.get("int8_class") in PAIR_SATURATING:
        return str(plan.get("reason"))
    if plan.get("arithmetic", "exact") == "exact":
        return None
    return str(plan.get("reason"))


__all__ = [
    "ANALYSIS_SAMPLES",
    "BITE_PCT",
    "BITE_SQNR_DB",
    "NETWORK_SAMPLES",
    "NET_SQNR_DB",
    "NOISE_SHARE",
    "PLAN_VERSION",
    "SIM_TARGET_ENV",
    "Int8Plan",
    "analyse",
    "arithmetic_for",
    "bites",
    "cache_facets",
    "inspect_note",
    "measure",
    "network_remedy",
    "plan_int8",
    "plan_qdq",
    "record_plan",
    "remedy_reasons",
    "runtime_int8_class",
    "sim_target",
    "weight_grid_for",
]
