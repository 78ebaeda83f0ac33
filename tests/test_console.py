"""Terminal output: progress bars go to stderr (stdout holds results), hidden off a terminal."""

from __future__ import annotations

import pytest

from edgequant.console import progress, progress_bar


def test_progress_bars_write_to_stderr_only_when_shown(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(3), desc="items", disable=False)) == [0, 1, 2]
    with progress_bar(4, desc="layers", unit="layer", disable=False) as bar:
        bar.update(4)
    out, err = capsys.readouterr()
    assert out == "" and "items" in err and "layers" in err and "/4 " in err and "layer/s" in err
    # captured stderr is not a terminal: hidden by default, the work still done
    assert list(progress(range(2))) == [0, 1]
    with progress_bar(2) as bar:
        bar.update(2)
    assert capsys.readouterr() == ("", "")
