"""Built-in schemes: what a scheme promises reaches every runtime's quantizer."""

from __future__ import annotations

from dataclasses import replace

from edgequant.quant.scheme import get_scheme

#: w8a8 with calibration ``default``: each runtime's own kind of activation range
DEFAULT_RANGES = get_scheme({"base": "w8a8", "name": "w8a8-default", "calibration": {}})


def test_w8a8_ada_ranges_are_min_max_in_every_quantizer() -> None:
    """w8a8-ada's rounding is learnt against min/max activation ranges (the simulator's, on the
    scheme's calibration method), so every runtime must calibrate min/max too, PyTorch included
    (whose X86 default is a histogram) — else the rounding compensates an error the runtime does
    not make."""
    from edgequant.backends.onnxruntime.quantize import _calibration_options
    from edgequant.backends.openvino.quantize import _range_estimator
    from edgequant.backends.pytorch.quantize import quantizer_for
    from edgequant.quant.observers import make_observer, resolve_method

    ada = get_scheme("w8a8-ada")
    assert resolve_method(ada.calibration.method) == "minmax"
    assert make_observer(resolve_method(ada.calibration.method)).method == "minmax"
    assert _calibration_options(ada)[0] == "MinMax"
    assert _range_estimator(ada.calibration.method)[1].startswith("MINMAX")
    assert quantizer_for(ada)[1]["activation_observer"] == "MinMaxObserver"
    # so is w8a8's (its GPTQ rounding); a scheme with calibration default keeps each one's own
    assert quantizer_for(get_scheme("w8a8"))[1]["activation_observer"] == "MinMaxObserver"
    assert resolve_method(get_scheme("w8a8").calibration.method) == "minmax"
    assert quantizer_for(DEFAULT_RANGES)[1]["activation_observer"] == "HistogramObserver"
    assert resolve_method(DEFAULT_RANGES.calibration.method) == "mse"


def test_default_ranges_name_what_each_quantizer_computes() -> None:
    """``runtime_scheme`` tells the rounding techniques (and a sim targeting the runtime) which
    activation ranges the runtime computes for calibration ``default``: that must be what its
    quantizer really does with ``default`` — the same as with the method it names."""
    from edgequant.backends import get_backend
    from edgequant.backends.onnxruntime.quantize import _calibration_options
    from edgequant.backends.openvino.quantize import _range_estimator
    from edgequant.backends.pytorch.quantize import quantizer_for
    from edgequant.quant.observers import resolve_method

    w8a8 = DEFAULT_RANGES
    named = {
        n: get_backend(n).runtime_scheme(w8a8).calibration.method
        for n in ("onnxruntime", "openvino", "litert", "pytorch", "sim")
    }
    assert named == {
        "onnxruntime": "minmax",
        "openvino": "minmax",
        "litert": "minmax",
        "pytorch": "default",
        "sim": "default",
    }
    ort = get_backend("onnxruntime").runtime_scheme(w8a8)
    assert _calibration_options(w8a8)[0] == _calibration_options(ort)[0] == "MinMax"
    assert _range_estimator("default")[0] is _range_estimator("minmax")[0]
    # PyTorch's default is PT2E's L2-optimal HistogramObserver: the simulator's default (mse)
    assert quantizer_for(w8a8)[1]["activation_observer"] == "HistogramObserver"
    assert resolve_method("default") == "mse"
    # an explicit method, a float or a dynamic scheme is left as written
    for scheme in (get_scheme("w8a8-ada"), get_scheme("fp16"), get_scheme("w8-dyn")):
        assert get_backend("onnxruntime").runtime_scheme(scheme) == scheme


def test_rounding_learns_on_the_runtime_s_own_ranges(
    tiny_model, tiny_calibration, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A user's w8a8 + GPTQ with calibration ``default``: ONNX Runtime calibrates min/max, so the
    rounding handed to it is learnt on min/max inputs — the rounding an explicit ``minmax``
    scheme gets — not on the simulator's MSE ranges (what the sim's own build learns on)."""
    import torch

    from edgequant.backends import get_backend

    monkeypatch.setenv("EDGEQUANT_CACHE", str(tmp_path))
    user = get_scheme(
        {"base": "w8a8", "name": "w8a8-gptq", "techniques": ["gptq"], "calibration": {}}
    )
    assert user.calibration.method == "default"
    minmax = user.with_(calibration=replace(user.calibration, method="minmax"))
    calib = tiny_calibration[:16]

    def weights(backend: str, scheme):  # type: ignore[no-untyped-def]
        model = get_backend(backend)._techniques(tiny_model, scheme, calib, None)
        return torch.cat([p.detach().flatten() for p in model.module.parameters()])

    learnt = weights("onnxruntime", user)
    assert torch.equal(learnt, weights("onnxruntime", minmax))
    assert torch.equal(learnt, weights("sim", minmax))
    assert not torch.equal(learnt, weights("sim", user))


def test_w8a8_techniques_are_optional_until_a_scheme_lists_its_own() -> None:
    w8a8 = get_scheme("w8a8")
    assert w8a8.techniques == ("gptq", "bias_correction") and w8a8.optional_techniques
    assert type(w8a8).from_dict(w8a8.to_dict()) == w8a8
    # a derived scheme keeps them optional; one that lists techniques asks for them
    assert get_scheme({"base": "w8a8", "calibration": {"method": "mse"}}).optional_techniques
    listed = get_scheme({"base": "w8a8", "techniques": ["cle"]})
    assert listed.techniques == ("cle",) and not listed.optional_techniques
    assert not w8a8.with_(techniques=()).optional_techniques
    assert w8a8.with_(name="x").optional_techniques
    # plain schemes serialise as before (their artifact cache keys do not move)
    assert "optional_techniques" not in get_scheme("w8a8-ada").to_dict()
