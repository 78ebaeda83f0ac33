"""Experiment files: parsing, validation errors with the line, expansion to cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgequant.errors import ValidationError
from edgequant.sweep.experiment import load_experiment, parse_experiment

GOOD = """\
models: [digits_cnn]
backends: [onnxruntime, ov]
schemes:
  - fp32
  - {base: w8a8, name: w8a8-mse, calibration: {method: mse, samples: 16}}
scenarios: [SingleStream, offline]
data: digits
calib: digits
accuracy: true
threads: 1
duration_s: 0.5
"""


def test_good_file_expands_to_cells() -> None:
    exp = parse_experiment(GOOD)
    cells = exp.cells()
    # 1 model x 2 backends x 2 schemes x 2 scenarios; accuracy rides on the Offline cell
    assert len(cells) == 8
    assert {c.backend for c in cells} == {"onnxruntime", "openvino"}  # alias resolved
    assert {c.scenario for c in cells} == {"SingleStream", "Offline"}  # case fixed to MLPerf's
    assert {c.mode for c in cells if c.scenario == "Offline"} == {"accuracy"}
    assert {c.mode for c in cells if c.scenario == "SingleStream"} == {"performance"}
    custom = next(c for c in cells if c.scheme.name == "w8a8-mse").scheme
    assert custom.scheme.calibration.method == "mse" and custom.scheme.calibration.samples == 16
    assert not custom.builtin
    assert cells[0].cell_id == "digits_cnn__onnxruntime__fp32__SingleStream"
    assert len({c.cell_id for c in cells}) == 8


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "models: [m]\nbackend: [onnxruntime]\n",
            2,
            ["unknown key 'backend'", "did you mean 'backends'"],
        ),
        ("models: [m]\nschemes: [fp32]\nsceanrios: [Offline]\n", 3, ["'sceanrios'", "'scenarios'"]),
        ("models: [m]\nschemes:\n  - fp32\n  - w8a9\n", 4, ["unknown scheme 'w8a9'", "w8a8"]),
        ("models: [m]\nscenarios: [Online]\n", 2, ["unknown scenario 'Online'", "Offline"]),
        ("models: [m]\nbackends: [onnxruntim]\n", 2, ["unknown backend", "onnxruntime"]),
        ("models: [m]\ndata: imagenett:/x\n", 2, ["unknown dataset kind"]),
        ("models: [m]\nthreads: 0\n", 2, ["'threads' must be an integer >= 1"]),
        ("models: [m]\naccuracy: true\n", 2, ["labelled data"]),
        ("backends: [onnxruntime]\n", 1, ["'models' is missing"]),
        ("models: [m]\nisolation: process\n", 2, ["'isolation' must be cell or backend"]),
        ("models: [m]\nbuild_jobs: 0\n", 2, ["'build_jobs' must be an integer >= 1"]),
        (
            "models: [m]\ngroups:\n  - models: [n]\n    build_jobs: 2\n",
            4,
            ["'build_jobs' applies to the whole experiment"],
        ),
        (
            "models: [m]\ngroups:\n  - models: [n]\n    shemes: [fp32]\n",
            4,
            ["unknown key 'shemes'"],
        ),
        (
            "models: [m]\nschemes:\n  - {base: w8a8, wieghts: {bits: 4}}\n",
            3,
            ["unknown scheme key"],
        ),
    ],
)
def test_errors_name_the_key_and_line(text: str, line: int, words: list[str]) -> None:
    with pytest.raises(ValidationError) as err:
        parse_experiment(text, source="exp.yaml")
    msg = str(err.value)
    assert msg.startswith(f"exp.yaml line {line}:"), msg
    for w in words:
        assert w in msg, msg


def test_bad_yaml_gives_the_line() -> None:
    with pytest.raises(ValidationError, match=r"line 2: not valid YAML"):
        parse_experiment("models: [m]\nbackends: onnxruntime: x\n", source="exp.yaml")


def test_groups_inherit_and_override() -> None:
    exp = parse_experiment(
        "threads: 1\nduration_s: 2\ndata: digits\nmodels: [a]\ngroups:\n"
        "  - models: [digits_cnn]\n    schemes: [fp32, w8a8]\n    scenarios: [Offline]\n"
        "  - models: [resnet50]\n    schemes: [fp32]\n    scenarios: [SingleStream]\n    data: synthetic\n"
    )
    cells = exp.cells()
    assert [c.cell_id for c in cells] == [
        "digits_cnn__onnxruntime__fp32__Offline",
        "digits_cnn__onnxruntime__w8a8__Offline",
        "resnet50__onnxruntime__fp32__SingleStream",
    ]
    assert cells[0].data == "digits" and cells[2].data == "synthetic"
    assert all(c.threads == 1 and c.duration_s == 2 for c in cells)


def test_accuracy_only_group_gets_one_offline_cell() -> None:
    exp = parse_experiment(
        "models: [digits_cnn]\nschemes: [fp32]\nscenarios: []\ndata: digits\naccuracy: true\n"
    )
    assert [(c.scenario, c.mode) for c in exp.cells()] == [("Offline", "accuracy")]


def test_relative_model_files_resolve_against_the_experiment(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.onnx").write_bytes(b"not really onnx")
    f = tmp_path / "exp.yaml"
    f.write_text(
        "models: [models/net.onnx, {name: models/net.onnx, arch: resnet18}]\nschemes: [fp32]\n"
    )
    exp = load_experiment(f)
    models = exp.groups[0].models
    assert models[0].name == str((tmp_path / "models" / "net.onnx").resolve())
    assert models[0].label == "net" and models[0].is_onnx_file
    assert models[1].arch == "resnet18"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        load_experiment(tmp_path / "nope.yaml")


def test_shipped_examples_parse() -> None:
    from edgequant.sweep.demo import demo_experiment

    full = demo_experiment()
    assert {c.model.name for c in full.cells()} == {
        "digits_cnn",
        "efficientnet_lite0",
        "mobilenet_v2",
        "resnet50",
    }
    with_data = demo_experiment(data="imagenet:/data/val")
    big = [c for c in with_data.cells() if c.model.name == "resnet50"]
    assert all(c.data == "imagenet:/data/val" for c in big)
    assert any(c.mode == "accuracy" for c in big)
    assert len(demo_experiment(quick=True).cells()) == 4


def test_isolation_groups_cells_by_model_and_backend() -> None:
    exp = parse_experiment(
        "models: [digits_cnn]\nbackends: [onnxruntime, openvino]\nschemes: [fp32, w8a8]\n"
        "scenarios: [Offline]\ngroups:\n  - isolation: backend\n  - models: [mobilenet_v2]\n"
    )
    cells = exp.cells()
    grouped = [c for c in cells if c.model.name == "digits_cnn"]
    assert {c.isolation for c in grouped} == {"backend"}
    assert {c.process_key for c in grouped} == {
        "digits_cnn__onnxruntime",
        "digits_cnn__openvino",
    }
    # the default stays one process per cell
    solo = [c for c in cells if c.model.name == "mobilenet_v2"]
    assert {c.isolation for c in solo} == {"cell"}
    assert len({c.process_key for c in solo}) == len(solo) == 4
    # the shipped demo runs one process per model/backend pair
    from edgequant.sweep.demo import demo_experiment

    demo = demo_experiment().cells()
    assert {c.isolation for c in demo} == {"backend"}
    assert len({c.process_key for c in demo}) == 16
    assert {c.scenario for c in demo if c.model.name == "mobilenet_v2"} == {
        "SingleStream",
        "Offline",
    }


def test_npy_data_is_accepted_like_bench(tmp_path: Path) -> None:
    # bench takes data: npy:FILE; the experiment file refused it ("unknown dataset kind 'npy'")
    (tmp_path / "x.npy").write_bytes(b"")
    f = tmp_path / "exp.yaml"
    f.write_text("models: [digits_cnn]\ndata: npy:x.npy\ncalib: npy:x.npy\nschemes: [w8a8]\n")
    cell = load_experiment(f).cells()[0]
    # a relative file resolves against the experiment's folder, like imagenet:DIR
    assert cell.data == f"npy:{(tmp_path / 'x.npy').resolve()}"
    assert cell.calib == cell.data
    with pytest.raises(ValidationError, match="npy:FILE"):
        parse_experiment("models: [m]\ndata: 'npy:'\n", source="exp.yaml")


def test_alias_bomb_is_refused_quickly() -> None:
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    bomb = "models: [digits_cnn]\ndescription:\n" + "\n".join("  " + ln for ln in lines) + "\n"
    t0 = time.perf_counter()
    with pytest.raises(ValidationError, match=r"exp\.yaml: .*too large") as err:
        parse_experiment(bomb, source="exp.yaml")
    assert time.perf_counter() - t0 < 5, "the bomb was expanded"
    assert len(str(err.value).splitlines()) == 1


def test_deeply_nested_yaml_is_a_clear_error() -> None:
    deep = "models: [digits_cnn]\ndescription: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(ValidationError, match=r"exp\.yaml: .*nested too deeply"):
        parse_experiment(deep, source="exp.yaml")


def test_non_utf8_experiment_file_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "exp.yaml"
    f.write_bytes(b"models: [digits_cnn]\ndescription: caf\xe9\n")
    with pytest.raises(ValidationError, match=f"{f}.*UTF-8"):
        load_experiment(f)


def test_a_folder_given_as_the_experiment_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        load_experiment(tmp_path)
    assert "is a folder" in str(err.value) and "does not exist" not in str(err.value)


def test_the_file_text_is_kept_for_the_runs_folder(tmp_path: Path) -> None:
    f = tmp_path / "exp.yaml"
    f.write_text("# my comment\nmodels: [digits_cnn]\n")
    assert load_experiment(f).text == "# my comment\nmodels: [digits_cnn]\n"


# --- devices: an axis like models and backends ---------------------------------------------------
DEVICES = "models: [digits_cnn]\nschemes: [fp32]\nscenarios: [Offline]\n"


def test_devices_default_to_local_and_keep_the_old_cell_ids() -> None:
    cells = parse_experiment(DEVICES).cells()
    assert [c.device for c in cells] == ["local"]
    assert cells[0].cell_id == f"digits_cnn__{cells[0].backend}__fp32__Offline"
    assert cells[0].is_local


def test_devices_are_an_axis_and_other_devices_get_their_own_ids() -> None:
    exp = parse_experiment(DEVICES + "devices: [local, rpi5, jetson-orin]\n")
    cells = exp.cells()
    assert [c.device for c in cells] == ["local", "rpi5", "jetson-orin"]
    ids = [c.cell_id for c in cells]
    assert ids[1] == ids[0] + "__rpi5" and ids[2] == ids[0] + "__jetson-orin"
    assert len({c.pair_key for c in cells}) == 3  # a device's builds are its own


def test_a_group_may_override_the_devices() -> None:
    text = DEVICES + "devices: [rpi5]\ngroups:\n  - {}\n  - {devices: [local]}\n"
    assert sorted(c.device for c in parse_experiment(text).cells()) == ["local", "rpi5"]


@pytest.mark.parametrize("bad", ["[]", "[rpi 5]", "[-x]", "[{name: x}]"])
def test_a_bad_device_is_refused_with_its_line(bad: str) -> None:
    with pytest.raises(ValidationError, match="line 4"):
        parse_experiment(DEVICES + f"devices: {bad}\n")


def test_devices_from_the_command_line_replace_the_file_s() -> None:
    from edgequant.sweep.experiment import with_devices

    exp = parse_experiment(DEVICES + "devices: [rpi5]\n")
    assert [c.device for c in with_devices(exp, ["local", "pi4", "pi4"]).cells()] == [
        "local",
        "pi4",
    ]
    with pytest.raises(ValidationError, match="not valid"):
        with_devices(exp, ["a/b"])
