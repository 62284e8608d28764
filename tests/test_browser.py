"""Every notebook in a real browser: JupyterLab, Run All, no errors, widgets render, sliders redraw.

JupyterLab runs from the project's environment on a scratch copy of the notebooks at the smoke
profile; headless Chromium (Debian's `chromium` package) drives it through Playwright. Screenshots
go to $TUTORIAL_BROWSER_SHOTS, else .cache/browser-shots/.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

import browser_lab as bl
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RUN_LIMIT_S = 600

# `notebook` too: `make unit` (-m "not notebook") leaves the browser out. The xdist group of the smoke
# runs (test_notebooks.py): one worker runs them first, then these, which share one JupyterLab server
# and one browser and read the models the smoke runs trained (their cache as the read-only shared
# cache): the smoke runs test training, the browser runs loading.
pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.timeout(1200), pytest.mark.xdist_group("smoke")]


def _skip_without_browser():
    if bl.chromium_path() is None:
        pytest.skip("Chromium not found: install Debian's `chromium` package: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="the `playwright` Python package is missing: "
                                                      "pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("TUTORIAL_BROWSER_SHOTS") or ROOT / ".cache" / "browser-shots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request):
    _skip_without_browser()
    scratch = tmp_path_factory.mktemp("lab")
    root = scratch / "notebooks"
    root.mkdir()
    for path in NOTEBOOKS:  # a copy: the repository's notebooks are never opened, run or saved
        shutil.copy2(path, root / path.name)
    server = bl.LabServer(root=root, scratch=scratch, repo=ROOT)
    request.addfinalizer(server.stop)
    return server.start()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=bl.chromium_path(), args=bl.CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, lab):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    console = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.console_errors = console
    try:
        yield page
    finally:
        context.close()
        lab.shutdown_kernels()


def run_in_browser(page, lab, name: str, shots: Path, expect_explorer: bool | None = None) -> dict:
    """Open, Run All, save and check one notebook of the scratch folder; move its explorer's slider."""
    path = lab.root / name
    expected = bl.code_cells_with_source(json.loads(path.read_text()))
    stem = Path(name).stem

    start = time.perf_counter()
    bl.open_notebook(page, lab, name)
    bl.run_all(page)
    bl.wait_until_run(page, lab, expected, RUN_LIMIT_S)
    run_s = time.perf_counter() - start
    saved = bl.save(page, path)
    for old in shots.glob(f"{stem}-*.png"):
        old.unlink()
    bl.screenshot_notebook(page, shots / f"{stem}-1-run-all.png")

    assert bl.saved_errors(saved) == [], f"{name}: error outputs\n{bl.tracebacks(page)}"
    assert bl.tracebacks(page) == [], f"{name}: tracebacks on the page"
    assert bl.unexecuted(saved) == [], f"{name}: code cells that did not run: {bl.unexecuted(saved)}"

    # Widget views render where widgets were displayed (ipywidgets writes "Error displaying widget"
    # where one cannot). Views render asynchronously: give them a little time.
    expected_views = bl.saved_widget_outputs(saved)
    deadline = time.monotonic() + 30
    while bl.widget_views(page) != expected_views and not bl.widget_errors(page) and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text(), f"{name}: a widget failed"
    assert bl.widget_errors(page) == [], \
        f"{name}: widgets failed to render; browser console errors: {page.console_errors[-5:]}"
    views = bl.widget_views(page)
    assert views == expected_views, (f"{name}: widget outputs per cell, saved {expected_views}, rendered "
                                     f"on the page {views}; browser console errors: {page.console_errors[-5:]}")
    n_widgets = sum(views)

    n_explorers = page.evaluate(bl.JS_MARK_EXPLORER)
    if expect_explorer is not None:
        assert bool(n_explorers) == expect_explorer, f"{name}: {n_explorers} explorer widgets"
    moved = None
    if n_explorers:
        try:
            moved = bl.move_first_slider(page)
        finally:
            # the explorer's cell: its default figure, the controls and the redrawn figure
            cell = page.locator(".jp-Cell", has=page.locator('[data-browser-test="explorer"]')).last
            bl.screenshot_element(page, cell, shots / f"{stem}-2-slider.png")
        assert bl.tracebacks(page) == [], f"{name}: tracebacks after moving the slider"
        assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text()
        assert bl.widget_errors(page) == [], \
            f"{name}: widgets failed after moving the slider; browser console errors: {page.console_errors[-5:]}"
    print(f"{stem}: Run All {run_s:.1f} s, {expected} code cells, {n_widgets} widget views, "
          f"{n_explorers} explorer(s)" + (f", slider {moved[0]!r} -> {moved[1]!r}: new image" if moved else ""))
    return {"run_s": run_s, "widgets": n_widgets, "explorers": n_explorers, "moved": moved}


FIXTURE_SOURCE = '''\
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display


def explorer(draw, **controls):
    """The course's explorer pattern: the default figure as a cell output, then controls and an Output."""
    values = lambda: {name: control.value for name, control in controls.items()}
    draw(**values())
    plt.show()
    out = widgets.Output()

    def redraw(change):
        with out:
            out.clear_output(wait=True)
            draw(**values())
            plt.show()

    for control in controls.values():
        control.observe(redraw, names="value")
    display(widgets.VBox([widgets.HBox(list(controls.values())), out]))


def draw(cycles):
    x = np.linspace(0, 1, 200)
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot(x, np.sin(2 * np.pi * cycles * x))
    ax.set_title(f"{cycles} cycles")


explorer(draw, cycles=widgets.IntSlider(value=1, min=1, max=5, description="cycles"))
'''


def fixture_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# Browser-test fixture: one explorer slider"),
                nbformat.v4.new_code_cell(FIXTURE_SOURCE),
                nbformat.v4.new_code_cell("print('ran to the end')")]
    nbformat.write(nb, path)
    return path


def test_browser_fixture_widget(page, lab, shots):
    """Self-test of the machinery on a small notebook with one explorer-style slider."""
    name = fixture_notebook(lab.root / "browser_fixture.ipynb").name
    result = run_in_browser(page, lab, name, shots, expect_explorer=True)
    assert result["widgets"] == 1
    before, after, _, imgs = result["moved"]
    assert (before, after) == ("1", "2") and len(imgs) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_in_browser(path, page, lab, shots):
    nb = json.loads(path.read_text())
    uses_explorer = any("explorer(" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    run_in_browser(page, lab, path.name, shots, expect_explorer=uses_explorer or None)
