"""Shared test setup: a private checkpoint cache and results folder, headless matplotlib."""

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
# The notebooks executed by the tests (papermill and nbval) must not touch the user's cache.
os.environ.setdefault("TUTORIAL_CACHE", tempfile.mkdtemp(prefix="tutorial-cache-"))
os.environ.setdefault("TUTORIAL_RESULTS_DIR", tempfile.mkdtemp(prefix="tutorial-results-"))
