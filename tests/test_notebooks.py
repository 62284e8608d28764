"""Execute every notebook at the smoke profile on a fresh kernel, top to bottom, then its widget cells again.

The run injects the parameters as papermill does (``parameterize_notebook``) and executes the cells
with nbclient, keeping the kernel, so that the cells tagged ``widget`` (the interactive views) can be
executed again and again afterwards: ``ipywidgets.interact`` deadlocked headless kernels now and then,
and a repeated execution with a per-cell timeout is what catches such a hang. Wall times are written
to ``notebook_wall_times.json`` in the results folder and shown in pytest's summary, not asserted: the
speed of a shared machine proves nothing about correctness.
"""

import json
import os
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET_TAG = "widget"
WIDGET_REPEATS = 12          # executions of each widget cell after the full run
CELL_TIMEOUT_S = 600         # a training cell at smoke takes seconds; a hung cell fails the test
WIDGET_TIMEOUT_S = 120


def widget_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if WIDGET_TAG in c.get("metadata", {}).get("tags", [])]


def record_wall_time(name: str, seconds: float, folder: Path | None = None) -> None:
    times = (folder or Path(os.environ["TUTORIAL_RESULTS_DIR"])) / "notebook_wall_times.json"
    data = json.loads(times.read_text()) if times.exists() else {}
    data[name] = round(seconds, 1)
    times.write_text(json.dumps(data, indent=2))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_at_smoke_and_widgets_never_hang(path, tmp_path):
    import time

    from nbclient import NotebookClient
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(path)), {"PROFILE": "smoke"})
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        wall = time.perf_counter() - start
        client.timeout = WIDGET_TIMEOUT_S
        repeated = widget_cells(nb)
        for _ in range(WIDGET_REPEATS):
            for index in repeated:
                client.execute_cell(nb.cells[index], index)
    nbformat.write(nb, str(tmp_path / path.name))
    record_wall_time(path.stem, wall)
    print(f"{path.stem}: {wall:.1f} s at smoke; {len(repeated)} widget cell(s) executed "
          f"{WIDGET_REPEATS} more times")
    folder = Path(os.environ["TUTORIAL_RESULTS_DIR"])
    record = json.loads((folder / f"{path.stem}.json").read_text())
    assert record["profile"] == "smoke" and record["claims"], "the claim cell did not record its claims"
    # the instructor's notebook carries the solutions: every one of its checks must pass
    from tutorial_lib import exercises

    for exercise in exercises.of_notebook(path.name[:2]):
        check = json.loads((folder / "exercises" / f"{exercise.id}.json").read_text())
        assert check["status"] == "passed", f"{exercise.id}: {check['message']}"


GPU_STEP_CAP = 5


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_the_gpu_profile_capped(path, tmp_path, monkeypatch):
    """Every code path of the ``gpu`` profile (its larger networks and data, MNIST or its fallback,
    mixed precision where the device allows it) executes, here on the CPU, with every training
    loop and sample count capped by ``TUTORIAL_MAX_STEPS``; claims are recorded, not enforced."""
    import time

    import papermill as pm

    shared = Path(os.environ["TUTORIAL_RESULTS_DIR"])
    monkeypatch.setenv("TUTORIAL_MAX_STEPS", str(GPU_STEP_CAP))
    results = tmp_path / "results"
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(results))
    start = time.perf_counter()
    pm.execute_notebook(str(path), str(tmp_path / path.name), parameters={"PROFILE": "gpu"},
                        cwd=str(path.parent), kernel_name="python3", progress_bar=False,
                        execution_timeout=CELL_TIMEOUT_S)
    record_wall_time(f"{path.stem} (gpu, capped at {GPU_STEP_CAP} steps)", time.perf_counter() - start, shared)
    record = json.loads((results / f"{path.stem}.json").read_text())
    assert record["profile"] == "gpu" and record["step_cap"] == GPU_STEP_CAP and record["claims"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_interactive_cells_use_the_explorer_pattern(path):
    """No ``interact``/``interactive`` (they can hang a headless kernel); every widget cell is tagged."""
    nb = nbformat.read(str(path), as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        src = cell.source
        assert "interact(" not in src and "interactive(" not in src, \
            f"{path.name} cell {i} uses ipywidgets.interact/interactive; use tutorial_lib.plots.explorer"
        if "plots.explorer(" in src:
            assert WIDGET_TAG in cell.metadata.get("tags", []), f"{path.name} cell {i}: tag it {WIDGET_TAG!r}"
    if path.stem != "00_getting_started":
        assert widget_cells(nb), f"{path.name} has no interactive view tagged {WIDGET_TAG!r}"
