"""Execute every notebook at the smoke profile with papermill, on a fresh kernel, top to bottom."""

import json
import os
import time
from pathlib import Path

import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SMOKE_LIMIT_S = 120


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_at_smoke(path, tmp_path):
    import papermill as pm

    start = time.perf_counter()
    pm.execute_notebook(str(path), str(tmp_path / path.name), parameters={"PROFILE": "smoke"},
                        cwd=str(path.parent), kernel_name="python3", progress_bar=False,
                        execution_timeout=600)
    wall = time.perf_counter() - start
    print(f"{path.stem}: {wall:.1f} s at smoke")
    folder = Path(os.environ["TUTORIAL_RESULTS_DIR"])
    record = json.loads((folder / f"{path.stem}.json").read_text())
    assert record["profile"] == "smoke" and record["claims"], "the claim cell did not record its claims"
    times = folder / "smoke_wall_times.json"
    data = json.loads(times.read_text()) if times.exists() else {}
    data[path.stem] = round(wall, 1)
    times.write_text(json.dumps(data, indent=2))
    assert wall < SMOKE_LIMIT_S, f"{path.name} took {wall:.0f} s at smoke (limit {SMOKE_LIMIT_S} s)"
