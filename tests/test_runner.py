"""The runner behind `make run`: executes notebooks, prints the claims table, fails on a broken claim."""

import argparse

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tutorial_lib import runner


def _notebook(path, value, crash=False, known_failure=None, grid=None):
    params = new_code_cell('import os\nPROFILE = os.environ.get("TUTORIAL_PROFILE", "laptop")\nSEED = 0\nDEVICE = "auto"\n'
                            f'VALUE = {value}' + (f"\nROBUST_GRID = {grid!r}" if grid is not None else ""))
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell("raise RuntimeError('boom')" if crash else "x = 1")
    claim = new_code_cell(
        "from tutorial_lib.profiles import ProfileSet\nfrom tutorial_lib.results import Results\n"
        "cfg = ProfileSet('t', smoke={}, laptop={}, gpu={}).resolve(PROFILE)\n"
        f"run = Results({path.stem!r}, cfg, SEED)\nrun.claim('value at least 1', VALUE, 1.0)\n"
        + (f"run.claim('value at least 3', VALUE, 3.0, known_failure={known_failure!r})\n" if known_failure else "")
        + "run.finish()")
    nbformat.write(new_notebook(cells=[new_markdown_cell("# t"), params, body, claim],
                                metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
                   str(path))
    return path


@pytest.mark.notebook
def test_runner_reports_and_fails_correctly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path / "results"))
    good = _notebook(tmp_path / "01_good.ipynb", 2.0)
    assert runner.main([str(good), "--profile", "laptop", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "01_good" in out and "value at least 1" in out and "OK: 1 notebook(s)" in out
    assert "0/4 cells, 0 s | t" in out and "done in" in out  # 4: papermill adds the injected parameters
    assert (tmp_path / "out" / "01_good.ipynb").exists()

    bad = _notebook(tmp_path / "02_bad.ipynb", 0.5)
    crash = _notebook(tmp_path / "03_crash.ipynb", 2.0, crash=True)
    assert runner.main([str(bad), str(crash), "--profile", "laptop", "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "NOT OK" in out and "03_crash" in out and "boom" in out and "ClaimFailed" in out
    bad_rows = [line for line in out.splitlines() if line.startswith("02_bad ")]
    assert bad_rows and bad_rows[0].rstrip().endswith("fails")  # the failed claim is in the table


def _usage_error(argv, capsys) -> str:
    """Run the CLI, expect exit status 2, return stderr (and check nothing went to stdout)."""
    with pytest.raises(SystemExit) as exit_info:
        runner.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err


def test_runner_usage_errors_are_one_line(tmp_path, capsys):
    nb = _notebook(tmp_path / "01_ok.ipynb", 2.0)
    err = _usage_error([str(nb), "--profile", "laptopp"], capsys)
    assert err == "runner: error: unknown profile 'laptopp'; choose one of smoke, laptop, gpu\n"
    assert _usage_error([str(nb), "--jobs", "0"], capsys) == "runner: error: --jobs must be at least 1, got 0\n"
    err = _usage_error([str(tmp_path / "missing.ipynb"), "--profile", "smoke"], capsys)
    assert err.count("\n") == 1 and "no such notebook" in err and "missing.ipynb" in err
    err = _usage_error([str(nb), "-p", "FORGET_CLASS"], capsys)  # argparse's own: usage, then the error
    assert err.splitlines()[-1].startswith("runner: error: argument -p/--parameter: expected NAME=VALUE")


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_lines_throttled_and_per_section(capsys):
    from nbformat.v4 import new_notebook as nb_

    clock = _Clock()
    progress = runner.Progress(every=10.0, indent="", clock=clock)
    cells = [new_markdown_cell("# Title\nintro"), new_code_cell("a"), new_code_cell("b"),
             new_markdown_cell("text\n## Training"), new_code_cell("c"), new_code_cell("  "), new_code_cell("d")]
    hooks = progress.hooks()
    hooks["on_notebook_start"](notebook=nb_(cells=cells))
    steps = [0, 3, 0, 4, 20, 0, 2]  # seconds each cell takes
    for index, (cell, seconds) in enumerate(zip(cells, steps)):
        hooks["on_cell_start"](cell=cell, cell_index=index)
        clock.now += seconds
        if cell.cell_type == "code" and cell.source.strip():
            hooks["on_cell_executed"](cell=cell, cell_index=index, execute_reply={})
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["0/4 cells, 0 s | Title",      # first section
                     "2/4 cells, 7 s | Training",   # new section
                     "3/4 cells, 27 s | Training"]  # 20 s since the last line; not again 2 s later


@pytest.mark.notebook
def test_runner_passes_parameters(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path / "results"))
    bad = _notebook(tmp_path / "02_bad.ipynb", 0.5)
    assert runner.main([str(bad), "--profile", "laptop", "--out", str(tmp_path / "out"), "-p", "VALUE=3.5"]) == 0
    assert "OK: 1 notebook(s)" in capsys.readouterr().out


@pytest.mark.notebook
def test_runner_known_failure_passes_unexpected_hold_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path / "results"))
    nb = _notebook(tmp_path / "04_known.ipynb", 2.0, known_failure="holds in 0 of 2 seeds")
    assert runner.main([str(nb), "--profile", "laptop", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("04_known ")]
    assert rows[1].rstrip().endswith("known failure")
    assert "OK: 1 notebook(s), 2 claim(s) at profile 'laptop': 1 holds, 1 known failure; " in out
    assert runner.main([str(nb), "--out", str(tmp_path / "out"), "-p", "VALUE=4.0"]) == 0
    out = capsys.readouterr().out
    assert "UNEXPECTED HOLD: 04_known: 'value at least 3'" in out and "1 unexpected hold" in out


def test_parse_parameter():
    assert runner.parse_parameter("FORGET_CLASS=4") == ("FORGET_CLASS", 4)
    assert runner.parse_parameter("X = [1, 2]") == ("X", [1, 2])
    assert runner.parse_parameter("NAME=fallback") == ("NAME", "fallback")
    for bad in ("FORGET_CLASS", "=4", "2X=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
            runner.parse_parameter(bad)


def test_longest_first_uses_the_last_runs_wall_times(tmp_path):
    import json

    results = tmp_path / "results"
    results.mkdir()
    for stem, wall, profile in (("01_a", 10.0, "laptop"), ("02_b", 90.0, "laptop"), ("03_c", 500.0, "smoke")):
        (results / f"{stem}.json").write_text(json.dumps({"notebook": stem, "profile": profile, "wall_seconds": wall}))
    paths = [tmp_path / f"{stem}.ipynb" for stem in ("01_a", "02_b", "03_c", "04_new")]
    # never run at this profile (03 ran only at smoke, 04 never) first in file order, then the longest
    assert [p.stem for p in runner.longest_first(paths, results, "laptop")] == ["03_c", "04_new", "02_b", "01_a"]


@pytest.mark.notebook
def test_runner_runs_notebooks_side_by_side(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path / "results"))
    good = [_notebook(tmp_path / f"0{i}_good.ipynb", 2.0) for i in (1, 2)]
    bad = _notebook(tmp_path / "03_bad.ipynb", 0.5)
    code = runner.main([*map(str, good + [bad]), "--jobs", "2", "--profile", "laptop", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1 and "NOT OK" in out and "(2 at a time)" not in out
    assert all((tmp_path / "out" / nb.name).exists() for nb in good + [bad])
    assert "[01] done in" in out and "[02] done in" in out
    rows = {line.split()[0]: line.rstrip().split()[-1] for line in out.splitlines() if line[:3] in ("01_", "02_", "03_")}
    assert rows == {"01_good": "holds", "02_good": "holds", "03_bad": "fails"}
    assert runner.main([*map(str, good), "-j", "2", "--profile", "laptop", "--out", str(tmp_path / "out")]) == 0
    assert "(2 at a time)" in capsys.readouterr().out
