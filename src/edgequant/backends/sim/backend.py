"""``sim``: our fake-quant simulator as a backend. It runs *any* scheme, to study accuracy.

Weights and activations of 2–16 bits, symmetric or asymmetric, per-tensor / per-channel /
per-block, dynamic activations, fp16/bf16 (by rounding), Winograd — all as PyTorch fake
quantization (:mod:`edgequant.quant.simulate`). Its speed is **not representative** of any
integer runtime (it computes in fp32 with extra rounding work): ``simulated = True`` and reports
say so.

The artifact is the calibrated fake-quant module (``model.pt``, a pickled ``torch.fx``
GraphModule: loads without the model's source class and without re-calibrating) plus
``qparams.json`` (every scale and zero-point, for reading). A pickle can run code when loaded,
so ``model.pt`` is only unpickled after :func:`~edgequant.backends.artifact.require_trusted` has
checked the artifact's signature (an HMAC under this user's key, written at build time) and the
sha256 of its files: a folder copied from elsewhere is refused, never run. ``weight_bytes`` in the metadata is
what the weights take at their quantized widths, as an integer runtime stores them.

Example:
    >>> from edgequant.quant.scheme import get_scheme
    >>> SimBackend.simulated, SimBackend().supports(get_scheme("w4a8")) is None
    (True, True)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgequant.backends.artifact import require_trusted
from edgequant.backends.base import Artifact, Backend, Build, InspectReport, OpInfo, Session
from edgequant.errors import ArtifactError, ValidationError
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    import torch.nn as nn

    from edgequant.models.base import Model

MODEL_FILE = "model.pt"


def _precision(scheme: Scheme) -> str:
    if scheme.weights is None:
        return {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}[scheme.float_dtype]
    w = f"w{scheme.weights.bits}"
    if scheme.activations is None:
        return f"{w}-f32 (simulated)"
    return f"{w}a{scheme.activations.bits}{'-dyn' if scheme.is_dynamic else ''} (simulated)"


class SimSession(Session):
    """Runs the fake-quant module with ``threads`` intra-op threads."""

    def __init__(self, module: nn.Module, threads: int, precision: str) -> None:
        import torch

        self._module = module.eval()
        self._threads = threads
        self.executed_precision = precision
        torch.set_num_threads(max(1, threads))

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            y = self._module(x)
        return y.float().numpy().astype(np.float32, copy=False)


class SimBackend(Backend):
    """The fake-quant simulator (see the module docstring)."""

    name = "sim"
    description = "edgequant's PyTorch fake-quant simulator: any scheme, accuracy only (speed not representative)"
    install_hint = "pip install torch"
    simulated = True
    needs_torch_module = True

    def unavailable_reason(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError:
            return f"PyTorch is not installed ({self.install_hint})"
        return None

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__.split("+")[0], "edgequant-sim": "1"}

    def supports(self, scheme: Scheme, model: Model | None = None) -> str | None:
        if model is not None and model.module is None:
            return "the simulator needs the PyTorch module; a user's .onnx file has none"
        return None

    def runtime_scheme(self, scheme: Scheme) -> Scheme:
        """The scheme as written; with ``EDGEQUANT_SIM_TARGET=RUNTIME:CLASS``, as that runtime
        applies it (LiteRT's 4-bit schemes: depthwise convs at 8 bits; calibration ``default``:
        min/max ranges for ONNX Runtime, OpenVINO and LiteRT), so the prediction is of what the
        runtime runs."""
        import os

        from edgequant.backends import backend_names, get_backend
        from edgequant.backends.int8_cpu import SIM_TARGET_ENV

        runtime = os.environ.get(SIM_TARGET_ENV, "").strip().rpartition(":")[0]
        if runtime in backend_names() and runtime != self.name:
            return get_backend(runtime).runtime_scheme(scheme)
        return scheme

    # --- build hooks (Backend.prepare runs them) ---------------------------------------------
    def _convert(self, build: Build) -> nn.Module:
        """The module after the scheme's techniques (BN fold, CLE, bias correction)."""
        from edgequant.quant.transforms import apply_techniques

        scheme = self.runtime_scheme(build.scheme)
        model = apply_techniques(build.model, scheme, build.calibration)
        if model.module is None:  # for mypy; supports() has excluded it
            raise ValidationError("the simulator needs a PyTorch module")
        build.state["techniques_applied"] = model.info.get("techniques_applied", [])
        return model.module

    def _quantize(self, build: Build, converted: nn.Module) -> nn.Module:
        """The calibrated fake-quant GraphModule, on ``EDGEQUANT_SIM_TARGET``'s int8 arithmetic."""
        from edgequant.backends.int8_cpu import sim_target
        from edgequant.quant.layer_bits import changed_bits
        from edgequant.quant.simulate import quantize_module

        arith = sim_target(build.meta)  # records int8_arith / int8_target in artifact.json
        scheme = self.runtime_scheme(build.scheme)
        if scheme.layer_bits:
            build.meta["layer_bits"] = changed_bits(converted, scheme)
        return quantize_module(converted, scheme, build.calibration, arith=arith)

    def _save(self, build: Build, quantized: nn.Module) -> Path:
        """``model.pt`` (the pickled GraphModule) and ``qparams.json`` (every scale and zero-point)."""
        import torch

        from edgequant.quant.observers import resolve_method
        from edgequant.quant.simulate import quant_params, weight_bytes

        scheme, calibration, out_dir = build.scheme, build.calibration, build.out_dir
        path = out_dir / MODEL_FILE
        torch.save(quantized, path)
        (out_dir / "qparams.json").write_text(json.dumps(quant_params(quantized), indent=1))
        build.meta.update(
            executed_precision=_precision(scheme),
            simulated=True,
            speed_note="fake quantization in fp32: speed not representative of integer runtimes",
            weight_bytes=weight_bytes(quantized),
            calibration_method=resolve_method(self.runtime_scheme(scheme).calibration.method)
            if scheme.is_static
            else None,
            calibration_samples=None if calibration is None else len(calibration),
            techniques_applied=build.state["techniques_applied"],
            extra_files=[str(out_dir / "qparams.json")],
            versions=self.versions(),
        )
        return path

    def _describe(self, artifact: Artifact) -> None:
        """Sign the artifact first: inspecting it unpickles ``model.pt``, which needs a signature."""
        artifact.save_metadata()
        super()._describe(artifact)

    def load(self, artifact: Artifact, threads: int) -> SimSession:
        self.require()
        return SimSession(_read_module(artifact), threads, _precision(artifact.scheme))

    def inspect(self, artifact: Artifact) -> InspectReport:
        import torch

        from edgequant.quant.simulate import ActQuant, QuantLayer

        module = _read_module(artifact)
        report = InspectReport(
            artifact=str(artifact.path), backend=self.name, scheme=artifact.scheme.name
        )
        for name, m in module.named_modules():
            if isinstance(m, QuantLayer):
                kind = type(m.inner).__name__
                if getattr(m.inner, "groups", 1) > 1:
                    kind += (
                        " (depthwise)" if m.inner.groups == m.inner.in_channels else " (grouped)"
                    )
                if m.wq is None:
                    prec, reason = artifact.scheme.float_dtype, "kept in float"
                else:
                    prec, reason = f"int{m.wq.bits}", ""
                if m.use_winograd:
                    kind += " [winograd F(2x2,3x3)]"
                report.ops.append(OpInfo(name=name, op_type=kind, precision=prec, reason=reason))
            elif isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and not name.endswith(".inner"):
                report.ops.append(
                    OpInfo(
                        name=name,
                        op_type=type(m).__name__,
                        precision="fp32",
                        reason="excluded from quantization (mixed precision)",
                    )
                )
            elif isinstance(m, ActQuant) and m.tq is not None:
                report.ops.append(
                    OpInfo(name=name, op_type="ActQuant", precision=f"int{m.tq.bits}")
                )
        report.notes.append("simulated: fake quantization in fp32; speed not representative")
        return report


def _read_module(artifact: Artifact) -> nn.Module:
    """The pickled GraphModule of an artifact this user built here (checked first)."""
    import torch

    require_trusted(artifact, "a pickle")
    try:
        module = torch.load(artifact.path, weights_only=False)
    except Exception as e:  # truncated / corrupt pickle: many exception types
        raise ArtifactError(
            f"sim artifact {artifact.path} cannot be read ({type(e).__name__}); delete it and rebuild"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ArtifactError(
            f"sim artifact {artifact.path} holds a {type(module).__name__}, not a module; rebuild it"
        )
    return module


__all__ = ["SimBackend", "SimSession"]
