"""Shared test setup: a private checkpoint cache and results folder, headless matplotlib."""

import os
import tempfile
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
# The notebooks executed by the tests (papermill and nbval) must not touch the user's cache.
os.environ.setdefault("TUTORIAL_CACHE", tempfile.mkdtemp(prefix="tutorial-cache-"))
os.environ.setdefault("TUTORIAL_RESULTS_DIR", tempfile.mkdtemp(prefix="tutorial-results-"))


@pytest.fixture
def one_thread():
    """Tiny networks train faster (and steadier on a busy machine) on one CPU thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def pytest_terminal_summary(terminalreporter):
    """Show the notebooks' wall times (smoke, and the capped gpu runs; recorded by test_notebooks.py)."""
    import json

    times = sorted((json.loads(f.read_text()) for f in
                    (Path(os.environ["TUTORIAL_RESULTS_DIR"]) / "notebook_wall_times").glob("*.json")),
                   key=lambda t: t["name"])
    if times:
        terminalreporter.section("notebook wall times (smoke unless stated)")
        for t in times:
            terminalreporter.write_line(f"{t['name']:62s} {t['seconds']:7.1f} s")


def pytest_collection_modifyitems(items):
    """The longest tests first (the capped gpu runs, then the browser and the graded class, then the
    smoke runs), so that the two pytest-xdist workers of `make test` finish together; order within
    each kind kept."""
    def rank(item):
        nodeid = item.nodeid
        if "gpu_profile_capped" in nodeid:
            return 0
        if "test_browser.py" in nodeid or "test_grade.py" in nodeid:
            return 1
        if "test_notebooks.py" in nodeid:
            return 2
        return 3

    items.sort(key=rank)
