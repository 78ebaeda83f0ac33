"""A roofline per machine: the attainable FP32 and INT8 GEMM throughput, measured once per CPU.

A ratio such as "INT8 is 2.6× FP32" means more beside the machine's own limits: on an AVX2 CPU
without VNNI the int8 dot product (``vpmaddubsw`` + ``vpmaddwd``) is about 1.6× the FP32 FMA peak,
on an AVX-512 VNNI CPU about 4×. This module measures both peaks through a runtime's own GEMM
kernels (ONNX Runtime's MLAS: ``MatMul`` in fp32 and ``MatMulInteger`` u8 × s8 -> int32, the same
kernels its quantized convolutions use), keeps the figures in the cache keyed by the CPU, and
turns any measured throughput into GOP/s and a percentage of the matching peak.

A GOP is 10^9 operations, one multiply-accumulate = 2 operations (the usual convention).

Example:
    >>> peaks = Roofline(cpu="demo", int8_class="avx2", threads=2, fp32_gops=200.0, int8_gops=320.0)
    >>> round(achieved_gops(macs_per_sample=4.1e9, throughput_ips=30.0), 1)
    246.0
    >>> round(peaks.percent_of_peak(246.0, "int8"), 1)
    76.9
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.errors import BackendUnavailableError, ValidationError
from edgequant.hw.cpu import cpu_profile
from edgequant.measure.noise import NoiseMonitor

#: square GEMM size: large enough to be compute bound on a CPU, small enough to run in ~1 s
GEMM_SIZE = 1024
FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class Roofline:
    """The attainable throughput of one CPU with ``threads`` threads, in GOP/s."""

    cpu: str
    int8_class: str
    threads: int
    fp32_gops: float
    int8_gops: float
    engine: str = "MLAS GEMM kernels of ONNX Runtime (MatMul fp32, MatMulInteger u8 x s8)"
    gemm_size: int = GEMM_SIZE
    measured_at: str = ""
    #: the noise verdict of the measurement ("quiet" or "noisy: ..."); noisy figures are not cached
    noise: str = "quiet"
    format: int = FORMAT

    @property
    def int8_over_fp32(self) -> float:
        """The INT8/FP32 peak ratio: the most an int8 model can gain from its arithmetic here."""
        return self.int8_gops / self.fp32_gops

    def peak(self, precision: str) -> float:
        """The peak for ``int8``/``i8``/``u8`` (int8) or any float precision (fp32 peak)."""
        integer = precision.lower().startswith(("int", "i8", "u8", "w8a8", "w4a8"))
        return self.int8_gops if integer else self.fp32_gops

    def percent_of_peak(self, gops: float, precision: str) -> float:
        return 100.0 * gops / self.peak(precision)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["int8_over_fp32"] = round(self.int8_over_fp32, 3)
        return d


def achieved_gops(*, macs_per_sample: float, throughput_ips: float) -> float:
    """GOP/s a model reaches: 2 operations per MAC × MACs per sample × samples per second."""
    return 2.0 * macs_per_sample * throughput_ips / 1e9


def _gemm_models(n: int) -> tuple[bytes, bytes]:
    import onnx
    from onnx import TensorProto, helper

    def model(op: str, a_type: int, b_type: int, out_type: int) -> bytes:
        a = helper.make_tensor_value_info("a", a_type, [n, n])
        b = helper.make_tensor_value_info("b", b_type, [n, n])
        y = helper.make_tensor_value_info("y", out_type, [n, n])
        graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], op, [a, b], [y])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        return onnx._serialize(m) if hasattr(onnx, "_serialize") else m.SerializeToString()

    fp32 = model("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT)
    int8 = model("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32)
    return fp32, int8


def _best_gops(session: Any, feeds: dict[str, np.ndarray], n: int, seconds: float) -> float:
    session.run(None, feeds)  # warm-up: packing, thread pool start
    best = float("inf")
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - t0)
        runs += 1
    # the best run is the attainable peak: anything slower is the machine's noise, not the kernel's
    return 2.0 * n**3 / best / 1e9


def measure_roofline(threads: int, *, seconds: float = 1.0, n: int = GEMM_SIZE) -> Roofline:
    """Measure both peaks now (about ``2 × seconds``); see :func:`roofline` for the cached figure."""
    if threads < 1:
        raise ValidationError(f"threads must be >= 1, got {threads}")
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailableError(
            "the roofline is measured with ONNX Runtime's GEMM kernels: pip install onnxruntime onnx"
        ) from None
    fp32_model, int8_model = _gemm_models(n)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    rng = np.random.default_rng(0)
    fp32 = ort.InferenceSession(fp32_model, opts, providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(int8_model, opts, providers=["CPUExecutionProvider"])
    a = rng.standard_normal((n, n), dtype=np.float32)
    au = rng.integers(0, 256, (n, n), dtype=np.uint8)
    bs = rng.integers(-128, 128, (n, n), dtype=np.int8)
    with NoiseMonitor() as mon:
        fp32_gops = _best_gops(fp32, {"a": a, "b": a}, n, seconds)
        int8_gops = _best_gops(int8, {"a": au, "b": bs}, n, seconds)
    prof = cpu_profile()
    return Roofline(
        cpu=prof.model,
        int8_class=prof.int8_class,
        threads=threads,
        fp32_gops=round(fp32_gops, 1),
        int8_gops=round(int8_gops, 1),
        gemm_size=n,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        noise=mon.report.summary() if mon.report else "quiet",
    )


def _cache_file(threads: int, cache_dir: Path | None) -> Path:
    import hashlib

    prof = cpu_profile()
    root = cache_dir or Path(os.environ.get("EDGEQUANT_CACHE", Path.home() / ".cache/edgequant"))
    key = hashlib.sha1(
        f"{prof.model}|{sorted(prof.flags)}|{threads}|{FORMAT}".encode()
    ).hexdigest()[:12]
    return Path(root).expanduser() / "roofline" / f"{prof.int8_class}-t{threads}-{key}.json"


#: figures this process measured or reused, by cache file (the disk cache is read first)
_SEEN: dict[Path, Roofline] = {}


#: a figure measured beside other work is reused this long (seconds) before measuring again
NOISY_REUSE_S = 600.0
#: more measurements when the first was noisy (each peak is the best seen: noise only lowers it)
NOISY_RETRIES = 2


def _read(path: Path) -> Roofline | None:
    try:
        data = json.loads(path.read_text())
        data.pop("int8_over_fp32", None)
        cached = Roofline(**data)
    except (OSError, ValueError, TypeError):
        return None
    return cached if cached.format == FORMAT else None


def _write(path: Path, result: Roofline) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=2))
        tmp.replace(path)
    except OSError:
        pass


def roofline(threads: int, *, cache_dir: Path | None = None, refresh: bool = False) -> Roofline:
    """This machine's roofline for ``threads`` threads, measured once and cached per CPU.

    A cache that cannot be read or written only costs a new measurement, never the run. A
    figure measured beside other work is never the cached figure: it is kept for this process
    and, apart (``*.noisy``), for :data:`NOISY_REUSE_S` seconds, so that a busy machine running
    many short benchmarks measures it every ten minutes, not in every process. A new noisy
    measurement keeps the higher of each peak (noise only ever lowers a peak).
    """
    path = _cache_file(threads, cache_dir)
    cached = None if refresh else _read(path)
    if cached is not None:
        return cached
    if not refresh and path in _SEEN:
        return _SEEN[path]
    noisy_path = path.with_suffix(".noisy")
    earlier = _read(noisy_path)
    if not refresh and earlier is not None:
        try:
            age = time.time() - noisy_path.stat().st_mtime
        except OSError:
            age = NOISY_REUSE_S
        if age < NOISY_REUSE_S:
            _SEEN[path] = earlier
            return earlier
    result = measure_roofline(threads)
    for _ in range(NOISY_RETRIES):
        if result.noise == "quiet":
            break
        again = measure_roofline(threads)
        result = replace(
            again,
            fp32_gops=max(result.fp32_gops, again.fp32_gops),
            int8_gops=max(result.int8_gops, again.int8_gops),
        )
    if result.noise == "quiet":
        _write(path, result)
        noisy_path.unlink(missing_ok=True)
    else:
        if earlier is not None:
            result = replace(
                result,
                fp32_gops=max(result.fp32_gops, earlier.fp32_gops),
                int8_gops=max(result.int8_gops, earlier.int8_gops),
            )
        _write(noisy_path, result)
    _SEEN[path] = result  # an unwritable cache still measures only once in this process
    return result


def is_integer_precision(scheme: str, scheme_detail: dict[str, Any] | None = None) -> bool:
    """True when a scheme computes in integers (quantized activations: compare with the int8 peak).

    Example:
        >>> is_integer_precision("w8a8"), is_integer_precision("fp16"), is_integer_precision("w8")
        (True, False, False)
        >>> is_integer_precision("custom", {"activations": {"bits": 8}})
        True
    """
    if isinstance(scheme_detail, dict) and "activations" in scheme_detail:
        return scheme_detail.get("activations") is not None
    return bool(re.match(r"^w\d+(a\d+|-dyn)", scheme))


def roofline_figures(
    *,
    macs_per_sample: int | None,
    throughput_ips: float | None,
    precision: str,
    peaks: Roofline | None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The record's ``roofline`` field: achieved GOP/s, the matching peak, % of that peak.

    Example:
        >>> peaks = Roofline(cpu="c", int8_class="avx2", threads=2, fp32_gops=100.0, int8_gops=160.0)
        >>> f = roofline_figures(macs_per_sample=10**9, throughput_ips=40.0, precision="int8",
        ...                      peaks=peaks)
        >>> f["achieved_gops"], f["peak_gops"], f["pct_of_peak"]
        (80.0, 160.0, 50.0)
    """
    achieved = (
        None
        if macs_per_sample is None or not throughput_ips
        else round(achieved_gops(macs_per_sample=macs_per_sample, throughput_ips=throughput_ips), 3)
    )
    peak = None if peaks is None else peaks.peak(precision)
    pct = None if achieved is None or not peak else round(100.0 * achieved / peak, 2)
    return {
        "achieved_gops": achieved,
        "peak_gops": peak,
        "pct_of_peak": pct,
        "precision": precision,
        "macs_per_sample": macs_per_sample,
        "peak": None if peaks is None else peaks.to_dict(),
        "reason": reason,
    }


__all__ = [
    "Roofline",
    "achieved_gops",
    "is_integer_precision",
    "measure_roofline",
    "roofline",
    "roofline_figures",
]
