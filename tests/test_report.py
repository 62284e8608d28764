import json
import re

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
    assert "1 of 3 claims hold; 1 declared known failure(s)" in index and "no results recorded" in index
    assert '<span class="no">does not hold</span>' in index  # a record without status: derived from holds
    assert '<span class="known">known failure</span>' in index and "holds in 0 of 4 seeds" in index


def test_report_without_executed_notebooks(tmp_path, capsys):
    assert report.main(["--executed", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 1
    assert "make run" in capsys.readouterr().err


def test_report_typesets_formulas_offline(tmp_path):
    executed, out = tmp_path / "executed", tmp_path / "report"
    executed.mkdir()
    nbformat.write(new_notebook(cells=[new_markdown_cell("Direction $\\theta_N - \\theta_G$")]), str(executed / "01_m.ipynb"))
    assert report.main(["--executed", str(executed), "--results", str(tmp_path / "none"), "--out", str(out)]) == 0
    page = (out / "01_m.html").read_text()
    assert '<script src="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,offline">' in page
    assert not re.search(r"https?://[^\s\"']*mathjax", page, re.IGNORECASE)  # no CDN copy of MathJax
    for needed in ("MathJax.js", "config/TeX-AMS-MML_HTMLorMML-full.js", "config/offline.js", "extensions/Safe.js",
                   "jax/output/HTML-CSS/fonts/STIX-Web/fontdata.js", "fonts/HTML-CSS/STIX-Web/woff"):
        assert (out / "mathjax" / needed).exists(), needed
    assert 'webFont: "STIX-Web"' in (out / "mathjax" / "config" / "offline.js").read_text()


def test_report_shows_robustness_tables(tmp_path):
    executed, results, out = tmp_path / "executed", tmp_path / "results", tmp_path / "report"
    executed.mkdir()
    (results / "robust").mkdir(parents=True)
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), str(executed / "02_r.ipynb"))
    claim = {"name": "PUL for class 0", "value": 95.0, "op": ">=", "threshold": 90.0, "known_failure": None}
    runs = [{"label": "c0 s0", "parameters": {"FORGET_CLASS": 0, "SEED": 0}, "wall_seconds": 80.0, "status": "ok",
             "error": None, "claims": [{**claim, "status": "holds"}], "full_claim": True},
            {"label": "c0 s1", "parameters": {"FORGET_CLASS": 0, "SEED": 1}, "wall_seconds": 3.0, "status": "failed",
             "error": "RuntimeError: boom", "claims": [], "full_claim": None}]
    (results / "robust" / "02_r.json").write_text(json.dumps({
        "notebook": "02_r", "profile": "laptop", "date": "2025-01-02T03:04:05+00:00",
        "grid": {"FORGET_CLASS": [0], "SEED": [0, 1]}, "complete": True, "runs": runs, "wall_seconds": 83.0,
        "claims": [{"name": "PUL for class *", "known_failure": None, "holding": 1, "measured": 1, "hold_rate": "1 of 1"}],
        "full_claim": {"holding": 1, "measured": 1, "hold_rate": "1 of 1"}}))
    assert report.main(["--executed", str(executed), "--results", str(results), "--out", str(out)]) == 0
    index = (out / "index.html").read_text()
    robust = index[index.index("<h2>Robustness</h2>"):]
    assert "<h3>02_r</h3>" in robust and "2025-01-02T03:04:05+00:00" in robust
    assert ">c0 s0</th>" in robust and ">c0 s1</th>" in robust
    assert '<td>PUL for class *</td><td class="yes" title="95 &gt;= 90">yes</td><td class="missing">-</td><td>1 of 1</td>' in robust
    assert "RuntimeError: boom" in robust and "83 s in all" in robust
