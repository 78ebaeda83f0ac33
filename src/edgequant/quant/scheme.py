"""Quantization schemes: frozen, validated, serialisable, with one naming code.

The naming code (also in the README):

========== ============================== ================================ =======================
name       weights                        activations                      notes
========== ============================== ================================ =======================
fp32       fp32                           fp32                             baseline
fp16       16-bit float                   16-bit float
bf16       bfloat16                       bfloat16
w8-only    int8 per-channel sym           fp32                             weight-only
w8-dyn     int8 per-channel sym           int8, range computed at run time dynamic
w8a8       int8 per-channel sym, GPTQ     int8 per-tensor asym, calibrated static; the default
w8a8-pt    int8 per-tensor sym            int8 per-tensor asym             per-layer weights
w8a8-sym   int8 per-channel sym           int8 per-tensor sym
w8a8-ada   int8 per-channel sym, AdaRound int8 per-tensor asym, min/max      + bias correction
w4a8       int4 per-channel sym           int8 per-tensor asym             QAT recommended
w4-only    int4 per-channel sym           fp32
========== ============================== ================================ =======================

``wN`` = N-bit integer weights, ``aN`` = N-bit integer activations, ``-only`` = float
activations, ``-dyn`` = activation ranges computed at run time, ``-pt`` = per-tensor weights,
``-sym`` = symmetric activations. ``w8a8`` rounds its weights by GPTQ on the runtime's grid
and corrects biases where it can (a PyTorch module and real calibration data; skipped with a
note otherwise: ``optional_techniques``). A scheme can also be written in full as a dict / YAML
(see :meth:`Scheme.from_dict`), e.g. 3-bit weights in blocks of 32 with MSE calibration.

Techniques (``techniques: [...]``), model transforms applied before any runtime sees the model
(:mod:`edgequant.quant.transforms`), in this order: ``bn_fold`` (fold batch norms), ``cle``
(cross-layer equalization), ``adaround`` (learn each weight's up/down rounding on the
calibration data, Nagel et al. 2020, and hand the runtime weights already on its grid:
:mod:`edgequant.quant.adaround`; needs calibration data), ``gptq`` (the same hand-over, the
rounding chosen in one pass of error feedback through the layer's inverse Hessian, Frantar et
al. 2022: seconds instead of minutes, :mod:`edgequant.quant.gptq`), ``brecq`` (AdaRound's learnt
rounding judged on each block's output instead of each layer's, Li et al. 2021:
:mod:`edgequant.quant.brecq`), ``bias_correction``
(empirical bias correction); ``winograd`` is executed by the simulator. E.g.
``{"base": "w4a8", "name": "w4a8-ada", "techniques": ["adaround"]}`` is w4a8 with AdaRound.
The rounding techniques learn on activations quantized as the target runtime quantizes them:
calibration ``default`` stands for that runtime's own kind of range
(:meth:`~edgequant.backends.base.Backend.runtime_scheme`: min/max for ONNX Runtime, OpenVINO and
LiteRT; MSE for the simulator and PyTorch's histogram observer).

Per-layer weight bit widths (``layer_bits: {SELECTOR: BITS}``): the layers a selector picks get
``BITS``-bit weights, the rest the scheme's. Selectors: ``first`` and ``last`` (the first and
last conv/linear in execution order), ``depthwise`` (convs with one input channel per group),
or a glob on the module name (``features.1.*``); a later entry wins over an earlier one. E.g.
``{"base": "w4a8", "layer_bits": {"first": 8, "last": 8}}`` keeps the stem and the classifier at
8 bits, as the AdaRound and BRECQ papers do (:mod:`edgequant.quant.layer_bits`).

Example:
    >>> s = get_scheme("w8a8")
    >>> (s.weights.bits, s.weights.granularity, s.activations.symmetric)
    (8, 'channel', False)
    >>> Scheme.from_dict(s.to_dict()) == s
    True
    >>> get_scheme({"base": "w4a8", "name": "w4a8-ada", "techniques": "adaround"}).techniques
    ('adaround',)
    >>> get_scheme({"name": "w3a8-b32", "weights": {"bits": 3, "granularity": "block:32"},
    ...             "activations": {"bits": 8, "symmetric": False}}).weights.block_size
    32
    >>> get_scheme({"base": "w4a8", "layer_bits": {"first": 8, "last": 8}}).layer_bits
    (('first', 8), ('last', 8))
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgequant.errors import ValidationError

SCHEME_VERSION = 1
TECHNIQUES = ("bn_fold", "cle", "adaround", "gptq", "brecq", "bias_correction", "winograd")
#: the techniques that choose each weight's rounding on the runtime's grid (one at a time)
ROUNDING_TECHNIQUES = ("adaround", "gptq", "brecq")
FLOAT_DTYPES = ("fp32", "fp16", "bf16")
#: ``layer_bits`` selectors besides module-name globs
LAYER_SELECTORS = ("first", "last", "depthwise")
_CALIB_RE = re.compile(r"^(default|minmax|mse|entropy|percentile(:\d+(\.\d+)?)?)$")


@dataclass(frozen=True, kw_only=True)
class TensorQuant:
    """How one kind of tensor (weights or activations) is quantized to integers.

    ``granularity`` is ``tensor``, ``channel`` or ``block:N`` (N consecutive input channels share
    a scale). ``dynamic`` (activations only): the range is computed at run time per batch.
    """

    bits: int = 8
    symmetric: bool = True
    granularity: str = "tensor"
    dynamic: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 16:
            raise ValidationError(f"bits must be an integer from 2 to 16, got {self.bits!r}")
        if self.granularity not in ("tensor", "channel") and not re.fullmatch(
            r"block:\d+", self.granularity
        ):
            raise ValidationError(
                f"granularity must be 'tensor', 'channel' or 'block:N', got {self.granularity!r}"
            )
        if self.block_size is not None and self.block_size < 1:
            raise ValidationError(f"block size must be >= 1, got {self.granularity!r}")

    @property
    def block_size(self) -> int | None:
        if self.granularity.startswith("block:"):
            return int(self.granularity.split(":", 1)[1])
        return None

    @property
    def qmin(self) -> int:
        """Smallest integer of the signed (symmetric) or unsigned (asymmetric) range."""
        return -(2 ** (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2**self.bits - 1


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    """How activation ranges are found for static schemes.

    ``method``: ``default`` (the runtime's tuned choice, recorded in the artifact), ``minmax``,
    ``percentile:99.99``, ``mse`` or ``entropy``. ``samples``: how many calibration samples.
    """

    method: str = "default"
    samples: int = 200

    def __post_init__(self) -> None:
        if not _CALIB_RE.match(self.method):
            raise ValidationError(
                f"calibration method must be default, minmax, percentile[:P], mse or entropy; got {self.method!r}"
            )
        if self.samples < 1:
            raise ValidationError(f"calibration samples must be >= 1, got {self.samples}")

    @property
    def percentile(self) -> float | None:
        if self.method.startswith("percentile"):
            return float(self.method.split(":", 1)[1]) if ":" in self.method else 99.99
        return None


@dataclass(frozen=True, kw_only=True)
class QATConfig:
    """Quantization-aware training settings (Krishnamoorthi's recipe)."""

    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 32
    freeze_bn_after_steps: int = 200
    freeze_observers_after_steps: int = 300
    distill: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValidationError(f"invalid QAT settings: {self}")


@dataclass(frozen=True, kw_only=True)
class Scheme:
    """A quantization scheme: what is quantized, how, and with which techniques.

    ``weights``/``activations`` = ``None`` means that tensor stays in ``float_dtype``.
    """

    name: str
    weights: TensorQuant | None = None
    activations: TensorQuant | None = None
    float_dtype: str = "fp32"
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    techniques: tuple[str, ...] = ()
    qat: QATConfig | None = None
    #: per-layer weight bits, ``((selector, bits), ...)``; later entries win
    layer_bits: tuple[tuple[str, int], ...] = ()
    #: True: the techniques are applied where they can be — a PyTorch module and real
    #: calibration data — and skipped with a note otherwise (a user's ``.onnx`` file, synthetic
    #: calibration for a speed run); False: a technique that cannot apply is an error. The
    #: built-in ``w8a8``'s GPTQ rounding and bias correction are optional; a scheme that lists
    #: its techniques itself asks for them (``from_dict`` and ``with_`` reset it to False)
    optional_techniques: bool = False
    version: int = SCHEME_VERSION

    def __post_init__(self) -> None:
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_.+:-]+", self.name):
            raise ValidationError(
                f"scheme name must be non-empty letters/digits/-_.+:, got {self.name!r}"
            )
        if self.float_dtype not in FLOAT_DTYPES:
            raise ValidationError(
                f"float_dtype must be one of {FLOAT_DTYPES}, got {self.float_dtype!r}"
            )
        bad = [t for t in self.techniques if t not in TECHNIQUES]
        if bad:
            raise ValidationError(f"unknown technique(s) {bad}; known: {', '.join(TECHNIQUES)}")
        if self.activations is not None and self.weights is None:
            raise ValidationError(
                "quantized activations need quantized weights in this scheme model"
            )
        if self.weights is not None and self.weights.dynamic:
            raise ValidationError("weights cannot be 'dynamic'; only activations can")
        # a list of pairs (as YAML or a caller gives it) becomes a hashable tuple of tuples
        object.__setattr__(self, "layer_bits", tuple(tuple(p) for p in self.layer_bits))
        for selector, bits in self.layer_bits:
            if self.weights is None:
                raise ValidationError("layer_bits needs a scheme with integer weights")
            if not isinstance(selector, str) or not selector:
                raise ValidationError(
                    f"layer_bits selector must be a non-empty string, got {selector!r}"
                )
            if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
                raise ValidationError(
                    f"layer_bits[{selector!r}] must be an integer from 2 to 16, got {bits!r}"
                )
        if self.version > SCHEME_VERSION:
            raise ValidationError(
                f"scheme {self.name!r} has version {self.version}, newer than this edgequant "
                f"({SCHEME_VERSION}); upgrade edgequant"
            )

    # --- what kind of scheme is this --------------------------------------------------------
    @property
    def is_float(self) -> bool:
        return self.weights is None

    @property
    def is_weight_only(self) -> bool:
        return self.weights is not None and self.activations is None

    @property
    def weight_bits_used(self) -> set[int]:
        """Every weight bit width the scheme may put on a layer (the base and ``layer_bits``)."""
        if self.weights is None:
            return set()
        return {self.weights.bits, *(b for _, b in self.layer_bits)}

    @property
    def weights_key(self) -> str:
        """What decides each layer's weight grid, as text (cache keys of weight transforms)."""
        return repr(self.weights) + (repr(self.layer_bits) if self.layer_bits else "")

    @property
    def is_dynamic(self) -> bool:
        return self.activations is not None and self.activations.dynamic

    @property
    def is_static(self) -> bool:
        """Static integer activations: needs calibration data."""
        return self.activations is not None and not self.activations.dynamic

    @property
    def needs_calibration(self) -> bool:
        return self.is_static or bool(
            {"bias_correction", *ROUNDING_TECHNIQUES} & set(self.techniques)
        )

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["techniques"] = list(self.techniques)
        if self.layer_bits:
            d["layer_bits"] = dict(self.layer_bits)
        else:  # absent when unused: older schemes keep their dicts (and cache keys)
            del d["layer_bits"]
        if not self.optional_techniques:
            del d["optional_techniques"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scheme:
        """Build from a dict (YAML). Unknown keys are an error naming the key."""
        data = dict(data)
        known = {
            "name",
            "weights",
            "activations",
            "float_dtype",
            "calibration",
            "techniques",
            "qat",
            "layer_bits",
            "optional_techniques",
            "version",
            "base",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"unknown scheme key(s) {unknown}; known: {sorted(known)}")
        base_name = data.pop("base", None)
        base = get_scheme(base_name) if base_name else None
        kwargs: dict[str, Any] = (
            {}
            if base is None
            else {
                "weights": base.weights,
                "activations": base.activations,
                "float_dtype": base.float_dtype,
                "calibration": base.calibration,
                "techniques": base.techniques,
                "qat": base.qat,
                "layer_bits": base.layer_bits,
                "optional_techniques": base.optional_techniques,
            }
        )
        kwargs["name"] = data.pop("name", base_name or "custom")
        for key, typ in (
            ("weights", TensorQuant),
            ("activations", TensorQuant),
            ("calibration", CalibrationConfig),
            ("qat", QATConfig),
        ):
            if key in data:
                kwargs[key] = _sub(typ, data.pop(key), key)
        if "layer_bits" in data:
            kwargs["layer_bits"] = _layer_bits(data.pop("layer_bits"))
        if "techniques" in data:
            t = data.pop("techniques")
            kwargs["techniques"] = tuple([t] if isinstance(t, str) else t or ())
            kwargs["optional_techniques"] = False  # listed by the caller: asked for
        kwargs.update(data)
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise ValidationError(f"invalid scheme: {e}") from None

    def with_(self, **changes: Any) -> Scheme:
        """A copy with some fields changed (validated again). New ``techniques`` are asked
        for (``optional_techniques`` False) unless ``optional_techniques`` is given too."""
        if "techniques" in changes:
            changes.setdefault("optional_techniques", False)
        return replace(self, **changes)


def _sub(typ: type, value: Any, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, typ):
        return value
    if not isinstance(value, dict):
        raise ValidationError(f"scheme key {key!r} must be a mapping, got {value!r}")
    try:
        return typ(**value)
    except TypeError as e:
        raise ValidationError(f"invalid {key!r} in scheme: {e}") from None


def _layer_bits(value: Any) -> tuple[tuple[str, int], ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        return tuple((str(k), v) for k, v in value.items())
    if isinstance(value, list | tuple) and all(
        isinstance(p, list | tuple) and len(p) == 2 for p in value
    ):
        return tuple((str(k), v) for k, v in value)
    raise ValidationError(
        f"layer_bits must map selectors to bits, e.g. {{first: 8, last: 8}}; got {value!r}"
    )


def _w(bits: int, gran: str = "channel") -> TensorQuant:
    return TensorQuant(bits=bits, symmetric=True, granularity=gran)


def _a(sym: bool = False, dynamic: bool = False) -> TensorQuant:
    return TensorQuant(bits=8, symmetric=sym, granularity="tensor", dynamic=dynamic)


BUILTIN_SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(name="fp32"),
        Scheme(name="fp16", float_dtype="fp16"),
        Scheme(name="bf16", float_dtype="bf16"),
        Scheme(name="w8-only", weights=_w(8)),
        Scheme(name="w8-dyn", weights=_w(8), activations=_a(dynamic=True)),
        # w8a8's weights rounded by GPTQ on the runtime's own grid, then bias correction, where
        # the model is a PyTorch module and the calibration data real (optional techniques:
        # skipped with a note for an .onnx file or synthetic calibration); activation ranges
        # min/max everywhere (what ONNX Runtime, OpenVINO and LiteRT compute; PyTorch and the
        # simulator too, so the rounding is learnt on the ranges each runtime uses). Measured on
        # EfficientNet-Lite0, each half of 200 dev images calibrating for the other (Intel Xeon,
        # amx-int8), logits SQNR against fp32 on ONNX Runtime / OpenVINO / LiteRT / PyTorch:
        # 23.3 / 22.7 / 23.3 / 23.8 dB with nearest rounding, 25.4 / 25.6 / 25.4 / 25.4 with it
        # (PyTorch 24.2 with its histogram ranges).
        Scheme(
            name="w8a8",
            weights=_w(8),
            activations=_a(),
            techniques=("gptq", "bias_correction"),
            calibration=CalibrationConfig(method="minmax"),
            optional_techniques=True,
        ),
        Scheme(name="w8a8-pt", weights=_w(8, "tensor"), activations=_a()),
        Scheme(name="w8a8-sym", weights=_w(8), activations=_a(sym=True)),
        # w8a8 whose weights' rounding is learnt on the calibration data (AdaRound on the
        # runtime's own grid, then bias correction): minutes more to build, the most accurate 8 bits.
        # Activation ranges min/max everywhere, PyTorch and the simulator included (their
        # default is an L2-optimal range): the rounding is learnt on inputs quantized as every
        # runtime will quantize them. Measured on EfficientNet-Lite0, each half of 200 dev images
        # calibrating for the other (Intel Xeon, amx-int8), agreement with fp32 on PyTorch / ONNX
        # Runtime / OpenVINO / LiteRT: 98.5 / 99.0 / 99.0 / 99.0% now; 97.5 / 98.5 / 98.0 / 98.5%
        # when the rounding was learnt on the simulator's MSE ranges (PyTorch's histogram).
        Scheme(
            name="w8a8-ada",
            weights=_w(8),
            activations=_a(),
            techniques=("adaround", "bias_correction"),
            calibration=CalibrationConfig(method="minmax"),
        ),
        Scheme(name="w4a8", weights=_w(4), activations=_a()),
        Scheme(name="w4-only", weights=_w(4)),
    )
}


def scheme_names() -> list[str]:
    """The built-in scheme names, in table order."""
    return list(BUILTIN_SCHEMES)


def get_scheme(spec: str | dict[str, Any] | Scheme | Path) -> Scheme:
    """A scheme from a built-in name, a dict, a ``.yaml`` file path or a Scheme.

    Unknown names list the close matches.
    """
    if isinstance(spec, Scheme):
        return spec
    if isinstance(spec, dict):
        return Scheme.from_dict(spec)
    text = str(spec)
    if text in BUILTIN_SCHEMES:
        return BUILTIN_SCHEMES[text]
    if text.endswith((".yaml", ".yml")) or isinstance(spec, Path):
        import yaml

        path = Path(text)
        if not path.is_file():
            raise ValidationError(f"scheme file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValidationError(
                f"scheme file {path} is not valid YAML: {str(e).splitlines()[0]}"
            ) from None
        if not isinstance(data, dict):
            raise ValidationError(f"scheme file {path} must hold a mapping")
        return Scheme.from_dict(data)
    close = difflib.get_close_matches(text, list(BUILTIN_SCHEMES), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValidationError(f"unknown scheme {text!r}{hint} (known: {', '.join(BUILTIN_SCHEMES)})")


__all__ = [
    "BUILTIN_SCHEMES",
    "LAYER_SELECTORS",
    "TECHNIQUES",
    "CalibrationConfig",
    "QATConfig",
    "Scheme",
    "TensorQuant",
    "get_scheme",
    "scheme_names",
]
