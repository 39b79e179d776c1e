"""Progress bars: off for the library and when stderr is not a terminal; when on, they pass every item through."""

from __future__ import annotations

from onnxprune import progress


def test_bars_are_off_by_default_and_pass_items_through(capsys):
    assert list(progress.track(range(3), "x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    assert not progress.wanted(quiet=True)


def test_an_enabled_bar_yields_every_item(monkeypatch):
    monkeypatch.setattr(progress, "_ENABLED", True)
    assert list(progress.track(iter(range(5)), "counting", total=5)) == [0, 1, 2, 3, 4]
    assert list(progress.track([1, 2], "sized")) == [1, 2]
