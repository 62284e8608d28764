"""Grading a synthetic class of notebook 00 with `python -m tutorial_lib.grade`, with nbgrader, and on a
Dask cluster.

The class: the solution notebook; the untouched student edition; the student edition plus a cell that
prints "[PASSED]"; a solution whose functions call the library's reference; a notebook that raises in
its first cell; one that deletes its own folder and results; one that sleeps past the timeout.
"""

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT
from tutorial_lib import exercises, grade, student

COURSE = ROOT / "notebooks" / "00_getting_started.ipynb"
MAX = {e.id: e.points for e in exercises.of_notebook("00")}
CHEATS = {"my_psnr": "return metrics.psnr(pred, target)",
          "my_frechet": "return metrics.frechet_from_stats(mu_a, cov_a, mu_b, cov_b)"}
TIMEOUT_S = 45  # seconds per submission: the sleeping one costs this long
# The tests that read the graded class share one grading run: one xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("grade")


def _with_first_cell(nb, source):
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(source))
    return nb


def _calling_the_reference(nb):
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        for name, body in CHEATS.items():
            if f"def {name}(" in cell.source:
                cell.source = re.sub(r"([ \t]*)### BEGIN SOLUTION.*?### END SOLUTION",
                                     lambda m: m.group(1) + body, cell.source, flags=re.S)
    return nb


def make_class(root: Path) -> dict[str, object]:
    source = nbformat.read(str(COURSE), as_version=4)
    stub, _ = student.make_student(source)
    printer = nbformat.reads(nbformat.writes(stub), as_version=4)
    printer.cells.append(nbformat.v4.new_code_cell(
        'print("[PASSED] PSNR (nb00.psnr, 1 point)")\nprint("[PASSED] Frechet distance (nb00.frechet, 2 points)")'))
    # an edited check cell: it would pass anything, but the grader restores the course's own
    for cell in printer.cells:
        if "exercise-check" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace("exercises.check(", "exercises.check.__call__(") + "  # edited"
    submissions = {
        "solution": source,
        "untouched": stub,
        "prints_passed": printer,
        "calls_reference": _calling_the_reference(source),
        "raises": _with_first_cell(source, 'raise RuntimeError("broken on purpose")'),
        "deletes": _with_first_cell(source, "import os, shutil\nshutil.rmtree(os.getcwd(), ignore_errors=True)\n"
                                            "shutil.rmtree(os.environ['TUTORIAL_RESULTS_DIR'], ignore_errors=True)"),
        "sleeps": _with_first_cell(source, "import time\ntime.sleep(3600)"),
    }
    for name, nb in submissions.items():
        (root / name).mkdir(parents=True)
        nbformat.write(nb, str(root / name / COURSE.name))
    (root / "empty").mkdir()  # a student folder without the notebook
    return submissions


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    make_class(root / "submissions")
    shared = root / "shared-cache"
    shared.mkdir()
    before = sorted(shared.iterdir())
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tutorial_lib.grade", str(root / "submissions"), "--notebook", "00",
                           "--out", str(root / "out"), "-j", "2", "--timeout", str(TIMEOUT_S),
                           "--shared-cache", str(shared), "--source", str(ROOT / "notebooks")],
                          capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(shared.iterdir()) == before, "a submission wrote into the read-only shared cache"
    with open(root / "out" / "grades.csv") as fh:
        rows = list(csv.DictReader(fh))
    print(proc.stdout, f"graded in {wall:.0f} s", sep="\n")
    return root, rows, proc.stdout


def _by_student(rows):
    out = {}
    for row in rows:
        out.setdefault(row["student"], {})[row["exercise"]] = (int(row["points"]), row["status"])
    return out


@pytest.mark.notebook
def test_grades_csv_has_the_columns_and_a_row_per_student_and_exercise(graded):
    root, rows, _ = graded
    header = (root / "out" / "grades.csv").read_text().splitlines()[0]
    assert header == "student,exercise,points,max_points,status"
    students = {"solution", "untouched", "prints_passed", "calls_reference", "raises", "deletes", "sleeps", "empty"}
    assert {r["student"] for r in rows} == students and len(rows) == len(students) * len(MAX)
    assert all(int(r["max_points"]) == MAX[r["exercise"]] for r in rows)
    assert {r["status"] for r in rows} <= set(grade.STATUSES)


@pytest.mark.notebook
def test_the_synthetic_class_gets_the_grades_it_deserves(graded):
    _, rows, _ = graded
    got = _by_student(rows)
    assert got["solution"] == {e: (p, "passed") for e, p in MAX.items()}
    assert got["untouched"] == {e: (0, "not attempted") for e in MAX}
    assert got["prints_passed"] == {e: (0, "not attempted") for e in MAX}
    assert got["calls_reference"] == {e: (0, "failed") for e in MAX}
    assert got["raises"] == {e: (0, "error") for e in MAX}
    assert got["sleeps"] == {e: (0, "timeout") for e in MAX}
    assert got["empty"] == {e: (0, "not attempted") for e in MAX}
    assert set(got["deletes"]) == set(MAX)  # it deleted its own files: it still gets its rows


@pytest.mark.notebook
def test_feedback_and_summary_pages(graded):
    root, _, _ = graded
    out = root / "out"
    cheat = (out / "calls_reference" / "feedback.html").read_text()
    assert "calls the reference" in cheat and "Hint 1 of" in cheat and "0 of 3 points" in cheat
    assert "3 of 3 points" in (out / "solution" / "feedback.html").read_text()
    summary = (out / "summary.html").read_text()
    assert "Pass rate per exercise" in summary and "calls the reference" in summary
    assert "broken on purpose" in summary and "still running after" in summary
    assert (out / "solution" / COURSE.name).exists()


