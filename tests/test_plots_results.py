import json

import matplotlib.pyplot as plt
import pytest
import torch

import tutorial_lib as tl
from tutorial_lib import plots, results
from tutorial_lib.profiles import ProfileSet

PROFILES = ProfileSet("t", smoke=dict(n=1), laptop=dict(n=2), gpu=dict(n=3))


def test_grid_and_panels():
    plots.set_style()
    grid = plots.image_grid(torch.rand(10, 1, 8, 8), nrow=5)
    assert grid.shape[0] == 3 and grid.shape[1] == 2 * 8 + 3
    ax = plots.show_grid(torch.rand(4, 3, 8, 8), nrow=2, title="x")
    assert ax.get_title() == "x"
    fig = plots.show_panels({"input": torch.rand(2, 3, 8, 8), "output": torch.rand(2, 3, 8, 8)},
                            titles={"output": "PSNR 30 dB"})
    assert len(fig.axes) == 4 and fig.axes[1].get_title() == "output\nPSNR 30 dB"
    plt.close("all")
    with pytest.raises(tl.InputShapeError):
        plots.show_grid(torch.rand(4, 2, 8, 8))
    table = plots.metric_table({"a": {"psnr": 30.123}, "b": {"psnr": 20.0}})
    assert table.loc["a", "psnr"] == 30.12


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path))
    return tmp_path


def test_results_written_and_enforced(results_dir):
    run = results.Results("nb", PROFILES.resolve("laptop"), seed=3)
    run.metric("psnr", torch.tensor(31.5))
    assert run.claim("psnr above 30", 31.5, 30.0, ">=")
    record = run.finish(display=False)
    stored = json.loads((results_dir / "nb.json").read_text())
    assert stored["all_hold"] and stored["metrics"]["psnr"] == 31.5 and stored["profile"] == "laptop"
    assert record["claims"][0]["holds"] is True

    failing = results.Results("nb2", PROFILES.resolve("gpu"), seed=0)
    failing.claim("loss below 1", 2.0, 1.0, "<")
    with pytest.raises(tl.ClaimFailed, match="loss below 1"):
        failing.finish(display=False)
    assert json.loads((results_dir / "nb2.json").read_text())["all_hold"] is False


def test_smoke_reports_without_raising(results_dir, capsys):
    run = results.Results("nb3", PROFILES.resolve("smoke"), seed=0)
    run.claim("accuracy", 0.5, 0.9, ">=")
    run.claim("nan never holds", float("nan"), 0.0, ">=")
    record = run.finish(display=True)
    assert not record["all_hold"] and "not enforced" in capsys.readouterr().out


def test_results_misuse(results_dir):
    run = results.Results("nb4", PROFILES.resolve("smoke"), seed=0)
    with pytest.raises(tl.TutorialError, match="without any claim"):
        run.finish()
    with pytest.raises(tl.TutorialError, match="op must be"):
        run.claim("x", 1, 1, "==")
    with pytest.raises(tl.TutorialError, match="numbers"):
        run.claim("x", "high", 1)


def test_summary_table(results_dir):
    run = results.Results("nb5", PROFILES.resolve("laptop"), seed=0)
    run.claim("c1", 2.0, 1.0)
    run.finish(display=False)
    rows = results.summary_rows(results.load_results(results_dir), {"nb5": 12.34})
    text = results.format_summary(rows)
    assert "nb5" in text and "12.3" in text and ">= 1.0" in text and text.rstrip().endswith("holds")


def test_known_failures_do_not_stop_the_run(results_dir, capsys):
    run = results.Results("nb6", PROFILES.resolve("laptop"), seed=0)
    assert run.claim("gain", 2.0, 1.0)
    assert not run.claim("gap", 5.0, 3.0, "<=", known_failure="holds in 0 of 4 seeds at this scale")
    assert run.claim("tone", 1.0, 0.5, known_failure="holds in 1 of 5 seeds")
    record = run.finish(display=True)  # no ClaimFailed at laptop: nothing has status "fails"
    out = capsys.readouterr().out
    assert [c["status"] for c in record["claims"]] == ["holds", "known failure", "unexpected hold"]
    assert [c["holds"] for c in record["claims"]] == [True, False, True]  # kept for older readers
    assert "known failure (does not stop the run): gap: 5 <= 3 is false. holds in 0 of 4 seeds" in out
    assert "UNEXPECTED HOLD: tone: 1 >= 0.5 is true" in out
    assert list(run.table()["status"]) == ["holds", "known failure", "unexpected hold"]
    assert "1 holds, 1 known failure, 1 unexpected hold" in out

    failing = results.Results("nb7", PROFILES.resolve("laptop"), seed=0)
    failing.claim("gap", 5.0, 3.0, "<=", known_failure="holds in 0 of 4 seeds")
    failing.claim("gain", 0.5, 1.0)
    with pytest.raises(tl.ClaimFailed, match="gain") as err:
        failing.finish(display=False)
    assert "gap" not in str(err.value)
    with pytest.raises(tl.TutorialError, match="known_failure must say why"):
        failing.claim("x", 1, 1, known_failure="  ")


def test_summary_status_and_records_without_status(results_dir):
    old = {"notebook": "nb0", "profile": "laptop", "wall_seconds": 3.0,
           "claims": [{"name": "a", "value": 1.0, "op": ">=", "threshold": 0.5, "holds": True},
                      {"name": "b", "value": 0.1, "op": ">=", "threshold": 0.5, "holds": False}]}
    (results_dir / "nb0.json").write_text(json.dumps(old))
    run = results.Results("nb8", PROFILES.resolve("laptop"), seed=0)
    run.claim("c", 0.1, 0.5, known_failure="holds in 0 of 3 seeds")
    run.finish(display=False)
    rows = results.summary_rows(results.load_results(results_dir))
    assert [(r["claim"], r["status"], r["holds"]) for r in rows] == [
        ("a", "holds", "yes"), ("b", "fails", "NO"), ("c", "known failure", "NO")]
    lines = results.format_summary(rows).splitlines()
    assert lines[0].split()[-1] == "status" and lines[-1].rstrip().endswith("known failure")


def test_capped_run_reports_claims_without_enforcing(tmp_path, monkeypatch):
    from tutorial_lib.profiles import ProfileSet
    from tutorial_lib.results import Results

    monkeypatch.setenv("TUTORIAL_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("TUTORIAL_MAX_STEPS", "5")
    cfg = ProfileSet("t", smoke={"steps": 1}, laptop={"steps": 100}, gpu={"steps": 1000}).resolve("gpu")
    run = Results("capped", cfg, seed=0)
    run.claim("never true", 0.0, 1.0)
    record = run.finish(display=False)     # no ClaimFailed: five steps cannot show an effect
    assert record["step_cap"] == 5 and record["claims"][0]["status"] == "fails"
    monkeypatch.delenv("TUTORIAL_MAX_STEPS")
    strict = Results("strict", cfg, seed=0)
    strict.claim("never true", 0.0, 1.0)
    with pytest.raises(tl.ClaimFailed):
        strict.finish(display=False)
