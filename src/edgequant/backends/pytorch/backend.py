"""The PyTorch backend: Inductor-compiled fp32/bf16/fp16 and PT2E INT8, as AOTInductor packages.

An artifact is the model exported with ``torch.export`` (``program.pt2``, dynamic batch; for INT8
the PT2E-converted graph) plus one **AOTInductor package** per batch size it has been asked to
run (``model-b1.pt2``, ``model-b8.pt2``): the program re-exported at that static batch size,
compiled ahead of time by Inductor with ``freezing=True`` (weights folded in as constants, conv
weights prepacked for oneDNN for the real input size) and packaged as a shared library plus
weights. A package is compiled once, the first time a batch size is needed
(:meth:`PyTorchBackend.specialize`, called by ``edgequant bench`` before anything is timed), and
kept with the artifact; loading is ``aoti_load_package`` — well under a second, no
recompilation — where ``torch.compile`` would cost 15–40 s per model on every load. Compiling
only the sizes a run needs halves the build time of a SingleStream-only or Offline-only
artifact (each package costs 6–15 s here). Static shapes matter: a dynamic-batch package ran
ResNet-50 at 0.67x (fp32) and 0.43x (int8) the static speed here; other batch sizes run as
chunks of the compiled sizes, a short tail padded up to the smallest one.

What each scheme executes (recorded as ``executed_precision`` and ``execution`` in metadata):

* ``fp32`` — the *compiled* fp32 model (Inductor + oneDNN fp32 convs), not eager PyTorch: INT8
  speed-ups are measured against the best fp32 PyTorch can do. oneDNN's fp32 math mode is
  checked to be strict fp32 (no implicit bf16/tf32).
* ``bf16`` / ``fp16`` — the module cast to that dtype, wrapped so that the artifact still takes
  and returns float32; convs run in oneDNN's bf16 (native AVX512_BF16/AMX where the CPU has it)
  or fp16 kernels.
* ``w8a8``, ``w8a8-pt``, ``w8a8-sym`` — PT2E with ``X86InductorQuantizer``
  (see :mod:`edgequant.backends.pytorch.quantize` for the mapping); Inductor's freezing passes lower
  each quantized conv to a oneDNN u8×s8 ``qconv`` kernel (AVX-512 VNNI here).
* ``w8-only``, ``w8-dyn``, ``w4-only``, ``w4a8`` — n/a on CNNs, with the reason.

Threads: kernels are compiled with ``cpp.dynamic_threads=True`` so the thread count is read at run
time (``omp_get_max_threads()``) instead of being baked in at compile time; the session calls
``torch.set_num_threads(threads)`` before each run, on the calling thread, which sets both
ATen/oneDNN's pool and the OpenMP count used by Inductor's generated loops.

Example:
    >>> from edgequant.backends import get_backend
    >>> be = get_backend("pytorch")
    >>> be.supports(get_scheme("w8a8")) is None   # doctest: +SKIP
    True
    >>> art = be.prepare(model, get_scheme("w8a8"), calib, Path("out"))   # doctest: +SKIP
    >>> with be.load(art, threads=2) as s:                                 # doctest: +SKIP
    ...     logits = s.run(batch)
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgequant.backends.base import (
    Artifact,
    Backend,
    Build,
    InspectReport,
    Session,
    installed_versions,
    mixed_bits_reason,
)
from edgequant.backends.pytorch import debug
from edgequant.backends.pytorch.config import (
    _INDUCTOR_CONFIGS,
    _PACKAGE_RE,
    _PRECISION,
    _TORCH_DTYPES,
    DEFAULT_BATCH_SIZES,
    PACKAGE_TEMPLATE,
    PROGRAM_NAME,
)
from edgequant.backends.pytorch.inspect import GRAPH_NAME, inspect_graph, record_kernels
from edgequant.backends.pytorch.quantize import (
    DYNAMIC_REASON,
    WEIGHT_ONLY_REASON,
    _CastIO,
    analyze_graph,
    graph_constant_bytes,
    program_graph,
    pt2e_unsupported_reason,
    quantize_pt2e,
    static_batch_error,
)
from edgequant.backends.pytorch.session import MAX_BATCH, PyTorchSession
from edgequant.backends.pytorch.trust import check_packages, load_program, record_package
from edgequant.console import log
from edgequant.errors import (
    ArtifactError,
    ModelError,
    UnsupportedError,
    ValidationError,
    condense_error,
)
from edgequant.hw.cpu import cpu_flags
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    import torch

    from edgequant.models.base import Model


class PyTorchBackend(Backend):
    """PyTorch on CPU: Inductor-compiled float and PT2E INT8, saved as AOTInductor packages.

    Example:
        >>> PyTorchBackend().supports(get_scheme("w4a8"))   # doctest: +SKIP
        "oneDNN's quantized conv kernels behind PT2E on x86 take int8 weights ..."
    """

    name: ClassVar[str] = "pytorch"
    description: ClassVar[str] = (
        "PyTorch + Inductor (AOTInductor packages); INT8 via PT2E X86InductorQuantizer"
    )
    install_hint: ClassVar[str] = "pip install torch torchao"
    exclusive_build: ClassVar[bool] = True
    corrects_bias: ClassVar[bool] = True  # PT2E has no bias correction of its own
    # default_ranges stays None: PT2E's HistogramObserver searches the L2-optimal range, as the
    # simulator's default (mse) does
    layer_outputs = debug.layer_outputs  # per-layer intermediates, see pytorch/debug.py

    # --- availability ------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        import importlib.util

        try:
            import torch
            import torch._inductor as inductor
        except ImportError:
            return f"torch is not installed ({self.install_hint})"
        # find_spec, not import: importing torchao loads its C extensions (seconds, log noise)
        if importlib.util.find_spec("torchao") is None:
            return f"torchao is not installed, needed for PT2E INT8 ({self.install_hint})"
        if not hasattr(inductor, "aoti_compile_and_package"):
            return f"torch {torch.__version__} has no AOTInductor packaging; upgrade torch (>= 2.6)"
        return None

    def versions(self) -> dict[str, str]:
        """The installed torch and torchao (their distributions' versions; absent: left out)."""
        return installed_versions("torch", "torchao")

    # --- capability ---------------------------------------------------------------------------
    def supports(self, scheme: Scheme, model: Model | None = None) -> str | None:
        if model is not None and model.module is None:
            return (
                "needs the PyTorch module; a user's ONNX file cannot be run by the PyTorch backend"
            )
        if scheme.weights is None:
            return None
        if (mixed := mixed_bits_reason(scheme, "PT2E")) is not None:
            return mixed
        if scheme.float_dtype != "fp32":
            return f"integer schemes with {scheme.float_dtype} float parts are not mapped onto PT2E (fp32 only)"
        if "winograd" in scheme.techniques:
            return "Winograd convolution is simulated by the sim backend only"
        return pt2e_unsupported_reason(scheme)

    # --- build hooks (Backend.prepare runs them) ---------------------------------------------
    def _convert(self, build: Build) -> torch.nn.Module:
        """The module in eval mode (PT2E quantizes the module itself, before torch.export)."""
        if build.model.module is None:
            raise UnsupportedError("pytorch needs the model's nn.Module")
        build.meta.update(versions=self.versions(), cpu_flags=self._relevant_flags())
        build.state["t0"] = time.perf_counter()
        module = build.model.module.eval()
        graph, batch = program_graph(module), getattr(module, "batch", None)
        if graph is not module and batch is not None:
            # a .pt2 exported at a static batch: its own graph (reshapes freed by the loader)
            # is what gets re-exported with a dynamic batch, not the wrapper that chunks batches
            build.state["exported_batch"] = batch
            build.meta["source_batch"] = (
                f"the .pt2 was exported at batch {batch}; its graph is re-exported with a "
                "dynamic batch"
            )
            return graph
        return module

    def _quantize(self, build: Build, converted: torch.nn.Module) -> Any:
        """PT2E int8 (X86InductorQuantizer) or the float module cast to the scheme's dtype."""
        scheme, calibration, meta = build.scheme, build.calibration, build.meta
        example, dyn = self._example(build)
        try:
            if scheme.weights is None:
                exportable, graph_ops, extra = self._export_float(converted, scheme, example)
            else:
                if calibration is None:
                    raise ValidationError(f"scheme {scheme.name} needs calibration data")
                # PT2E has no bias correction (corrects_bias): on EfficientNet-Lite0 the first
                # depthwise conv's weight rounding alone cost more than all activations (logits
                # SQNR 19.5 dB without, 24.2 dB with it)
                exportable, graph_ops, extra = self._export_int8(
                    converted, scheme, calibration, example, dyn, build.state.get("int8_plan")
                )
                extra["quantizer"]["bias_correction"] = meta.get("bias_correction")
        except (ValidationError, UnsupportedError):
            raise
        except Exception as e:  # torch.export / quantizer failures come in many types
            if build.state.get("exported_batch") is not None:
                raise static_batch_error(build.state["exported_batch"], e) from e
            raise ModelError(
                f"PyTorch could not export/quantize {build.model.name} for {scheme.name}: "
                f"{condense_error(e)}"
            ) from e
        meta.update(extra)
        build.state["graph_ops"] = graph_ops
        return exportable

    def _save(self, build: Build, quantized: Any) -> Path:
        """``program.pt2`` (dynamic batch) and ``graph.json``; packages come with specialize()."""
        import torch

        meta, out_dir = build.meta, build.out_dir
        example, dyn = self._example(build)
        try:
            with torch.no_grad():
                program = torch.export.export(quantized, (example,), dynamic_shapes=dyn)
                torch.export.save(program, str(out_dir / PROGRAM_NAME))
        except Exception as e:
            if build.state.get("exported_batch") is not None:
                raise static_batch_error(build.state["exported_batch"], e) from e
            raise ModelError(
                f"PyTorch could not export/quantize {build.model.name} for {build.scheme.name}: "
                f"{condense_error(e)}"
            ) from e
        meta["export_quantize_s"] = round(time.perf_counter() - build.state["t0"], 3)
        graph = {"ops": build.state["graph_ops"], "kernels": {}}
        (out_dir / GRAPH_NAME).write_text(json.dumps(graph, indent=2))
        meta.update(
            format="torch.export program + AOTInductor packages",
            loads_without_recompiling=True,
            packages_note=(
                "one AOTInductor package (model-bN.pt2) per batch size, compiled the first time "
                "that size is asked for and kept here, hashed and signed with the program "
                "(extra_files); a result's size_bytes counts the exported program"
            ),
            inductor_configs=dict(_INDUCTOR_CONFIGS),
            input_shape=list(build.model.input_spec.shape),
            max_batch=MAX_BATCH,
            threads_control=(
                "compiled with cpp.dynamic_threads=True; the session calls torch.set_num_threads(threads) "
                "before each run (ATen/oneDNN pool and Inductor's OpenMP loops)"
            ),
        )
        return out_dir / PROGRAM_NAME

    @staticmethod
    def _example(build: Build) -> tuple[torch.Tensor, Any]:
        """Two calibration samples (or seeded noise) and the symbolic batch dimension."""
        import torch

        shape = tuple(build.model.input_spec.shape)
        calibration = build.calibration
        example = torch.from_numpy(
            np.ascontiguousarray(calibration[:2])
            if calibration is not None and len(calibration) >= 2
            else np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
        )
        # the calibration pass runs any batch size; the compiled packages are static
        dyn = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
        return example, dyn

    # --- per-batch packages -------------------------------------------------------------------
    @staticmethod
    def packages(artifact: Artifact) -> dict[int, Path]:
        """The compiled packages of an artifact, by batch size.

        Example:
            >>> PyTorchBackend.packages(art)   # doctest: +SKIP
            {1: PosixPath('.../model-b1.pt2'), 8: PosixPath('.../model-b8.pt2')}
        """
        out: dict[int, Path] = {}
        if artifact.directory.is_dir():
            for f in artifact.directory.iterdir():
                m = _PACKAGE_RE.match(f.name)
                if m and f.is_file():
                    out[int(m.group(1))] = f
        return dict(sorted(out.items()))

    def specialize(self, artifact: Artifact, batch_sizes: Iterable[int] | None = None) -> None:
        """Compile the AOTInductor package of each batch size the artifact lacks (once, kept).

        ``None`` means :data:`DEFAULT_BATCH_SIZES`. Costs 6–15 s per package here; a later load
        of the same size costs well under a second.

        Example:
            >>> be.specialize(art, [8])   # doctest: +SKIP
        """
        import torch

        wanted = sorted(set(DEFAULT_BATCH_SIZES if batch_sizes is None else batch_sizes))
        have = self.packages(artifact)
        missing = [b for b in wanted if b not in have]
        if not missing:
            return
        for b in missing:
            if not 1 <= b <= MAX_BATCH:
                raise ValidationError(f"batch size must be 1..{MAX_BATCH}, got {b}")
        if not (artifact.directory / PROGRAM_NAME).is_file():
            raise ArtifactError(
                f"{artifact.directory} has no {PROGRAM_NAME} to compile a batch-{missing[0]} "
                "package from; rebuild the artifact"
            )
        shape = tuple(artifact.metadata.get("input_shape") or ())
        module = load_program(artifact).module()  # refuses an artifact not signed here
        for b in missing:
            log(f"compiling the batch-{b} AOTInductor package (once; kept with the artifact)")
            t0 = time.perf_counter()
            final = artifact.directory / PACKAGE_TEMPLATE.format(batch=b)
            tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
            try:
                # no_grad: with autograd on, Inductor's freezing keeps weights as inputs and
                # lowers no int8 kernel
                with torch.no_grad():
                    static = torch.export.export(module, (torch.zeros((b, *shape)),))
                    torch._inductor.aoti_compile_and_package(
                        static, package_path=str(tmp), inductor_configs=dict(_INDUCTOR_CONFIGS)
                    )
                os.replace(tmp, final)
            except OSError as e:
                raise ArtifactError(
                    f"cannot write the batch-{b} package into {artifact.directory}: {e.strerror}"
                ) from e
            except Exception as e:
                raise ModelError(
                    f"AOTInductor could not compile {artifact.model} ({artifact.scheme.name}) "
                    f"at batch {b}: {condense_error(e)}"
                ) from e
            finally:
                tmp.unlink(missing_ok=True)
            log(f"compiled {final.name} in {time.perf_counter() - t0:.1f} s")
            record_package(artifact, final)  # hashed and signed: loaded only as ours
            record_kernels(artifact, final)

    def _export_float(
        self, module: torch.nn.Module, scheme: Scheme, example: torch.Tensor
    ) -> tuple[Any, list[dict[str, str]], dict[str, Any]]:
        import torch

        dtype_name = scheme.float_dtype
        target: torch.nn.Module = module
        if dtype_name != "fp32":
            target = _CastIO.wrap(module, getattr(torch, _TORCH_DTYPES[dtype_name]))
        with torch.no_grad():
            program = torch.export.export(target, (example,))
        precision = dtype_name
        ops = analyze_graph(
            program.graph_module, precision, f"{dtype_name} scheme (no quantization)"
        )
        weight_bytes = sum(
            int(t.numel()) * int(t.element_size()) for t in program.state_dict.values()
        ) + sum(
            int(t.numel()) * int(t.element_size())
            for t in program.constants.values()
            if hasattr(t, "numel")
        )
        meta: dict[str, Any] = {
            "executed_precision": _PRECISION[dtype_name],
            "execution": f"Inductor-compiled {dtype_name} (AOTInductor, freezing=True), not eager",
            "weight_bytes": weight_bytes,
            "quantizer": None,
        }
        if dtype_name == "fp32":
            meta["fp32_math_mode"] = self._fp32_math_mode()
        else:
            meta["io_dtype"] = "float32 (cast to and from the compute dtype inside the artifact)"
            flags = set(cpu_flags())
            if dtype_name == "bf16":
                meta["choice_reason"] = (
                    "native bf16 dot products (AVX512_BF16"
                    + (" + AMX" if "amx_bf16" in flags else "")
                    + ")"
                    if "avx512_bf16" in flags or "amx_bf16" in flags
                    else "no AVX512_BF16/AMX on this CPU: oneDNN emulates bf16 (expect it slower than fp32)"
                )
            else:
                meta["choice_reason"] = (
                    "native fp16 (AVX512_FP16/AMX_FP16)"
                    if {"avx512_fp16", "amx_fp16"} & flags
                    else "no AVX512_FP16 on this CPU: fp16 convs are converted to fp32 inside oneDNN (expect no speed-up)"
                )
        return target, ops, meta

    def _export_int8(
        self,
        module: torch.nn.Module,
        scheme: Scheme,
        calibration: np.ndarray,
        example: torch.Tensor,
        dyn: Any,
        plan: Any = None,
    ) -> tuple[Any, list[dict[str, str]], dict[str, Any]]:
        from edgequant.backends.int8_cpu import record_plan

        seven = plan.remedied if plan is not None and plan.remedy == "7bit" else []
        floats = plan.float_layers() if plan is not None else []
        converted, opts = quantize_pt2e(
            module, scheme, calibration, example, dyn, seven_bit=seven, float_modules=floats
        )
        ops = analyze_graph(converted, "int8")
        weight_bytes = graph_constant_bytes(converted)
        vnni = plan is None or not plan.saturating
        meta: dict[str, Any] = {
            "executed_precision": "i8",
            "execution": "PT2E int8: oneDNN u8 x s8 qconv/qlinear kernels lowered by Inductor freezing passes (AOTInductor)",
            "weight_bytes": weight_bytes,
            "quantizer": opts,
            "calibration_samples": len(calibration),
            "choice_reason": (
                "X86InductorQuantizer (u8 activations x s8 weights) is the layout oneDNN's int8 kernels run with "
                + (
                    "VNNI dot products on this CPU"
                    if vnni
                    else "no VNNI on this CPU (or ONEDNN_MAX_CPU_ISA): expect a smaller speed-up"
                )
                + (
                    "; reduce_range=False because VNNI has no u8xs8 overflow issue"
                    if vnni
                    else f"; {len(seven) + len(floats)} layer(s) that saturate remedied "
                    + ("(7-bit weights)" if seven else "(computed in f32)")
                )
            ),
        }
        if plan is not None:
            record_plan(meta, plan)
        return converted, ops, meta

    @staticmethod
    def _relevant_flags() -> list[str]:
        keep = (
            "avx512f",
            "avx512_vnni",
            "avx_vnni",
            "avx512_bf16",
            "avx512_fp16",
            "amx_bf16",
            "amx_int8",
            "amx_fp16",
        )
        flags = set(cpu_flags())
        return [f for f in keep if f in flags]

    @staticmethod
    def _fp32_math_mode() -> str:
        import torch

        try:
            return str(torch.backends.mkldnn.conv.fp32_precision)  # type: ignore[attr-defined]
        except AttributeError:
            return "ieee (default)"

    # --- load ---------------------------------------------------------------------------------
    def load(self, artifact: Artifact, threads: int) -> Session:
        import torch

        self.require()
        if threads < 1:
            raise ValidationError(f"threads must be >= 1, got {threads}")
        if artifact.backend != self.name:
            raise ArtifactError(
                f"{artifact.path} was built for {artifact.backend}, not {self.name}"
            )
        shape = tuple(artifact.metadata.get("input_shape") or ())
        if not shape:
            raise ArtifactError(
                f"{artifact.directory} metadata has no input_shape; rebuild the artifact"
            )
        if not self.packages(artifact):  # nobody said which batch sizes: batch 1 runs them all
            self.specialize(artifact, [1])
        packages = self.packages(artifact)
        check_packages(artifact, packages)  # native code: only packages signed here load
        runners: dict[int, Any] = {}
        for size, path in packages.items():
            if not zipfile.is_zipfile(path):
                raise ArtifactError(
                    f"{path} is not an AOTInductor package; delete {artifact.directory} and rebuild"
                )
            # no torch.set_num_threads here: it is process-global, and a cache check that loads
            # with threads=1 must not slow the rest of the process; run() sets it per call
            try:
                runners[size] = torch._inductor.aoti_load_package(str(path))
            except Exception as e:
                raise ArtifactError(
                    f"cannot load {path} ({condense_error(e)}); delete {artifact.directory} and rebuild"
                ) from e
        precision = str(artifact.metadata.get("executed_precision", "f32"))
        return PyTorchSession(runners, threads, shape, precision)

    # --- inspect ------------------------------------------------------------------------------
    def inspect(self, artifact: Artifact) -> InspectReport:
        """The ops of the exported graph and, once a package is compiled, its kernel counts."""
        return inspect_graph(artifact, self.name)


__all__ = [
    "DYNAMIC_REASON",
    "GRAPH_NAME",
    "PROGRAM_NAME",
    "WEIGHT_ONLY_REASON",
    "PyTorchBackend",
    "PyTorchSession",
]
