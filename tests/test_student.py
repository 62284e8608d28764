"""The student edition: solutions stubbed, checks fail kindly on stubs and pass on solutions."""

import ast

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


def _loaded_names(source: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _bound_names(source: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_only_checks_and_choices_call_a_stubbed_function(path):
    """The student edition runs like the instructor's everywhere but at the exercises: a function the
    student writes is called only by its check and by the cell that chooses it or the library's
    (``check.choose``); a later cell may use the name only once a choice has rebound it. The smoke
    test (``test_notebooks.py``) runs each stub with its check and its choice."""
    source = nbformat.read(str(path), as_version=4)
    stub, _ = student.make_student(source)
    code = [(i, c) for i, c in enumerate(source.cells) if c.cell_type == "code"]
    for e, cell in code:
        if cell.source == stub.cells[e].source:
            continue
        names = {n.name for n in ast.parse(cell.source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        names |= {t.id for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)
                  for t in n.targets if isinstance(t, ast.Name)}
        for i, later in code:
            if i <= e or not names:
                continue
            tags = later.metadata.get("tags", [])
            used = names & _loaded_names(later.source)
            assert not used or "exercise-check" in tags or ".choose(" in later.source, \
                f"{path.name} cell {i} calls {sorted(used)} of exercise cell {e} outside its check and choice"
            if ".choose(" in later.source:
                names -= _bound_names(later.source)
