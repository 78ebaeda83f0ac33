"""MLPerf compliance tests TEST01 and TEST04: LoadGen's audit modes, verified as MLCommons does.

**TEST01** (valid inferences in performance mode): a performance run with an ``audit.config``
that makes LoadGen log a random subset of the responses (``accuracy_log_rng_seed``,
``accuracy_log_sampling_target``). Verified like ``compliance/TEST01/run_verification.py``:

- *accuracy*: every logged response must equal the accuracy-mode response of the same
  ``qsl_idx`` (``verify_accuracy.py`` compares the first element at a chosen dtype; we compare
  the whole response, which is stricter, and report the top-1 comparison beside it); at least
  one sample must match. Where responses differ, MLCommons' fallback compares top-1 accuracy of
  both logs on the logged samples and accepts a relative difference of at most 1%;
- *performance*: the audit run's score within ±10% of the reference performance run (±20% for
  SingleStream latencies ≤ 0.2 ms and MultiStream ≤ 1.6 ms), both VALID, same scenario.

**TEST04** (no caching speed-up): the same sample is issued for every query
(``performance_issue_same = 1``, index 3 of the loaded set); the run may be at most 10% *faster*
than the reference (20% for SingleStream/MultiStream, as the official script computes it).

Both checks also confirm the audit config was applied (LoadGen's "Found Audit Config file"
warning and the ``effective_*`` settings in the detail log). The ResNet-50 TEST01 file's
``accuracy_log_sampling_target`` is not available offline; edgequant uses
:data:`TEST01_SAMPLING_TARGET` and records the value it used.

Example:
    >>> print(audit_config_text("TEST04").splitlines()[0])
    *.*.mode = 2
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.bench.logs import read_detail
from edgequant.errors import BenchmarkError, ValidationError

TESTS = ("TEST01", "TEST04")
#: the seed every official TEST01 audit.config uses
TEST01_SEED = 720381539243781796
TEST01_SAMPLING_TARGET = 256
TEST04_SAME_INDEX = 3
AUDIT_WARNING = "Found Audit Config file"

_SCORE_KEY = {
    "Offline": "result_samples_per_second",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
    "Server": "result_completed_samples_per_sec",
}
_LATENCY_SCENARIOS = ("SingleStream", "MultiStream")


def audit_config_text(test: str, *, sampling_target: int = TEST01_SAMPLING_TARGET) -> str:
    """The ``audit.config`` of a compliance test, in LoadGen's ``model.scenario.key = value`` form."""
    test = check_test(test)
    if test == "TEST01":
        lines = [
            "*.*.mode = 2",
            f"*.*.accuracy_log_rng_seed = {TEST01_SEED}",
            f"*.*.accuracy_log_sampling_target = {int(sampling_target)}",
        ]
    else:
        lines = [
            "*.*.mode = 2",
            "*.*.performance_issue_unique = 0",
            "*.*.performance_issue_same = 1",
            f"*.*.performance_issue_same_index = {TEST04_SAME_INDEX}",
        ]
    return "\n".join(lines) + "\n"


def check_test(test: str) -> str:
    name = test.upper()
    if name not in TESTS:
        raise ValidationError(f"unknown compliance test {test!r}; choose one of {', '.join(TESTS)}")
    return name


