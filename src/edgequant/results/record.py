"""The result record: one benchmark run, with stable field names (DESIGN.md).

Field names are a contract; add fields freely, never rename these. ``schema`` is versioned.

Example:
    >>> r = ResultRecord(model="digits_cnn", backend="rt", scheme="w8a8",
    ...                  scenario="Offline", dataset="digits", threads=2, batch_size=8)
    >>> ResultRecord.from_dict(r.to_dict()) == r
    True
    >>> r.to_dict()["schema"]
    'edgequant.result/1'
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgequant.errors import ValidationError

SCHEMA = "edgequant.result/1"
SCHEMA_VERSION = 1
#: status of a run: ok = measured; na = the backend cannot run the scheme; failed = it raised
STATUSES = ("ok", "na", "failed", "interrupted")

_REQUIRED = ("model", "backend", "scheme", "scenario", "dataset", "threads", "batch_size")
_OPT_DICT = (dict, type(None))
_OPT_NUM = (int, float, type(None))
#: JSON types a stored record's fields may have (checked when a record is read back)
_TYPES: dict[str, tuple[type, ...]] = {
    **{
        k: (str,) for k in ("model", "backend", "scheme", "scenario", "dataset", "schema", "status")
    },
    "threads": (int,),
    "batch_size": (int,),
    **{k: (str, type(None)) for k in ("reason", "artifact", "energy_unavailable_reason")},
    **{k: (str, type(None)) for k in ("started_at", "finished_at")},
    **{k: _OPT_DICT for k in ("latency_ms", "loadgen", "accuracy", "energy")},
    **{k: _OPT_DICT for k in ("scheme_detail", "artifact_metadata")},
    **{
        k: _OPT_DICT
        for k in ("cpu_profile", "noise", "roofline", "compliance", "paired", "model_source")
    },
    "device": (str, type(None)),
    "throughput_ips": _OPT_NUM,
    **{k: (int, type(None)) for k in ("size_bytes", "weight_bytes", "peak_rss_bytes")},
    "environment": (dict,),
    "extra": (dict,),
    "simulated": (bool,),
}


@dataclass(kw_only=True)
class ResultRecord:
    """Everything measured in one run. ``None`` means "not measured" (never a guess)."""

    model: str
    backend: str
    scheme: str
    scenario: str
    dataset: str
    threads: int
    batch_size: int
    schema: str = SCHEMA
    status: str = "ok"
    reason: str | None = None  # for na / failed: the one-line reason
    latency_ms: dict[str, float] | None = None  # {mean, p50, p90, p99, ...}
    throughput_ips: float | None = None
    loadgen: dict[str, Any] | None = None  # {valid, mode, min_duration_ms, log_dir, ...}
    accuracy: dict[str, Any] | None = None  # {top1_pct, top5_pct, samples, agreement_with_fp32_pct}
    artifact: str | None = None
    size_bytes: int | None = None
    weight_bytes: int | None = None
    peak_rss_bytes: int | None = None
    energy: dict[str, Any] | None = None  # {joules_per_inference, avg_power_w, source}
    energy_unavailable_reason: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    simulated: bool = False
    scheme_detail: dict[str, Any] | None = None
    artifact_metadata: dict[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    #: the device the run happened on ("local", or an ``edgequant worker --device`` name)
    device: str | None = None
    #: :meth:`edgequant.hw.cpu.CpuProfile.to_dict` of the machine that ran it (INT8 class included)
    cpu_profile: dict[str, Any] | None = None
    #: :meth:`edgequant.measure.noise.NoiseReport.to_dict`: was the machine quiet while measuring
    noise: dict[str, Any] | None = None
    #: achieved GOP/s, the matching peak of :mod:`edgequant.measure.roofline`, % of that peak
    roofline: dict[str, Any] | None = None
    #: :meth:`edgequant.bench.compliance.ComplianceVerdict.to_dict` of a ``--compliance`` run
    compliance: dict[str, Any] | None = None
    #: the paired speed-up against the baseline (fp32 of the same runtime):
    #: :meth:`edgequant.measure.paired.PairedRatio.to_dict` plus ``baseline`` and ``metric``
    paired: dict[str, Any] | None = None
    #: where the model came from and how it was converted (format, path taken, numerical check)
    model_source: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValidationError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def valid(self) -> bool:
        """True only for a completed run that LoadGen itself judged VALID."""
        return self.status == "ok" and bool(self.loadgen and self.loadgen.get("valid"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultRecord:
        if not isinstance(data, dict):
            raise ValidationError(
                f"not an edgequant result record (a JSON {type(data).__name__}, not an object)"
            )
        schema = str(data.get("schema", SCHEMA))
        try:
            version = int(schema.rsplit("/", 1)[1])
        except (IndexError, ValueError):
            raise ValidationError(f"not an edgequant result record (schema {schema!r})") from None
        if version > SCHEMA_VERSION:
            raise ValidationError(
                f"result written by a newer edgequant (schema {schema}); upgrade edgequant to read it"
            )
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        missing = sorted(f.name for f in fields(cls) if f.name in _REQUIRED and f.name not in known)
        if missing:
            raise ValidationError(f"not an edgequant result record (missing {', '.join(missing)})")
        for key, value in known.items():
            kinds = _TYPES.get(key, (object,))
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValidationError(
                    f"not an edgequant result record ({key} is a {type(value).__name__})"
                )
        rec = cls(**known)
        rec.extra.update(extra)
        return rec

    def save(self, run_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        out = run_dir / "result.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(self.to_json())
        tmp.replace(out)
        return out

    @classmethod
    def load(cls, path: Path) -> ResultRecord:
        p = path / "result.json" if path.is_dir() else path
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValidationError(f"cannot read result {p}: {e}") from None
        except ValidationError as e:
            raise ValidationError(f"cannot read result {p}: {e}") from None
