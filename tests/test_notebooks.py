"""Every notebook executed twice here (and once more in a browser, ``test_browser.py``).

**At smoke, once, on a fresh kernel.** The run injects the parameters as papermill does
(``parameterize_notebook``) and executes the cells with nbclient, keeping the kernel. That one
execution then serves four checks:

1. every exercise check of the instructor's notebook passes (its records in the results folder);
2. the cells tagged ``nbval-check-output`` print what the committed notebook stores, compared the way
   ``pytest --nbval-lax`` compares them (nbval's own stream handling and skipped keys; ``make nbval``
   still runs nbval itself);
3. the cells tagged ``widget`` (the interactive views) run again and again with a per-cell timeout:
   ``ipywidgets.interact`` deadlocked headless kernels now and then, and a repeated execution is
   what catches such a hang;
4. the student edition: in the same kernel, every exercise cell is replaced by its stub and run with
   its check and the cell that chooses between the student's function and the library's: only
   ``NotImplementedError`` may occur, every check says NOT YET and none PASSED, no traceback is
   printed. A static test (``test_student.py``) makes sure no other cell calls a stubbed function,
   so the rest of the student edition runs as the instructor's does.

**At the ``gpu`` profile, capped** (``TUTORIAL_MAX_STEPS``): every code path of the larger version.

Wall times are written to ``notebook_wall_times/`` in the results folder and shown in pytest's
summary, not asserted: the speed of a shared machine proves nothing about correctness.
"""

import json
import os
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET_TAG = "widget"
CHECK_OUTPUT_TAG = "nbval-check-output"
WIDGET_REPEATS = 12          # executions of each widget cell after the full run
CELL_TIMEOUT_S = 600         # a training cell at smoke takes seconds; a hung cell fails the test
WIDGET_TIMEOUT_S = 120


def widget_cells(nb) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if WIDGET_TAG in c.get("metadata", {}).get("tags", [])]


def record_wall_time(name: str, seconds: float, folder: Path | None = None) -> None:
    """One small file per run (the tests run in parallel workers; no file is shared between them)."""
    times = (folder or Path(os.environ["TUTORIAL_RESULTS_DIR"])) / "notebook_wall_times"
    times.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "_" for c in name)
    (times / f"{slug}.json").write_text(json.dumps({"name": name, "seconds": round(seconds, 1)}))


# What `pytest --nbval-lax` leaves out of a comparison (nbval's IPyNbFile.skip_compare without nbdime)
NBVAL_SKIP = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
              "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg"}


def comparable(outputs) -> dict[str, list]:
    """A cell's outputs as nbval compares them: streams merged per name (carriage returns applied),
    then every key and MIME type but the skipped ones, in order within each key."""
    from nbval.plugin import coalesce_streams, transform_streams_for_comparison

    merged = coalesce_streams([nbformat.from_dict(json.loads(json.dumps(o))) for o in outputs])
    flat = defaultdict(list)
    for output in transform_streams_for_comparison(merged):
        for key, value in output.items():
            if key in NBVAL_SKIP:
                continue
            if key == "data":
                for mime, item in value.items():
                    if mime not in NBVAL_SKIP:
                        flat[mime].append(item)
            else:
                flat[key].append(value)
    return dict(flat)


def output_mismatches(executed, committed) -> list[str]:
    """The cells tagged nbval-check-output whose outputs differ from the committed notebook's."""
    bad = []
    for i, (run, stored) in enumerate(zip(executed.cells, committed.cells)):
        if CHECK_OUTPUT_TAG in stored.get("metadata", {}).get("tags", []):
            got, want = comparable(run.outputs), comparable(stored.outputs)
            if got != want:
                bad.append(f"cell {i}: expected {want!r}, got {got!r}")
    return bad


def student_cells(source) -> tuple[list[int], object, int]:
    """The cells the student edition changes (exercise stubs), plus the check cells and the cells
    that choose between the student's function and the library's, in order; the edition; its count."""
    from tutorial_lib import student

    edition, count = student.make_student(source)
    changed = {i for i, (a, b) in enumerate(zip(source.cells, edition.cells)) if a.source != b.source}
    checks = {i for i, c in enumerate(source.cells) if c.cell_type == "code" and
              ("exercise-check" in c.metadata.get("tags", []) or ".choose(" in c.source)}
    return sorted(changed | checks), edition, count


