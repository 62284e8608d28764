"""The course's widget pattern: static default figure, redraw only when a control moves."""

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest

from tutorial_lib import plots


def test_explorer_draws_the_default_once_and_redraws_on_change(monkeypatch):
    calls, shown = [], []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(len(plt.get_fignums())) or plt.close("all"))

    def draw(gamma, kind):
        calls.append((gamma, kind))
        plt.plot([0, 1], [0, gamma])

    slider = widgets.FloatSlider(value=-1.0, min=-2.0, max=1.0, step=0.5)
    handle = plots.explorer(draw, gamma=slider, kind=widgets.Dropdown(options=["a", "b"], value="a"))
    assert calls == [(-1.0, "a")] and shown == [1]        # the default view, drawn once, as a cell output
    assert handle.out.outputs == ()                      # the redraw area stays empty until a control moves
    assert slider.description == "gamma"                 # an unnamed control is labelled with its name
    slider.value = 0.5                                   # a person moves the slider
    assert calls == [(-1.0, "a"), (0.5, "a")] and shown == [1, 1]
    handle.controls["kind"].value = "b"
    assert calls[-1] == (0.5, "b")
    assert handle._ipython_display_() is None            # as a cell's last expression it adds nothing


def test_explorer_refuses_bad_controls():
    with pytest.raises(TypeError, match="at least one control"):
        plots.explorer(lambda: None)
    with pytest.raises(TypeError, match="value widgets"):
        plots.explorer(lambda x: None, x=3)


def test_departures_table_shape_and_errors():
    styled = plots.departures_table([("lr", "2e-4", "1e-3", "short run"), ("batch", "8", "16", "CPU")])
    assert list(styled.data.columns) == ["setting", "paper (and its code, where public)", "this notebook", "why"]
    assert len(styled.data) == 2 and "short run" in styled.to_html()
    with pytest.raises(TypeError, match="bad rows: \\[1\\]"):
        plots.departures_table([("a", "b", "c", "d"), ("only", "three", "cells")])
    with pytest.raises(TypeError, match="none given"):
        plots.departures_table([])
