"""AdaRound's disk cache: one learnt rounding reused for the same weights, grid, data and
settings; a different grid or a broken entry learns again."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgequant.quant import adaround_cache
from edgequant.quant.adaround import AdaRoundConfig, WeightGrid
from edgequant.quant.scheme import get_scheme
from edgequant.quant.transforms import apply_techniques
from tests.helpers import make_tiny_model, tiny_inputs

CFG = AdaRoundConfig(iterations=20, max_images=8)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGEQUANT_CACHE", str(tmp_path))
    return tmp_path / "adaround"


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def test_second_run_reuses_the_entry_bit_for_bit(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = make_tiny_model()
    scheme = get_scheme("w8a8-ada")
    calib = tiny_inputs(m, 8, seed=1)
    first = apply_techniques(m, scheme, calib, adaround_config=CFG)
    assert first.info["adaround_reused"] is False
    assert len(list(cache.glob("*.pt"))) == 1
    # the minutes of learning are announced (stderr), once
    assert "adaround: learning the weights' rounding on 8" in capsys.readouterr().err
    again = apply_techniques(m, scheme, calib, adaround_config=CFG)
    assert again.info["adaround_reused"] is True
    assert "learning" not in capsys.readouterr().err
    assert again.weights_hash == first.weights_hash
    for a, b in zip(_weights(first.module), _weights(again.module), strict=True):
        assert torch.equal(a, b)
    assert again.info["adaround_layers"] == first.info["adaround_layers"] > 0


def test_other_grid_data_or_settings_learn_again(cache: Path) -> None:
    m = make_tiny_model()
    scheme = get_scheme("w8a8-ada")
    calib = tiny_inputs(m, 8, seed=1)
    base = apply_techniques(m, scheme, calib, adaround_config=CFG)
    seven = apply_techniques(
        m, scheme, calib, adaround_config=CFG, adaround_grid=WeightGrid(bits=7)
    )
    other_data = apply_techniques(m, scheme, tiny_inputs(m, 8, seed=2), adaround_config=CFG)
    other_cfg = apply_techniques(
        m, scheme, calib, adaround_config=AdaRoundConfig(iterations=21, max_images=8)
    )
    # the inputs AdaRound learns from come from the scheme's simulator: other activations too
    other_acts = apply_techniques(
        m, scheme.with_(activations=get_scheme("w8a8-sym").activations), calib, adaround_config=CFG
    )
    fresh = (seven, other_data, other_cfg, other_acts)
    assert [x.info["adaround_reused"] for x in fresh] == [False] * 4
    assert len({base.weights_hash, seven.weights_hash, other_data.weights_hash}) == 3
    assert len(list(cache.glob("*.pt"))) == 5


def test_per_layer_grids_are_part_of_the_key(cache: Path) -> None:
    m = make_tiny_model()
    scheme = get_scheme("w8a8-ada")
    calib = tiny_inputs(m, 8, seed=1)
    names = [n for n, x in m.module.named_modules() if isinstance(x, torch.nn.Conv2d)]

    def seven_on(target: str):  # type: ignore[no-untyped-def]
        def grid(name: str, layer: torch.nn.Module) -> WeightGrid:
            return WeightGrid(bits=7 if name == target else 8)

        return grid

    a = apply_techniques(m, scheme, calib, adaround_config=CFG, adaround_grid=seven_on(names[0]))
    b = apply_techniques(m, scheme, calib, adaround_config=CFG, adaround_grid=seven_on(names[1]))
    # same function name, other layers remedied: another rounding, another model hash
    assert b.info["adaround_reused"] is False
    assert a.weights_hash != b.weights_hash


def test_a_broken_entry_is_rebuilt(cache: Path) -> None:
    m = make_tiny_model()
    scheme = get_scheme("w8a8-ada")
    calib = tiny_inputs(m, 8, seed=1)
    good = apply_techniques(m, scheme, calib, adaround_config=CFG)
    (entry,) = cache.glob("*.pt")
    entry.write_bytes(b"not a torch file")
    again = apply_techniques(m, scheme, calib, adaround_config=CFG)
    assert again.info["adaround_reused"] is False
    for a, b in zip(_weights(good.module), _weights(again.module), strict=True):
        assert torch.equal(a, b)
    assert adaround_cache.load(entry.stem, again.module) is not None  # rewritten, readable


def test_grid_description_names_every_layer() -> None:
    m = make_tiny_model()
    text = adaround_cache.grid_description(
        m.module, get_scheme("w8a8"), lambda n, layer: WeightGrid(bits=7)
    )
    n_convs = sum(isinstance(x, torch.nn.Conv2d | torch.nn.Linear) for x in m.module.modules())
    assert text.count("[7,") == n_convs > 0


def test_changed_library_defaults_learn_again(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config that leaves the pool to the library (None) is keyed with the library's defaults:
    a release that changes them must not reuse a rounding learnt with the old ones."""
    from edgequant.quant import adaround

    m = make_tiny_model()
    scheme = get_scheme("w8a8-ada")
    calib = tiny_inputs(m, 8, seed=1)
    assert CFG.pool_rows is None
    first = apply_techniques(m, scheme, calib, adaround_config=CFG)
    monkeypatch.setattr(adaround, "POOL_ADAROUND", (2048, 24_000_000, 0))
    again = apply_techniques(m, scheme, calib, adaround_config=CFG)
    assert (first.info["adaround_reused"], again.info["adaround_reused"]) == (False, False)
    assert first.weights_hash != again.weights_hash  # artifacts built on it are rebuilt too
    assert len(list(cache.glob("*.pt"))) == 2