def write_audit_config(test: str, directory: Path, **kw: Any) -> Path:
    """Write the test's ``audit.config`` into ``directory``; return its path (passed to LoadGen)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "audit.config"
    path.write_text(audit_config_text(test, **kw))
    return path


def read_accuracy_log(path: Path) -> list[tuple[int, str]]:
    """``(qsl_idx, hex data)`` of each entry of an ``mlperf_log_accuracy.json``."""
    try:
        entries = json.loads(Path(path).read_text() or "[]")
    except (OSError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"cannot read LoadGen's accuracy log {path}: {e}") from None
    if not isinstance(entries, list):
        raise BenchmarkError(f"{path} is not a LoadGen accuracy log (no list of entries)")
    try:
        return [(int(e["qsl_idx"]), str(e.get("data", "")).upper()) for e in entries]
    except (KeyError, TypeError, ValueError) as e:
        raise BenchmarkError(f"{path} has an entry without qsl_idx/data ({e})") from None


def _top1(hex_data: str) -> int | None:
    if not hex_data:
        return None
    return int(np.frombuffer(bytes.fromhex(hex_data), dtype=np.int32)[0])


@dataclass(kw_only=True)
class Check:
    """One verified criterion: passed or not, and the evidence in a line."""

    name: str
    passed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, **self.figures}


def verify_accuracy(
    reference: Sequence[tuple[int, str]],
    audit: Sequence[tuple[int, str]],
    labels: Sequence[int] | None = None,
) -> Check:
    """TEST01's accuracy criterion: audit responses equal the accuracy-mode ones (see module doc).

    Example:
        >>> verify_accuracy([(0, "01000000"), (1, "02000000")], [(1, "02000000")]).passed
        True
        >>> verify_accuracy([(0, "01000000")], [(0, "05000000")]).detail.startswith("1 of 1")
        True
    """
    ref: dict[int, str] = {}
    for idx, data in reference:
        ref.setdefault(idx, data)
    matched = mismatched = top1_mismatched = missing = 0
    for idx, data in audit:
        if idx not in ref:
            missing += 1
            continue
        matched += 1
        if data != ref[idx]:
            mismatched += 1
            top1_mismatched += _top1(data) != _top1(ref[idx])
    figures: dict[str, Any] = {
        "audit_entries": len(audit),
        "qsl_idx_matched": matched,
        "data_mismatched": mismatched,
        "top1_mismatched": top1_mismatched,
        "missing_in_reference": missing,
    }
    if matched == 0:
        return Check(
            name="accuracy",
            passed=False,
            detail="no logged sample of the audit run is in the accuracy-mode log",
            figures=figures,
        )
    if mismatched == 0:
        return Check(
            name="accuracy",
            passed=True,
            detail=f"{matched} logged responses equal the accuracy-mode responses",
            figures=figures,
        )
    detail = f"{mismatched} of {matched} logged responses differ from accuracy mode"
    passed = False
    if labels is not None:
        # MLCommons' fallback: top-1 accuracy of both logs on the audit's samples within 1%
        idxs = sorted({i for i, _ in audit if i in ref})
        audit_map = dict(audit)
        base = sum(_top1(ref[i]) == labels[i] for i in idxs) / len(idxs)
        comp = sum(_top1(audit_map[i]) == labels[i] for i in idxs) / len(idxs)
        delta = 100.0 if comp == 0 or base == 0 else abs(1 - base / comp) * 100
        passed = delta <= 1.0
        figures.update(baseline_top1_pct=100 * base, audit_top1_pct=100 * comp, delta_pct=delta)
        detail += f"; top-1 {100 * comp:.2f}% vs {100 * base:.2f}% (delta {delta:.2f}% {'<=' if passed else '>'} 1%)"
    return Check(name="accuracy", passed=passed, detail=detail, figures=figures)


def _score(d: dict[str, Any], path: Path) -> tuple[str, float]:
    scenario = str(d.get("effective_scenario", ""))
    key = _SCORE_KEY.get(scenario)
    if key is None or d.get(key) is None:
        raise BenchmarkError(f"{path} has no {key or 'score'} for scenario {scenario!r}")
    return scenario, float(d[key])


def verify_performance(test: str, reference_detail: Path, audit_detail: Path) -> Check:
    """The performance criterion of TEST01 (two-sided ±10%) or TEST04 (at most 10% faster)."""
    test = check_test(test)
    ref, aud = read_detail(reference_detail), read_detail(audit_detail)
    for d, p in ((ref, reference_detail), (aud, audit_detail)):
        if d.get("result_validity") != "VALID":
            return Check(name="performance", passed=False, detail=f"{p} is not a VALID run")
    (scen, r), (scen_a, a) = _score(ref, reference_detail), _score(aud, audit_detail)
    if scen != scen_a:
        return Check(
            name="performance", passed=False, detail=f"scenarios differ: {scen} vs {scen_a}"
        )
    latency = scen in _LATENCY_SCENARIOS
    if test == "TEST01":
        short = (scen == "SingleStream" and r <= 200_000) or (
            scen == "MultiStream" and r <= 1_600_000
        )
        tol = 0.20 if short else 0.10
        passed = r * (1 - tol) <= a <= r * (1 + tol)
        rule = f"within ±{tol:.0%}"
    else:
        # the official script turns latencies into 1e9/latency scores and then uses 20% for them
        tol = 0.20 if latency else 0.10
        speed_ref, speed_aud = (1e9 / r, 1e9 / a) if latency else (r, a)
        passed = speed_aud < speed_ref * (1 + tol)
        rule = f"at most {tol:.0%} faster"
    unit = "ns" if latency else "samples/s"
    ratio = a / r
    return Check(
        name="performance",
        passed=passed,
        detail=f"{scen} audit {a:.6g} vs reference {r:.6g} {unit} (×{ratio:.3f}; must be {rule})",
        figures={"scenario": scen, "reference": r, "audit": a, "unit": unit, "tolerance": tol},
    )


def verify_applied(test: str, audit_detail: Path, *, sampling_target: int | None = None) -> Check:
    """The audit config really was in effect: LoadGen's warning and its effective settings."""
    test = check_test(test)
    d = read_detail(audit_detail)
    problems = []
    if not any(AUDIT_WARNING in w for w in d["_warnings"]):
        problems.append("LoadGen did not report reading the audit config")
    if d.get("effective_test_mode") not in (None, "PerformanceOnly"):
        problems.append(f"mode was {d.get('effective_test_mode')}, not PerformanceOnly")
    if test == "TEST01":
        if d.get("effective_accuracy_log_rng_seed") not in (None, TEST01_SEED):
            problems.append("accuracy_log_rng_seed was not the audit's")
        if sampling_target is not None and d.get("effective_accuracy_log_sampling_target") not in (
            None,
            sampling_target,
        ):
            problems.append("accuracy_log_sampling_target was not the audit's")
    elif d.get("effective_performance_issue_same") not in (None, True, 1):
        problems.append("performance_issue_same was not in effect")
    return Check(
        name="audit applied",
        passed=not problems,
        detail="; ".join(problems) or "LoadGen applied the audit config",
    )


@dataclass(kw_only=True)
class ComplianceVerdict:
    """The outcome of one compliance test, as stored under ``compliance`` in a result record."""

    test: str
    checks: list[Check]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def summary(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if not failed:
            return f"{self.test} PASS"
        return f"{self.test} FAIL: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "passed": self.passed,
            "summary": self.summary(),
            "checks": [c.to_dict() for c in self.checks],
            "settings": self.settings,
        }


__all__ = [
    "TESTS",
    "Check",
    "ComplianceVerdict",
    "audit_config_text",
    "read_accuracy_log",
    "verify_accuracy",
    "verify_applied",
    "verify_performance",
    "write_audit_config",
]
