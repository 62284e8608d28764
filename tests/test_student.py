"""The student edition: solutions stubbed, checks fail kindly on stubs and pass on solutions."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tutorial_lib import student

from conftest import ROOT

SOURCE = '''def square(x):
    """The exercise."""
    ### BEGIN SOLUTION
    y = x * x
    return y
    ### END SOLUTION
'''
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WITH_EXERCISES = [p for p in NOTEBOOKS if student.count_exercises(nbformat.read(str(p), as_version=4))]


def test_markers_become_stubs_at_the_right_indentation():
    new, count = student.strip_solutions(SOURCE)
    assert count == 1 and "x * x" not in new
    assert '    # YOUR CODE HERE\n    raise NotImplementedError' in new
    compile(new, "cell", "exec")
    with pytest.raises(ValueError, match="unbalanced"):
        student.strip_solutions("### BEGIN SOLUTION\nx = 1\n")


def test_make_student_and_fill_solutions_round_trip():
    tagged = new_code_cell("answer = 42")
    tagged.metadata["tags"] = ["solution"]
    nb = new_notebook(cells=[new_markdown_cell("# T"), new_code_cell(SOURCE), tagged, new_code_cell("print(1)")])
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    stub, count = student.make_student(nb)
    assert count == 2 and student.count_exercises(nb) == 2
    assert "x * x" not in stub.cells[1].source and stub.cells[2].source.startswith("# YOUR CODE HERE")
    assert stub.cells[3].outputs == [] and nb.cells[3].outputs  # the source is untouched
    filled = student.fill_solutions(stub, nb)
    assert [c.source for c in filled.cells] == [c.source for c in nb.cells]


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_student_notebook_has_no_solution_left(path):
    source = nbformat.read(str(path), as_version=4)
    stub, count = student.make_student(source)
    assert 2 <= count <= 6, f"{path.name}: {count} exercises"
    for block in (b for c in source.cells for b in student.solution_blocks(c.source)):
        body = block.strip()
        assert body and all(body not in c.source for c in stub.cells if c.cell_type == "code")
    assert all(not c.get("outputs") for c in stub.cells if c.cell_type == "code")
    filled = student.fill_solutions(stub, source)
    assert [c.source for c in filled.cells] == [c.source for c in source.cells]


def _upto_last_check(nb):
    last = max(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "exercises.check(" in c.source)
    nb.cells = nb.cells[: last + 1]
    return nb


@pytest.mark.notebook
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_student_notebook_runs_and_checks_fail_kindly(path):
    """Executed at smoke up to its last check: only NotImplementedError may occur, every check says NOT YET."""
    from nbclient import NotebookClient

    stub, count = student.make_student(nbformat.read(str(path), as_version=4))
    stub = _upto_last_check(stub)
    for cell in stub.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source += '\nPROFILE = "smoke"'
    NotebookClient(stub, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in stub.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert all(e.ename == "NotImplementedError" for e in errors), [f"{e.ename}: {e.evalue}" for e in errors]
    text = "".join(o.get("text", "") for c in stub.cells if c.cell_type == "code" for o in c.outputs
                   if o.output_type == "stream")
    assert text.count("[NOT YET]") >= count and "[PASSED]" not in text
    assert "Traceback" not in text
