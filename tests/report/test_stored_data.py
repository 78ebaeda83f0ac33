"""The report reads stored data only, names no backend, and writes its file safely."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgequant
from edgequant.backends import backend_names, get_backend
from edgequant.errors import ValidationError
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore

SRC = Path(edgequant.__file__).parent
RUNTIMES = ("torch", "onnxruntime", "openvino", "ai_edge_litert", "tensorrt", "nncf")


def _slow_runs(tmp_path: Path, *, meta_in_record: bool) -> Path:
    """A runtime whose w8a8 is barely faster than its fp32: the report notes it as slow INT8."""
    backend = next(n for n in backend_names() if not get_backend(n).simulated)
    runs = tmp_path / "runs"
    art_dir = tmp_path / "cache" / "entry"
    art_dir.mkdir(parents=True)
    (art_dir / "model.bin").write_bytes(b"\0" * 64)
    meta = {"inspect_summary": "2/9 convs in integer precision", "inspect_notes": ["why: x"]}
    (art_dir / "artifact.json").write_text(json.dumps({"backend": backend, **meta}))
    base = dict(
        model="m",
        backend=backend,
        scenario="Offline",
        dataset="synthetic",
        threads=1,
        batch_size=1,
        loadgen={"valid": True},
    )
    recs = {
        "fp32": ResultRecord(scheme="fp32", throughput_ips=100.0, **base),  # type: ignore[arg-type]
        "w8a8": ResultRecord(
            scheme="w8a8",
            throughput_ips=105.0,
            artifact=str(art_dir / "model.bin"),
            artifact_metadata=meta if meta_in_record else {},
            **base,  # type: ignore[arg-type]
        ),
    }
    with ResultStore(runs) as store:
        for scheme, rec in recs.items():
            rec.save(runs / scheme)
            store.add(scheme, rec, runs / scheme)
    return runs


@pytest.mark.parametrize("meta_in_record", [True, False])
def test_slow_int8_note_comes_from_stored_inspection_without_a_runtime(
    tmp_path: Path, meta_in_record: bool
) -> None:
    runs = _slow_runs(tmp_path, meta_in_record=meta_in_record)
    code = (
        "import sys, json\n"
        "from edgequant.report.build import collect\n"
        f"data = collect({str(runs)!r}, plots=False)\n"
        "print(json.dumps({'slow': [[s.summary, s.notes] for s in data.slow],"
        " 'mods': sorted({m.split('.')[0] for m in sys.modules})}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    doc = json.loads(out)
    assert doc["slow"] == [["2/9 convs in integer precision", ["why: x"]]]
    assert not set(doc["mods"]) & set(RUNTIMES)


def test_slow_int8_note_without_stored_inspection_says_what_to_run(tmp_path: Path) -> None:
    from edgequant.report.build import collect

    runs = _slow_runs(tmp_path, meta_in_record=False)
    (tmp_path / "cache" / "entry" / "artifact.json").write_text("[not an object")
    (note,) = collect(runs, plots=False).slow
    assert (
        note.summary.startswith("no inspection was stored") and "edgequant inspect" in note.summary
    )


def test_report_to_a_directory_is_one_clear_line_and_leaves_no_tmp(tmp_path: Path) -> None:
    from edgequant.cli import main

    runs = _slow_runs(tmp_path, meta_in_record=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ValidationError, match="is a directory; give a file name"):
        edgequant.report(runs, out_dir, format="md")
    assert main(["report", str(runs), "-o", str(out_dir), "--format", "md"]) == 2
    assert not list(tmp_path.glob("*.tmp")) and not list(out_dir.iterdir())


def test_report_package_is_callable_and_keeps_its_modules(tmp_path: Path) -> None:
    import edgequant.report.tables as tables

    runs = _slow_runs(tmp_path, meta_in_record=True)
    assert edgequant.report.tables is tables
    out = edgequant.report(runs, tmp_path / "r.md")
    assert out == tmp_path / "r.md" and out.read_text().startswith("#")
    assert edgequant.report(runs, format="csv") == runs / "report.csv"


# --- no backend names outside backends/ (in the files of this area) ------------------------------
AREA = [
    *sorted((SRC / "report").rglob("*.py")),
    *sorted((SRC / "results").rglob("*.py")),
    *(
        SRC / "cli" / f
        for f in (
            "qat_cmd.py",
            "lab_cmd.py",
            "train_cmd.py",
            "report_cmd.py",
            "results_cmd.py",
            "models_cmd.py",
            "backends_cmd.py",
        )
    ),
    *(SRC / "studies" / f for f in ("lab.py", "pipeline.py", "qat.py")),
    *(SRC / "quant" / f for f in ("sensitivity.py", "winograd.py")),
    SRC / "__init__.py",
    SRC / "training.py",
]
NAMES = {
    "onnxruntime",
    "openvino",
    "litert",
    "pytorch",
    "tensorrt",
    "sim",
    "ort",
    "ov",
    "tflite",
    "trt",
}


def _string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


@pytest.mark.parametrize("path", AREA, ids=lambda p: str(p.relative_to(SRC)))
def test_no_backend_name_literals(path: Path) -> None:
    found = [(line, s) for line, s in _string_literals(path) if s.lower() in NAMES]
    assert not found, f"{path.relative_to(SRC)} names backends: {found} (use the registry)"


def test_an_interrupted_run_shows_no_throughput(tmp_path: Path) -> None:
    from edgequant.report.tables import build_rows

    base = dict(
        model="m", backend="rt", scenario="Offline", dataset="synthetic", threads=1, batch_size=1
    )
    recs = [
        ("a", ResultRecord(scheme="fp32", throughput_ips=100.0, **base)),  # type: ignore[arg-type]
        (
            "b",
            ResultRecord(
                scheme="w8a8",
                status="interrupted",
                reason="interrupted",
                throughput_ips=274572.0,  # from a partial LoadGen log
                latency_ms={"p50": 0.01},
                **base,  # type: ignore[arg-type]
            ),
        ),
    ]
    rows = {r.scheme: r for r in build_rows(recs)}
    assert rows["w8a8"].throughput_ips is None and rows["w8a8"].latency_ms == {}
    assert rows["w8a8"].speedup is None and rows["fp32"].throughput_ips == 100.0
