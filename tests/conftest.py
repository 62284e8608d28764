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


# Measured on 2 cores (seconds, one torch thread): the smoke runs and then the browser runs, one
# xdist group, ~280; the capped gpu runs 03 ~150, 02 ~95, 01 ~70, 04 ~70, 05 ~27, 00 ~11; the graded
# class ~110. Longest first, so that both workers finish together; within the group, smoke first.
LONGEST_FIRST = ("at_smoke_outputs", "test_browser.py", "gpu_profile_capped[03", "test_grade.py",
                 "gpu_profile_capped[02", "gpu_profile_capped[01", "gpu_profile_capped[04", "gpu_profile_capped[05",
                 "gpu_profile_capped[00", "test_notebooks.py")


def pytest_collection_modifyitems(items):
    """The longest tests first (see LONGEST_FIRST), then the rest in their collected order."""
    def rank(item):
        return next((i for i, key in enumerate(LONGEST_FIRST) if key in item.nodeid), len(LONGEST_FIRST))

    items.sort(key=rank)
