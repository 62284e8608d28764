"""The runner behind `make run`: executes notebooks, prints the claims table, fails on a broken claim."""

import argparse

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tutorial_lib import runner


def _notebook(path, value, crash=False):
    params = new_code_cell('import os\nPROFILE = os.environ.get("TUTORIAL_PROFILE", "laptop")\nSEED = 0\nDEVICE = "auto"\n'
                            f'VALUE = {value}')
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell("raise RuntimeError('boom')" if crash else "x = 1")
    claim = new_code_cell(
        "from tutorial_lib.profiles import ProfileSet\nfrom tutorial_lib.results import Results\n"
        "cfg = ProfileSet('t', smoke={}, laptop={}, gpu={}).resolve(PROFILE)\n"
        f"run = Results({path.stem!r}, cfg, SEED)\nrun.claim('value at least 1', VALUE, 1.0)\nrun.finish()")
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
    assert (tmp_path / "out" / "01_good.ipynb").exists()

    bad = _notebook(tmp_path / "02_bad.ipynb", 0.5)
    crash = _notebook(tmp_path / "03_crash.ipynb", 2.0, crash=True)
    assert runner.main([str(bad), str(crash), "--profile", "laptop", "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "NOT OK" in out and "03_crash" in out and "boom" in out and "ClaimFailed" in out
    bad_rows = [line for line in out.splitlines() if line.startswith("02_bad ")]
    assert bad_rows and bad_rows[0].rstrip().endswith("NO")  # the failed claim is in the table


def test_runner_rejects_unknown_profile(tmp_path):
    from tutorial_lib.errors import ProfileError

    with pytest.raises(ProfileError, match="smoke, laptop, gpu"):
        runner.main([str(tmp_path / "x.ipynb"), "--profile", "fast"])


@pytest.mark.notebook
def test_runner_passes_parameters(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path / "results"))
    bad = _notebook(tmp_path / "02_bad.ipynb", 0.5)
    assert runner.main([str(bad), "--profile", "laptop", "--out", str(tmp_path / "out"), "-p", "VALUE=3.5"]) == 0
    assert "OK: 1 notebook(s)" in capsys.readouterr().out


def test_parse_parameter():
    assert runner.parse_parameter("FORGET_CLASS=4") == ("FORGET_CLASS", 4)
    assert runner.parse_parameter("X = [1, 2]") == ("X", [1, 2])
    assert runner.parse_parameter("NAME=fallback") == ("NAME", "fallback")
    for bad in ("FORGET_CLASS", "=4", "2X=1"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
            runner.parse_parameter(bad)