@pytest.mark.notebook
@pytest.mark.xdist_group("smoke")  # before the browser runs, which load what these train (test_browser.py)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_at_smoke_outputs_widgets_and_student_edition(path, tmp_path):
    import time

    from nbclient import NotebookClient
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from tutorial_lib import exercises

    committed = nbformat.read(str(path), as_version=4)
    nb = parameterize_notebook(load_notebook_node(str(path)), {"PROFILE": "smoke"})
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    folder = Path(os.environ["TUTORIAL_RESULTS_DIR"])
    student_results = tmp_path / "student-results"
    order, edition, count = student_cells(committed)
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        wall = time.perf_counter() - start
        # 1. the instructor's notebook carries the solutions: every one of its checks must pass
        record = json.loads((folder / f"{path.stem}.json").read_text())
        assert record["profile"] == "smoke" and record["claims"], "the claim cell did not record its claims"
        for exercise in exercises.of_notebook(path.name[:2]):
            check = json.loads((folder / "exercises" / f"{exercise.id}.json").read_text())
            assert check["status"] == "passed", f"{exercise.id}: {check['message']}"
        # 2. nbval's output checks on the tagged cells
        kept = nbformat.from_dict({**nb, "cells": [c for c in nb.cells  # without papermill's injected cell
                                                   if "injected-parameters" not in c.metadata.get("tags", [])]})
        assert len(kept.cells) == len(committed.cells)
        mismatches = output_mismatches(kept, committed)
        assert not mismatches, f"{path.name}: outputs differ from the committed notebook\n" + "\n".join(mismatches)
        # 3. the interactive views, again and again
        client.timeout = WIDGET_TIMEOUT_S
        repeated = widget_cells(nb)
        for _ in range(WIDGET_REPEATS):
            for index in repeated:
                client.execute_cell(nb.cells[index], index)
        # 4. the student edition's exercises and checks, in the same kernel (its records kept apart)
        setup = nbformat.v4.new_code_cell(f"import os\nos.environ['TUTORIAL_RESULTS_DIR'] = {str(student_results)!r}")
        ran = [nbformat.from_dict(json.loads(json.dumps(edition.cells[i]))) for i in order]
        client.nb = nbformat.v4.new_notebook(cells=[setup, *ran], metadata=nb.metadata)
        client.allow_errors = True
        for index, cell in enumerate(client.nb.cells):
            client.execute_cell(cell, index)
    nbformat.write(nb, str(tmp_path / path.name))
    record_wall_time(path.stem, wall)
    print(f"{path.stem}: {wall:.1f} s at smoke; {len(repeated)} widget cell(s) executed "
          f"{WIDGET_REPEATS} more times; {count} exercise(s) of the student edition checked")
    errors = [o for c in ran for o in c.outputs if o.output_type == "error"]
    assert all(o.output_type != "error" for o in setup.outputs)
    assert all(e.ename == "NotImplementedError" for e in errors), [f"{e.ename}: {e.evalue}" for e in errors]
    text = "".join(o.get("text", "") for c in ran for o in c.outputs if o.output_type == "stream")
    assert text.count("[NOT YET]") >= count and "[PASSED]" not in text, text
    assert "Traceback" not in text
    if count:
        statuses = {json.loads(f.read_text())["status"] for f in (student_results / "exercises").glob("*.json")}
        assert statuses == {"not attempted"}, statuses


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


def test_output_comparison_finds_a_changed_output_and_ignores_what_nbval_ignores():
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    def notebook(*outputs):
        cell = new_code_cell("print(x)", outputs=list(outputs))
        cell.metadata["tags"] = [CHECK_OUTPUT_TAG]
        return new_notebook(cells=[cell, new_code_cell("y", outputs=[new_output("stream", name="stdout", text="free\n")])])

    stored = notebook(new_output("stream", name="stdout", text="a 1\nb 2\n"))
    split = notebook(new_output("stream", name="stdout", text="a 1\n"), new_output("stream", name="stdout", text="b 2\n"),
                     new_output("display_data", data={"image/png": "iVBOR"}))
    assert output_mismatches(split, stored) == []      # streams merged; images skipped, as nbval does
    changed = notebook(new_output("stream", name="stdout", text="a 1\nb 3\n"))
    changed.cells[1].outputs[0].text = "other\n"        # an untagged cell may differ
    assert len(output_mismatches(changed, stored)) == 1 and "cell 0" in output_mismatches(changed, stored)[0]
