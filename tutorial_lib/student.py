"""The student edition: one source notebook, solutions removed.

In a source notebook, solution code sits between marker lines inside a code cell::

    def nl2_repulsion(theta, theta_n):
        ### BEGIN SOLUTION
        return -squared_distance(theta, theta_n)
        ### END SOLUTION

or fills a whole cell tagged ``solution``. The student edition replaces each such block by a stub
at the same indentation (``# YOUR CODE HERE`` + ``raise NotImplementedError``) and clears every
output. The source notebook keeps running top to bottom, so the solutions are tested with it.

    python -m tutorial_lib.student notebooks/ student/      # what `make student` runs
    python -m tutorial_lib.student notebooks/ student/ --nbgrader nbgrader/

With ``--nbgrader DIR`` it also writes an nbgrader course folder: ``DIR/source/<notebook>/<notebook>.ipynb``
(the instructor's notebook with nbgrader's cell metadata: each solution cell a ``solution`` cell,
each check cell a locked ``grade`` cell with the exercise's points, which ends by raising when its
check did not pass) and ``DIR/nbgrader_config.py``. ``nbgrader generate_assignment <notebook>`` and
``nbgrader autograde <notebook>`` then work on it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from .errors import TutorialError

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
SOLUTION_TAG = "solution"
STUB = "# YOUR CODE HERE\nraise NotImplementedError(\"Exercise: replace this line with your code\")"
_BLOCK = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION[^\n]*(\n|$)", re.M | re.S)


def _stub(indent: str) -> str:
    return "".join(f"{indent}{line}\n" for line in STUB.splitlines())


def strip_solutions(source: str) -> tuple[str, int]:
    """Replace every marked block by a stub; return the new source and how many blocks were replaced."""
    unbalanced = source.count(BEGIN) != source.count(END)
    if unbalanced:
        raise ValueError(f"unbalanced solution markers ({source.count(BEGIN)} BEGIN, {source.count(END)} END)")
    new, count = _BLOCK.subn(lambda m: _stub(m.group(1)), source)
    return new.rstrip("\n"), count


def solution_blocks(source: str) -> list[str]:
    return [m.group(2) for m in _BLOCK.finditer(source)]


def is_solution_cell(cell) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def make_student(nb):
    """A student copy of ``nb``: solution blocks and cells stubbed, outputs cleared. Returns (nb, count)."""
    student = nbformat.reads(nbformat.writes(nb), as_version=4)
    count = 0
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if is_solution_cell(cell):
            cell.source = STUB
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != SOLUTION_TAG] + ["exercise"]
            count += 1
        elif BEGIN in cell.source:
            cell.source, n = strip_solutions(cell.source)
            count += n
    student.metadata["tutorial_edition"] = "student"
    return student, count


def fill_solutions(student, source):
    """Put the source notebook's solutions back into a student notebook (cell by cell)."""
    filled = nbformat.reads(nbformat.writes(student), as_version=4)
    if len(filled.cells) != len(source.cells):
        raise ValueError("the student notebook does not come from this source notebook (cell count differs)")
    for mine, theirs in zip(filled.cells, source.cells):
        if mine.cell_type == "code" and (BEGIN in theirs.source or is_solution_cell(theirs)):
            mine.source = theirs.source
    return filled


def count_exercises(nb) -> int:
    return sum(len(solution_blocks(c.source)) + int(is_solution_cell(c)) for c in nb.cells if c.cell_type == "code")


NBGRADER_SCHEMA = 3
_CHECK_VAR = re.compile(r"^(\w+)\s*=\s*exercises\.check\(", re.M)


def nbgrader_id(exercise: str) -> str:
    """nbgrader's grade ids allow letters, digits, _ and - only: nb02.distance -> nb02_distance."""
    return exercise.replace(".", "_")


def make_nbgrader_source(nb):
    """The nbgrader source edition of ``nb`` (solutions kept, outputs cleared, nbgrader metadata)."""
    from .exercises import exercise_of, get

    out = nbformat.reads(nbformat.writes(nb), as_version=4)
    pending: list = []  # solution cells waiting for the check cell that names their exercise
    for cell in out.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        exercise = exercise_of(cell)
        if BEGIN in cell.source or is_solution_cell(cell):
            pending.append(cell)
        elif exercise:
            match = _CHECK_VAR.search(cell.source)
            if not match:
                raise TutorialError(f"check cell of {exercise} does not assign `name = exercises.check(...)`")
            cell.source += f"\n{match.group(1)}.require()  # nbgrader: this cell fails when the check does not pass"
            cell.metadata["nbgrader"] = {"grade": True, "grade_id": nbgrader_id(exercise), "locked": True,
                                         "points": get(exercise).points, "schema_version": NBGRADER_SCHEMA,
                                         "solution": False, "task": False}
            for k, solution in enumerate(pending, start=1):
                solution.metadata["nbgrader"] = {"grade": False, "grade_id": f"{nbgrader_id(exercise)}-solution{k}",
                                                 "locked": False, "schema_version": NBGRADER_SCHEMA,
                                                 "solution": True, "task": False}
            pending = []
    if pending:
        raise TutorialError(f"{len(pending)} solution cell(s) with no check cell after them")
    out.metadata["tutorial_edition"] = "nbgrader-source"
    return out


NBGRADER_CONFIG = """\
# nbgrader course folder written by `python -m tutorial_lib.student ... --nbgrader`.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
c.Execute.timeout = 900          # seconds per cell (nbgrader's default, 30 s, is too short for training)
"""


def write_nbgrader_course(source: Path, target: Path) -> list[Path]:
    from .exercises import exercise_of

    written = []
    for path in sorted(Path(source).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        if not any(exercise_of(c) for c in nb.cells):
            continue
        folder = Path(target) / "source" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(make_nbgrader_source(nb), str(folder / path.name))
        written.append(folder / path.name)
    (Path(target) / "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(root=str(Path(target).resolve()), stub=STUB))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder of source notebooks")
    parser.add_argument("target", type=Path, help="folder for the student notebooks")
    parser.add_argument("--nbgrader", type=Path, default=None, help="also write an nbgrader course folder here")
    args = parser.parse_args(argv)
    args.target.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.source.glob("[0-9][0-9]_*.ipynb")):
        student, count = make_student(nbformat.read(str(path), as_version=4))
        nbformat.write(student, str(args.target / path.name))
        print(f"{args.target / path.name}: {count} exercise(s)")
    if args.nbgrader:
        for path in write_nbgrader_course(args.source, args.nbgrader):
            print(f"{path}: nbgrader source edition")
    return 0


if __name__ == "__main__":
    sys.exit(main())
