"""`edgequant bench`: one-line errors, --json prints the record alone, a real quick run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgequant.cli import main


def test_mistyped_scenario_suggests_valid_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "bench",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scenario",
            "SingelStream",
            "-o",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert err.count("\n") == 0 and err.startswith("edgequant: error:")
    assert "did you mean SingleStream" in err


def test_missing_artifact_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "bench",
            "--artifact",
            str(tmp_path / "nope"),
            "--scenario",
            "Offline",
            "-o",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.count("\n") == 0
    assert "does not exist" in err and "edgequant quantize" in err


def test_corrupt_artifact_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art = tmp_path / "art"
    art.mkdir()
    (art / "artifact.json").write_text("{not json")
    rc = main(["bench", "--artifact", str(art), "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.count("\n") == 0 and "corrupt" in err


def test_json_run_prints_only_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mlperf_loadgen")
    pytest.importorskip("onnxruntime")
    out_dir = tmp_path / "run"
    rc = main(
        [
            "bench",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scheme",
            "fp32",
            "--scenario",
            "MultiStream",
            "--data",
            "digits",
            "--count",
            "32",
            "--duration",
            "0.5",
            "-o",
            str(out_dir),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    rec = json.loads(captured.out)  # exactly one JSON document on stdout
    assert rc == 0, captured.err
    assert rec["scenario"] == "MultiStream" and rec["batch_size"] == 8
    assert rec["loadgen"]["valid"] is True and rec["status"] == "ok"
    assert rec["latency_ms"]["p90"] > 0 and rec["throughput_ips"] > 0
    assert (
        json.loads((out_dir / "result.json").read_text())["throughput_ips"] == rec["throughput_ips"]
    )
    assert (out_dir / "loadgen" / "mlperf_log_summary.txt").is_file()


def test_summary_is_printed_without_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    rc = main(
        [
            "bench",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scheme",
            "bf16",
            "--scenario",
            "Offline",
            "-o",
            str(tmp_path),
        ]
    )
    captured = capsys.readouterr()
    assert rc != 0
    assert "status: NA" in captured.out
    assert (
        captured.err.strip()
        .splitlines()[-1]
        .startswith("edgequant: error: onnxruntime cannot run bf16")
    )


def _bench(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    return [
        "bench",
        "--model",
        "digits_cnn",
        "--backend",
        "onnxruntime",
        "--scenario",
        "Offline",
        "--duration",
        "0.5",
        "--count",
        "16",
        "-o",
        str(out),
        *extra,
    ]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("edgequant: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("under", [False, True])
def test_output_that_is_a_file_is_refused_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], under: bool
) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    out = taken / "run" if under else taken
    rc = main(_bench(tmp_path, out))
    line = _one_error_line(capsys)
    assert rc == 2 and "is a file, not a folder" in line and str(taken) in line
    assert taken.read_text() == "keep me"
    # refused before anything ran: no LoadGen log was written anywhere
    assert not list(tmp_path.rglob("mlperf_log_summary.txt"))


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_duration_must_be_finite_and_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    argv = _bench(tmp_path, tmp_path / "r")
    argv[argv.index("--duration") + 1] = value
    rc = main(argv)
    line = _one_error_line(capsys)
    assert rc == 2 and "--duration must be a positive finite number" in line
    assert not (tmp_path / "r" / "result.json").exists()


def test_batch_that_cannot_fit_in_memory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10^8 digits images of 1x32x32 float32 are 410 GB a copy: no machine here holds that
    rc = main(_bench(tmp_path, tmp_path / "r", "--batch-size", str(10**8)))
    line = _one_error_line(capsys)
    assert rc == 2 and "--batch-size 100000000 needs at least" in line and "GB" in line
    assert "use --batch-size" in line
    assert not (tmp_path / "r" / "result.json").exists()


def test_threads_far_beyond_the_cores_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cores = len(os.sched_getaffinity(0))
    too_many = str(1000 * cores)
    # bf16 cannot run on this backend: without the check the run would end quickly as n/a
    rc = main(_bench(tmp_path, tmp_path / "r", "--threads", too_many, "--scheme", "bf16"))
    line = _one_error_line(capsys)
    assert rc == 2 and f"oversubscribes the {cores} cores" in line
    assert not (tmp_path / "r" / "result.json").exists()


def test_threads_beyond_the_cores_are_noted_in_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cores = len(os.sched_getaffinity(0))
    rc = main(
        _bench(tmp_path, tmp_path / "r", "--threads", str(cores + 1), "--scheme", "bf16", "--json")
    )
    rec = json.loads(capsys.readouterr().out)
    assert rc != 0 and rec["status"] == "na"
    assert any(f"on the {cores} cores" in w for w in rec["extra"]["warnings"])


def test_cli_command_modules_do_not_import_each_other() -> None:
    import ast

    import edgequant.cli as cli

    folder = Path(cli.__file__).parent
    for name in ("quantize_cmd", "bench_cmd", "inspect_cmd", "eval_cmd"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        # the shared argument helpers (cli/args.py) are no command module
        others = [
            m for m in imported if m.startswith("edgequant.cli") and m != "edgequant.cli.args"
        ]
        assert not others, (name, imported)


@pytest.mark.parametrize("bad", [-1, 5000])
def test_accuracy_run_refuses_impossible_labels_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: int
) -> None:
    import numpy as np

    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 32, 32), np.float32), y=np.array([0, bad, 1, 2]))
    argv = _bench(tmp_path, tmp_path / "r", "--accuracy", "--data", f"npy:{tmp_path / 'd.npz'}")
    argv[argv.index("--count") + 1] = "4"
    rc = main(argv)
    line = _one_error_line(capsys)
    assert rc == 6 and f"label {bad} is " in line and "out of range" in line
    assert not (tmp_path / "r" / "result.json").exists()


@pytest.mark.slow
def test_compliance_verdict_is_printed_and_sets_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mlperf_loadgen")
    pytest.importorskip("onnxruntime")
    out_dir = tmp_path / "run"
    rc = main(
        [
            "bench",
            "--model",
            "digits_cnn",
            "--backend",
            "onnxruntime",
            "--scheme",
            "w8a8",
            "--scenario",
            "SingleStream",
            "--data",
            "digits",
            "--count",
            "32",
            "--duration",
            "0.5",
            "--compliance",
            "test04",
            "--no-roofline",
            "-o",
            str(out_dir),
        ]
    )
    captured = capsys.readouterr()
    rec = json.loads((out_dir / "result.json").read_text())
    verdict = rec["compliance"]
    assert verdict["test"] == "TEST04" and rec["roofline"] is None
    assert f"compliance: {verdict['summary']}" in captured.out
    assert (out_dir / "compliance" / "TEST04" / "audit.config").is_file()
    if verdict["passed"]:
        assert rc == 0
    else:  # a failed verdict is an error exit with its one line on stderr
        assert rc == 4 and verdict["summary"] in captured.err


def test_unknown_compliance_test_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--model", "m", "--backend", "b", "--compliance", "TEST05", "-o", "x"])
    assert exc.value.code == 2 and "TEST01" in capsys.readouterr().err


def test_an_output_path_that_is_not_utf8_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    bad = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/runs-\xff"))
    rc = main(_bench(tmp_path, bad))
    line = _one_error_line(capsys)
    assert rc == 2 and line.startswith("edgequant: error: -o ") and "not UTF-8" in line
    assert not os.path.exists(os.fsencode(str(bad)))


@pytest.mark.slow
def test_sigterm_while_measuring_is_a_clean_interrupt(tmp_path: Path) -> None:
    # SIGTERM (a sweep's kill, `timeout`, a closed terminal's SIGHUP) must stop bench the way
    # Ctrl-C does: one line, the interrupted record saved, no traceback; by default it dies on
    # the spot, leaving its children (compile workers) and no record
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("mlperf_loadgen")
    pytest.importorskip("onnxruntime")
    run_dir, err_path = tmp_path / "run", tmp_path / "stderr.txt"
    argv = [sys.executable, "-m", "edgequant", "bench", "--model", "digits_cnn"]
    argv += ["--backend", "onnxruntime", "--scenario", "SingleStream", "--duration", "600"]
    env = dict(os.environ, EDGEQUANT_CACHE=str(tmp_path / "cache"))
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [*argv, "--no-roofline", "-o", str(run_dir)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    try:
        deadline = time.monotonic() + 180
        while "performance run" not in err_path.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # LoadGen is issuing queries now
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    err_text = err_path.read_text()
    assert rc in (130, 143), (rc, err_text)
    assert "Traceback" not in err_text
    assert [line for line in err_text.splitlines() if "interrupted" in line] == [
        "edgequant: interrupted (LoadGen logs are partial)"
    ]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "interrupted"