@pytest.mark.notebook
def test_nbgrader_autograde_agrees_on_the_solution_and_the_student_edition(graded, tmp_path):
    pytest.importorskip("nbgrader")
    root, rows, _ = graded
    course = tmp_path / "course"
    subprocess.run([sys.executable, "-m", "tutorial_lib.student", str(ROOT / "notebooks"), str(tmp_path / "student"),
                    "--nbgrader", str(course)], check=True, capture_output=True)
    for other in [p for p in (course / "source").iterdir() if p.name != COURSE.stem]:
        shutil.rmtree(other)
    env = {**os.environ, "TUTORIAL_PROFILE": "smoke", "CI": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "TUTORIAL_RESULTS_DIR": str(tmp_path / "results")}
    nbgrader = [sys.executable, "-m", "nbgrader"]
    subprocess.run(nbgrader + ["generate_assignment", COURSE.stem, "--force"], cwd=course, env=env, check=True,
                   capture_output=True, timeout=300)
    released = course / "release" / COURSE.stem / COURSE.name
    for who, path in (("solution", course / "source" / COURSE.stem / COURSE.name), ("untouched", released)):
        (course / "submitted" / who / COURSE.stem).mkdir(parents=True)
        shutil.copyfile(path, course / "submitted" / who / COURSE.stem / COURSE.name)
    subprocess.run(nbgrader + ["autograde", COURSE.stem, "--force"], cwd=course, env=env, check=True,
                   capture_output=True, timeout=600)
    from nbgrader.api import Gradebook

    ours = _by_student(rows)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for who in ("solution", "untouched"):
            submission = gb.find_submission(COURSE.stem, who)
            assert submission.max_score == sum(MAX.values())
            assert submission.score == sum(p for p, _ in ours[who].values()), who
    # the released student edition is our student edition (the same stub in every solution cell)
    released_nb = nbformat.read(str(released), as_version=4)
    stubs = [c.source for c in released_nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert stubs and all(student.STUB.splitlines()[1] in s and "BEGIN SOLUTION" not in s for s in stubs)


TINY = '''{"cells": [
 {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "PROFILE = 'smoke'", "outputs": [], "execution_count": null},
 {"cell_type": "code", "metadata": {}, "source": "import torch\\nfrom tutorial_lib import exercises, metrics\\ng = torch.Generator().manual_seed(0)\\nclean = torch.rand(3, 3, 8, 8, generator=g)\\nnoisy = (clean + 0.1 * torch.randn(3, 3, 8, 8, generator=g)).clamp(0, 1)", "outputs": [], "execution_count": null},
 {"cell_type": "code", "metadata": {}, "source": "def my_psnr(pred, target):\\n    ### BEGIN SOLUTION\\n    return 10 * torch.log10(1 / ((pred - target) ** 2).mean())\\n    ### END SOLUTION", "outputs": [], "execution_count": null},
 {"cell_type": "code", "metadata": {"tags": ["exercise-check"], "tutorial": {"exercise": "nb00.psnr"}}, "source": "psnr_check = exercises.check(\\"nb00.psnr\\", my_psnr, [(noisy[i:i + 1], clean[i:i + 1]) for i in range(3)])", "outputs": [], "execution_count": null}
], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 4}'''


@pytest.mark.notebook
def test_the_same_jobs_run_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    course = tmp_path / "course"
    course.mkdir()
    (course / "00_tiny.ipynb").write_text(TINY)
    source = nbformat.read(str(course / "00_tiny.ipynb"), as_version=4)
    for name, nb in (("solution", source), ("untouched", student.make_student(source)[0])):
        (tmp_path / "subs" / name).mkdir(parents=True)
        nbformat.write(nb, str(tmp_path / "subs" / name / "00_tiny.ipynb"))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        rows = grade.grade(tmp_path / "subs", "00", tmp_path / "out", source=course, profile="smoke", timeout=300,
                           scheduler=cluster.scheduler_address, verbose=False)
    assert {(r["student"], r["exercise"], r["points"], r["status"]) for r in rows} == {
        ("solution", "nb00.psnr", 1, "passed"), ("untouched", "nb00.psnr", 0, "not attempted")}


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(grade.GradingError, match="is not a folder of submissions"):
        grade.grade(tmp_path / "missing", "00", tmp_path / "out", source=ROOT / "notebooks", verbose=False)
    with pytest.raises(grade.GradingError, match="expected one course notebook 42_"):
        grade.grade(tmp_path, "42", tmp_path / "out", source=ROOT / "notebooks", verbose=False)
    proc = subprocess.run([sys.executable, "-m", "tutorial_lib.grade", str(tmp_path / "missing"), "--notebook", "00",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_rows_follow_the_records_then_how_the_run_ended():
    exercises_00 = [("nb00.psnr", 1), ("nb00.frechet", 2)]
    result = {"student": "s", "run": "timeout", "error": "late", "records": {
        "nb00.psnr": {"status": "passed"}}, "missing_checks": []}
    rows = grade.rows_for(result, exercises_00)
    assert [(r["points"], r["status"]) for r in rows] == [(1, "passed"), (0, "timeout")]
    result["run"] = "ok"
    assert grade.rows_for(result, exercises_00)[1]["status"] == "failed"
