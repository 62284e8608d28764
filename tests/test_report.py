import json

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tutorial_lib import report


def test_report_builds_pages_and_index(tmp_path):
    executed, results, out = tmp_path / "executed", tmp_path / "results", tmp_path / "report"
    executed.mkdir()
    results.mkdir()
    nbformat.write(new_notebook(cells=[new_markdown_cell("# A"), new_code_cell("1")]), str(executed / "01_a.ipynb"))
    nbformat.write(new_notebook(cells=[new_markdown_cell("# B")]), str(executed / "02_b.ipynb"))
    (results / "01_a.json").write_text(json.dumps({
        "notebook": "01_a", "profile": "laptop", "wall_seconds": 12.0,
        "claims": [{"name": "psnr gain", "value": 1.5, "op": ">=", "threshold": 1.0, "holds": True},
                   {"name": "quality", "value": 3.0, "op": "<=", "threshold": 2.0, "holds": False},
                   {"name": "gap", "value": 5.0, "op": "<=", "threshold": 3.0, "holds": False,
                    "status": "known failure", "known_failure": "holds in 0 of 4 seeds"}]}))
    assert report.main(["--executed", str(executed), "--results", str(results), "--out", str(out)]) == 0
    index = (out / "index.html").read_text()
    assert (out / "01_a.html").exists() and 'href="01_a.html"' in index
    assert "1 of 3 claims hold (1 declared known failures)" in index and "no results recorded" in index
    assert '<span class="no">does not hold</span>' in index  # a record without status: derived from holds
    assert '<span class="known">known failure</span>' in index and "holds in 0 of 4 seeds" in index


def test_report_without_executed_notebooks(tmp_path, capsys):
    assert report.main(["--executed", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 1
    assert "make run" in capsys.readouterr().err
