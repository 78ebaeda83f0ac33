"""`edgequant eval` / `edgequant train` and the one-line errors users see."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgequant.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_eval_digits_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "eval", "--model", "digits_cnn", "--data", "digits", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["samples"] == 450 and doc["dataset"] == "digits:test"
    assert doc["top1_pct"] >= 97.0  # the shipped weights
    assert doc["top5_pct"] >= doc["top1_pct"]
    lo, hi = doc["top1_ci95_pct"]  # 446 of 450: Wilson's interval
    assert lo < doc["top1_pct"] < hi <= 100.0 and 1.0 < hi - lo < 3.0


def test_eval_limit_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "eval", "--model", "digits_cnn", "--data", "digits", "--limit", "40")
    assert rc == 0
    assert "top1_%" in out and " 40 " in out


def test_train_one_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "w.pt"
    rc, out, _ = _run(
        capsys,
        "train",
        "--model",
        "digits_cnn",
        "--data",
        "digits",
        "--epochs",
        "1",
        "-o",
        str(out_file),
        "--json",
    )
    assert rc == 0
    doc = json.loads(out)
    assert out_file.is_file() and doc["weights"] == str(out_file)
    assert doc["train_samples"] == 1347 and 10.0 < doc["test_top1_pct"] <= 100.0
    # the saved weights load back into the architecture and evaluate
    rc, out, _ = _run(
        capsys,
        "eval",
        "--model",
        "digits_cnn",
        "--weights",
        str(out_file),
        "--data",
        "digits",
        "--limit",
        "20",
        "--json",
    )
    assert rc == 0 and json.loads(out)["samples"] == 20


@pytest.mark.parametrize(
    ("argv", "match", "code"),
    [
        (["eval", "--model", "resnet5", "--data", "digits"], "did you mean resnet50", 5),
        (["eval", "--model", "digits_cnn", "--data", "imagenet:/no/such/dir"], "does not exist", 6),
        (["eval", "--model", "digits_cnn", "--data", "synthetic"], "has no labels", 2),
        (["eval", "--model", "digits_cnn", "--data", "digit"], "did you mean digits", 2),
        (["train", "--model", "digits_cnn", "--data", "synthetic"], "train/test splits", 2),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], match: str, code: int
) -> None:
    rc, _out, err = _run(capsys, *argv)
    assert rc == code
    lines = [ln for ln in err.splitlines() if ln.startswith("edgequant: error:")]
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("bad", [-1, 10, 5000])
def test_eval_refuses_labels_outside_the_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: int
) -> None:
    import numpy as np

    x = np.zeros((4, 1, 32, 32), np.float32)
    y = np.array([0, 1, bad, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    rc, _out, err = _run(
        capsys, "eval", "--model", "digits_cnn", "--data", f"npy:{tmp_path / 'd.npz'}"
    )
    lines = [ln for ln in err.splitlines() if ln.startswith("edgequant: error:")]
    assert rc == 6 and len(lines) == 1 and f"y[2]: label {bad} is " in lines[0], err


def test_eval_json_names_a_registered_backend(capsys: pytest.CaptureFixture[str]) -> None:
    from edgequant.backends import backend_names, get_backend

    rc, out, _ = _run(
        capsys, "eval", "--model", "digits_cnn", "--data", "digits", "--limit", "8", "--json"
    )
    backend = get_backend(json.loads(out)["backend"])
    assert rc == 0 and backend.name in backend_names() and not backend.simulated


def test_corrupt_weights_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgequant",
            "eval",
            "--model",
            "digits_cnn",
            "--weights",
            str(bad),
            "--data",
            "digits",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("edgequant: error:") and "bad.pth" in proc.stderr
