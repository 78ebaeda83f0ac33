"""Built-in schemes: what a scheme promises reaches every runtime's quantizer."""

from __future__ import annotations

from edgequant.quant.scheme import get_scheme


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
    # plain w8a8 keeps each runtime's tuned default
    assert quantizer_for(get_scheme("w8a8"))[1]["activation_observer"] == "HistogramObserver"
    assert resolve_method(get_scheme("w8a8").calibration.method) == "mse"
