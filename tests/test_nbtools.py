import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tutorial_lib import nbtools

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _good():
    params = new_code_cell('PROFILE = os.environ.get("TUTORIAL_PROFILE", "laptop")\nSEED = 0\nDEVICE = "auto"')
    params.metadata["tags"] = ["parameters"]
    claim = new_code_cell("run.claim('x', 1, 0)\nrun.finish()")
    claim.metadata["tags"] = ["claim"]
    shape = new_code_cell("print(x.shape)")
    shape.metadata["tags"] = ["nbval-check-output"]
    shape.outputs = [new_output("stream", name="stdout", text="(1, 2)\n")]
    return new_notebook(cells=[new_markdown_cell("# Title"), params, shape, claim])


def test_policy_accepts_a_good_notebook():
    assert nbtools.problems(_good()) == []


def test_policy_finds_violations():
    nb = _good()
    nb.cells[1].metadata["tags"] = []
    nb.cells[3].source = "run.claim('x', 1, 0)"
    nb.cells.append(new_code_cell("1 + 1", outputs=[new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]))
    found = " | ".join(nbtools.problems(nb))
    assert "exactly one cell tagged 'parameters'" in found
    assert "does not call .finish()" in found
    assert "stores outputs but is not tagged" in found


def test_strip_keeps_only_tagged_outputs():
    nb = _good()
    nb.cells.append(new_code_cell("1 + 1", outputs=[new_output("stream", name="stdout", text="2")]))
    nb.metadata["widgets"] = {"state": {}}
    nbtools.strip(nb)
    assert nb.cells[2].outputs and nb.cells[-1].outputs == [] and "widgets" not in nb.metadata


def test_committed_notebooks_follow_the_policy():
    assert NOTEBOOKS, "no notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert nbtools.problems(nb) == [], path.name


def test_policy_refuses_interact_and_untagged_explorers():
    nb = _good()
    nb.cells.append(new_code_cell("widgets.interact(f, x=widgets.IntSlider())"))
    nb.cells.append(new_code_cell("plots.explorer(f, x=widgets.IntSlider())"))
    found = nbtools.problems(nb)
    assert any("interact/interactive" in p for p in found)
    assert any("not tagged 'widget'" in p for p in found)
    nb.cells[-1].metadata["tags"] = ["widget"]
    nb.cells.pop(-2)
    assert nbtools.problems(nb) == []
