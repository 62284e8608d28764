"""`make robust`: grids read from the parameters cell, one run per point, hold rates per claim."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from test_runner import _notebook
from tutorial_lib import robust


def test_read_grid_statically(tmp_path):
    grid = {"FORGET_CLASS": [0, 1, 4], "SEED": [0, 1]}
    assert robust.read_grid(_notebook(tmp_path / "01_a.ipynb", 2.0, grid=grid)) == grid
    assert robust.read_grid(_notebook(tmp_path / "02_b.ipynb", 2.0)) is None
    # never executed: a grid next to code that would fail is still read
    params = new_code_cell("raise SystemExit('not run')\nROBUST_GRID = {'SEED': (0, 1)}")
    params.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[params]), str(tmp_path / "03_c.ipynb"))
    assert robust.read_grid(tmp_path / "03_c.ipynb") == {"SEED": [0, 1]}
    for bad in ("[0, 1]", "{'SEED': []}", "{'SEED': list(range(3))}", "{'not a name': [1]}"):
        params.source = f"ROBUST_GRID = {bad}"
        nbformat.write(new_notebook(cells=[params]), str(tmp_path / "04_d.ipynb"))
        with pytest.raises(robust.GridError, match="04_d.ipynb: ROBUST_GRID"):
            robust.read_grid(tmp_path / "04_d.ipynb")


def test_points_and_labels():
    grid = {"FORGET_CLASS": [0, 1], "SEED": [0, 1], "SHOT": [0.5], "FORGET_TASK": ["haze"]}
    points = robust.grid_points(grid)
    assert [(p["FORGET_CLASS"], p["SEED"]) for p in points] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    short = robust.abbreviations(grid)
    assert short == {"FORGET_CLASS": "c", "SEED": "se", "SHOT": "sh", "FORGET_TASK": "t"}
    assert robust.point_label(points[1], short) == "c0 se1 sh0.5 t=haze"
    assert robust.abbreviations(["FORGET_CLASS", "SEED"]) == {"FORGET_CLASS": "c", "SEED": "s"}
    assert robust.abbreviations(["FORGET_CLASS", "KEEP_CLASS"]) == {"FORGET_CLASS": "forget_class",
                                                                     "KEEP_CLASS": "keep_class"}
    assert robust.common_name(["drop of class 0 share", "drop of class 1 share"]) == "drop of class * share"
    assert robust.common_name(["same", "same"]) == "same"


def _run(label, statuses, wall=1.0, failed=False):
    claims = [{"name": f"claim {i}", "value": 1.0, "op": ">=", "threshold": 1.0, "status": s,
               "known_failure": "holds in 0 of 3 seeds" if s in ("known failure", "unexpected hold") else None}
              for i, s in enumerate(statuses)]
    return {"label": label, "parameters": {}, "wall_seconds": wall, "status": "failed" if failed else "ok",
            "error": "RuntimeError: boom" if failed else None, "claims": [] if failed else claims,
            "full_claim": None if failed else all(c["status"] == "holds" for c in claims if not c["known_failure"])}


def test_summary_counts_unexpected_holds_and_skips_failed_runs():
    runs = [_run("s0", ["holds", "known failure"]), _run("s1", ["fails", "unexpected hold"]),
            _run("s2", [], failed=True)]
    claims, full = robust.summarise(runs)
    assert [c["hold_rate"] for c in claims] == ["1 of 2", "1 of 2"]
    assert claims[1]["known_failure"] == "holds in 0 of 3 seeds" and claims[0]["known_failure"] is None
    assert full == {"holding": 1, "measured": 2, "hold_rate": "1 of 2"}
    data = {"runs": runs, "claims": claims, "full_claim": full, "wall_seconds": 3.0}
    lines = robust.format_table(data).splitlines()
    assert lines[0].split() == ["claim", "s0", "s1", "s2", "hold", "rate"]
    assert lines[2].split()[2:] == ["yes", "NO", "-", "1", "of", "2"]
    assert lines[3].split()[2:6] == ["(no)", "(YES)", "-", "1"] and "declared known failure" in lines[3]
    assert lines[4].split() == ["full", "claim", "yes", "NO", "failed", "1", "of", "2"]
    assert lines[5].split() == ["wall", "s", "1", "1", "1", "3", "in", "all"]
    assert "failed run s2: RuntimeError: boom" in lines[-1]


@pytest.mark.notebook
@pytest.mark.parametrize("jobs", [1, 2])
def test_robust_runs_the_grid_and_keeps_going(tmp_path, monkeypatch, capsys, jobs):
    monkeypatch.chdir(tmp_path)
    nb = _notebook(tmp_path / "02_grid.ipynb", 2.0, grid={"VALUE": [2.0, 0.5]},
                   known_failure="holds in 0 of 2 runs")
    _notebook(tmp_path / "03_none.ipynb", 2.0)
    assert robust.main([str(nb), str(tmp_path / "03_none.ipynb"), "--out", "res", "--executed", "ex",
                        "--jobs", str(jobs)]) == 0
    out = capsys.readouterr().out
    assert "03_none: no ROBUST_GRID in its parameters cell; skipped" in out
    assert "run 2/2: v0.5" in out
    assert "cells," in out or jobs > 1  # the runner's progress lines (printed by the worker processes at jobs > 1)
    data = json.loads((tmp_path / "res" / "02_grid.json").read_text())
    assert data["notebook"] == "02_grid" and data["profile"] == "laptop" and data["complete"]
    assert data["grid"] == {"VALUE": [2.0, 0.5]} and data["date"].endswith("+00:00")
    first, second = data["runs"]
    assert first["parameters"] == {"VALUE": 2.0} and first["status"] == "ok" and first["full_claim"]
    assert second["status"] == "ok" and second["full_claim"] is False  # ClaimFailed: measured, not failed
    assert [c["status"] for c in second["claims"]] == ["fails", "known failure"]
    assert [c["hold_rate"] for c in data["claims"]] == ["1 of 2", "0 of 2"]
    assert data["full_claim"]["hold_rate"] == "1 of 2"
    assert (tmp_path / "ex" / "02_grid" / "v2.0.ipynb").exists() and (tmp_path / "ex" / "02_grid" / "v0.5.ipynb").exists()
    assert (tmp_path / "res" / "02_grid" / "v0.5" / "02_grid.json").exists()  # one results folder per run
    table = out[out.index("02_grid [laptop], 2 runs"):]
    assert "value at least 1  yes   NO    1 of 2" in table and "full claim" in table


def test_robust_records_a_crashed_run_and_goes_on(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(path, out_dir, profile, timeout=None, parameters=None, out_name=None, **_):
        calls.append(parameters)
        raise RuntimeError("kernel died\nsecond line: boom")

    monkeypatch.setattr(robust, "run_notebook", fake_run)
    nb = _notebook(tmp_path / "05_crash.ipynb", 2.0, grid={"SEED": [0, 1]})
    assert robust.main([str(nb), "--out", str(tmp_path / "res"), "--executed", str(tmp_path / "ex")]) == 0
    data = json.loads((tmp_path / "res" / "05_crash.json").read_text())
    assert calls == [{"SEED": 0}, {"SEED": 1}]
    assert [(r["label"], r["status"], r["error"]) for r in data["runs"]] == [
        ("s0", "failed", "second line: boom"), ("s1", "failed", "second line: boom")]
    assert data["full_claim"]["hold_rate"] == "0 of 0"
    assert "FAILED after" in capsys.readouterr().out


def _usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        robust.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("robust: error: ")
    return err


def test_robust_usage_errors(tmp_path, capsys):
    nb = _notebook(tmp_path / "02_a.ipynb", 2.0, grid={"SEED": [0]})
    assert "unknown profile 'fast'" in _usage_error([str(nb), "--profile", "fast"], capsys)
    assert "no notebook matches 07" in _usage_error([str(nb), "--nb", "07"], capsys)
    assert "no such notebook" in _usage_error([str(tmp_path / "09_missing.ipynb")], capsys)
    assert "--jobs must be at least 1" in _usage_error([str(nb), "--jobs", "0"], capsys)
    bad = _notebook(tmp_path / "03_bad.ipynb", 2.0, grid=[0, 1])
    assert "03_bad.ipynb: ROBUST_GRID must be a non-empty dict" in _usage_error([str(bad), str(nb)], capsys)


def test_show_recorded_prints_the_date_and_table_and_says_when_there_is_none(tmp_path, capsys):
    assert robust.show_recorded("99_nothing", tmp_path) is None
    assert "No recorded" in capsys.readouterr().out
    run = {"label": "c1 s0", "status": "ok", "wall_seconds": 12.0, "full_claim": True,
           "claims": [{"name": "PUL", "status": "holds", "known_failure": None}]}
    claims, full = robust.summarise([run])
    data = {"notebook": "99_x", "profile": "laptop", "date": "2026-12-07T10:00:00+00:00", "grid": {"SEED": [0]},
            "runs": [run], "claims": claims, "full_claim": full, "wall_seconds": 12.0}
    (tmp_path / "99_x.json").write_text(json.dumps(data))
    assert robust.show_recorded("99_x", tmp_path)["date"].startswith("2026-12-07")
    out = capsys.readouterr().out
    assert "2026-12-07" in out and "1 of 1" in out and "wall s" not in out


def test_every_recorded_measurement_matches_its_notebooks_grid():
    from pathlib import Path
    for path in sorted(robust.RECORDED.glob("*.json")):
        data = json.loads(path.read_text())
        notebook = Path(__file__).resolve().parents[1] / "notebooks" / f"{path.stem}.ipynb"
        assert notebook.is_file(), path
        assert data["complete"] and data["grid"] == robust.read_grid(notebook), path
