"""``edgequant sweep`` on the command line: errors as one line with the line number, --dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgequant.cli import main


def test_typo_in_experiment_is_one_line_with_key_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("models: [digits_cnn]\nbackends: [onnxruntime]\nschemes: [fp32]\nduraton_s: 1\n")
    rc = main(["sweep", str(exp), "-o", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [
        f"edgequant: error: {exp} line 4: unknown key 'duraton_s' (did you mean 'duration_s'?); "
        "known keys: accuracy, backends, build_jobs, calib, cell_timeout_s, data, description, "
        "devices, duration_s, "
        "groups, isolation, models, name, rounds, scenarios, schemes, threads"
    ]
    assert not (tmp_path / "runs").exists()


def test_bad_scheme_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("models: [digits_cnn]\nschemes:\n  - fp32\n  - int8\n")
    assert main(["sweep", str(exp), "-o", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "line 4: unknown scheme 'int8'" in err and "Traceback" not in err


def test_dry_run_json_lists_cells_and_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "models: [digits_cnn]\nbackends: [onnxruntime]\nschemes: [fp32, w4a8]\n"
        "scenarios: [SingleStream, Offline]\ndata: digits\nduration_s: 1\n"
    )
    runs = tmp_path / "runs"
    assert main(["sweep", str(exp), "-o", str(runs), "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    cells = {c["cell"]: c for c in doc["cells"]}
    assert len(cells) == 4 and doc["dry_run"] is True
    cmd = cells["digits_cnn__onnxruntime__fp32__Offline"]["command"]
    assert cmd[2:4] == ["edgequant", "bench"] and "--json" in cmd
    assert cmd[cmd.index("--duration") + 1] == "1" and cmd[cmd.index("-o") + 1] == str(
        runs / "digits_cnn__onnxruntime__fp32__Offline"
    )
    assert cells["digits_cnn__onnxruntime__w4a8__Offline"]["status"] == "na"  # known before running
    assert not runs.exists()


def test_help_documents_the_experiment_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = capsys.readouterr().out
    for key in (
        "models:",
        "backends:",
        "schemes:",
        "scenarios:",
        "accuracy:",
        "duration_s:",
        "--force",
        "--dry-run",
        "rounds:",
        "--rounds",
    ):
        assert key in out


def test_dry_run_refuses_unknown_models_and_missing_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "models: [resnet5]\nschemes: [fp32]\nscenarios: [Offline]\n"
        f"data: imagenet:{tmp_path / 'no-such-dir'}\n"
    )
    rc = main(["sweep", str(exp), "-o", str(tmp_path / "runs"), "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "unknown model 'resnet5'" in err[0] and "resnet50" in err[0]
    assert "no-such-dir" in err[0] and "does not exist" in err[0]


def test_exit_status_is_not_zero_when_every_cell_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("models: [no_such_model]\nschemes: [fp32]\nscenarios: [Offline]\n")
    rc = main(["sweep", str(exp), "-o", str(tmp_path / "runs")])
    captured = capsys.readouterr()
    assert rc == 1, captured.err
    assert "1 failed" in captured.out and "every cell failed" in captured.err


@pytest.mark.parametrize("bad", [b"{}", b"[]", b"\xff\xfe\x00garbage", b'{"model": 3}'])
def test_a_corrupt_result_file_is_run_again_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: bytes
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("models: [digits_cnn]\nschemes: [fp32]\nscenarios: [Offline]\n")
    runs = tmp_path / "runs"
    cell = runs / "digits_cnn__onnxruntime__fp32__Offline"
    cell.mkdir(parents=True)
    (cell / "result.json").write_bytes(bad)
    assert main(["sweep", str(exp), "-o", str(runs), "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(c["status"], c["skipped"]) for c in doc["cells"]] == [("planned", False)]


def test_rounds_flag_is_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("models: [digits_cnn]\nschemes: [fp32, w8a8]\nscenarios: [Offline]\n")
    rc = main(["sweep", str(exp), "-o", str(tmp_path / "runs"), "--rounds", "5:2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "min (5) <= max (2)" in err[0], err
    exp.write_text(exp.read_text() + "rounds: {min: 3, maks: 4}\n")
    rc = main(["sweep", str(exp), "-o", str(tmp_path / "runs"), "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "unknown key(s) ['maks']" in err[0], err
    assert not (tmp_path / "runs").exists()
