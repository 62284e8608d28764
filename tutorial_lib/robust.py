"""How robust are the claims? Run a notebook over a grid of parameters and count where each claim holds.

    python -m tutorial_lib.robust notebooks/0[1-9]_*.ipynb        # `make robust`
    python -m tutorial_lib.robust --nb 02 notebooks/*.ipynb        # `make robust NB=02`

A notebook declares its grid in its parameters cell, as a dict literal::

    ROBUST_GRID = {"FORGET_CLASS": [0, 1, 4, 8, 9], "SEED": [0, 1]}

The grid is read from the notebook's source, never by running it; a notebook without one is
skipped. Each point of the grid (cartesian product, in the declared order) runs at ``laptop``
(``--profile``) through the runner into ``executed/robust/<notebook>/<point>.ipynb``, with a results
folder of its own. A run that fails is recorded with its error line and the next one starts.

``results/robust/<notebook>.json`` keeps each run's parameters, wall time, status and claims, and
each claim's hold rate ("3 of 10": a claim holds, or is an unexpected hold, in 3 of the 10 runs that
measured it). A plain-text table shows claim x run, the "full claim" row (every claim that is not a
declared known failure holds) and the wall times. Exit status 0 whatever the claims do (this is a
measurement); 2 on a usage error.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import re
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import TutorialError
from .results import ENV_VAR, HOLDING, claim_status, load_results
from .runner import check_arguments, run_notebook, threads_per_job

GRID_NAME = "ROBUST_GRID"
MARKS = {"holds": "yes", "fails": "NO", "known failure": "(no)", "unexpected hold": "(YES)"}
LEGEND = ("yes / NO: the claim holds / does not; -: not measured (the run failed);\n"
          "(no) / (YES): a declared known failure does not hold, as declared / holds unexpectedly")


class GridError(TutorialError, ValueError):
    """A notebook's ROBUST_GRID is not a dict literal of parameter name -> non-empty list of values."""


def read_grid(path: Path) -> dict[str, list] | None:
    """The ``ROBUST_GRID`` assigned in the notebook's parameters cell (read with ``ast``), or None."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or "parameters" not in cell.metadata.get("tags", []):
            continue
        for node in ast.parse(cell.source).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == GRID_NAME):
                try:
                    grid = ast.literal_eval(node.value)
                except (ValueError, TypeError):
                    raise GridError(f"{path.name}: {GRID_NAME} must be a literal dict "
                                    f"(names and values only, no expressions).") from None
                return _checked(path, grid)
    return None


def _checked(path: Path, grid: Any) -> dict[str, list]:
    if not isinstance(grid, dict) or not grid:
        raise GridError(f"{path.name}: {GRID_NAME} must be a non-empty dict, got {grid!r}.")
    for name, values in grid.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise GridError(f"{path.name}: {GRID_NAME} keys must be parameter names, got {name!r}.")
        if not isinstance(values, (list, tuple)) or not values:
            raise GridError(f"{path.name}: {GRID_NAME}[{name!r}] must be a non-empty list, got {values!r}.")
    return {name: list(values) for name, values in grid.items()}


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination, the last parameter varying fastest: {"A": [0, 1], "B": [5]} -> A=0,B=5; A=1,B=5."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def abbreviations(names) -> dict[str, str]:
    """FORGET_CLASS -> c, SEED -> s: the first letters of each name's last word, as few as keep them apart."""
    words = {n: n.split("_")[-1].lower() or n.lower() for n in names}
    length = dict.fromkeys(words, 1)
    while True:
        short = {n: w[:length[n]] for n, w in words.items()}
        clashing = [n for n in words if list(short.values()).count(short[n]) > 1 and length[n] < len(words[n])]
        if not clashing:
            break
        for n in clashing:
            length[n] += 1
    return short if len(set(short.values())) == len(short) else {n: n.lower() for n in words}


def point_label(point: dict[str, Any], short: dict[str, str]) -> str:
    """{"FORGET_CLASS": 0, "SEED": 1} -> "c0 s1" (a value that is not a number: "t=haze")."""
    def one(name, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{short[name]}{value}"
        return f"{short[name]}={value if isinstance(value, str) else repr(value).replace(' ', '')}"

    return " ".join(one(name, value) for name, value in point.items())


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", label).strip("_") or "point"


def _error_line(err: Exception) -> str:
    if getattr(err, "ename", None):  # papermill's PapermillExecutionError: the cell's exception
        return f"{err.ename}: {err.evalue}".strip()
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__


def run_point(path: Path, point: dict[str, Any], label: str, profile: str, executed: Path,
              results: Path, timeout: int | None = None) -> dict[str, Any]:
    """Run one grid point with its own results folder; return its record (never raises on a failed run).

    The run is ``ok`` when the notebook ended, or stopped only because a claim failed
    (``ClaimFailed`` after its results were written): its claims were measured either way.
    """
    slug = _slug(label)
    folder = (results / path.stem / slug).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(folder)  # the kernel inherits it: Results writes here
    start = time.perf_counter()
    error = None
    try:
        run_notebook(path, executed / path.stem, profile, timeout=timeout, parameters=point,
                     out_name=f"{slug}.ipynb")
    except Exception as err:  # a failing run is data: record it and go on
        error = err
    finally:
        wall = time.perf_counter() - start
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old
    records = load_results(folder)
    measured = bool(records) and (error is None or getattr(error, "ename", "") == "ClaimFailed")
    claims = [{key: c.get(key) for key in ("name", "value", "op", "threshold", "known_failure")}
              | {"status": claim_status(c)} for c in (records[0]["claims"] if measured else [])]
    return {"label": label, "parameters": point, "wall_seconds": round(wall, 1),
            "status": "ok" if measured else "failed",
            "error": None if measured else (_error_line(error) if error else "the notebook wrote no results"),
            "executed": str(executed / path.stem / f"{slug}.ipynb"), "claims": claims,
            "full_claim": (all(c["status"] == "holds" for c in claims if not c["known_failure"])
                           if measured else None)}


def common_name(names: list[str]) -> str:
    """One row label for a claim whose name carries run values: the words that differ become '*'."""
    if len(set(names)) <= 1:
        return names[0] if names else "?"
    words = [n.split() for n in names]
    if len({len(w) for w in words}) == 1:
        return " ".join(ws[0] if len(set(ws)) == 1 else "*" for ws in zip(*words))
    return f"{names[0]} (name varies)"


def _rate(holding: int, measured: int) -> dict[str, Any]:
    return {"holding": holding, "measured": measured, "hold_rate": f"{holding} of {measured}"}


def summarise(runs: list[dict[str, Any]]) -> tuple[list[dict], dict]:
    """Per claim (matched by position in the claim cell) and for the full claim: how often it holds."""
    ok = [r for r in runs if r["status"] == "ok"]
    claims = []
    for i in range(max((len(r["claims"]) for r in ok), default=0)):
        measured = [r["claims"][i] for r in ok if i < len(r["claims"])]
        reasons = [c["known_failure"] for c in measured if c["known_failure"]]
        claims.append({"name": common_name([c["name"] for c in measured]),
                       "known_failure": reasons[0] if reasons else None,
                       **_rate(sum(c["status"] in HOLDING for c in measured), len(measured))})
    return claims, _rate(sum(bool(r["full_claim"]) for r in ok), len(ok))


def format_table(data: dict[str, Any], width: int = 48, wall: bool = True) -> str:
    """Claim x run (one column per run) with the hold rate last, then the full claim and (``wall``) wall times."""
    runs = data["runs"]

    def cut(text):
        return text if len(text) <= width else text[:width - 3] + "..."

    rows = [["claim", *(r["label"] for r in runs), "hold rate"]]
    for i, claim in enumerate(data["claims"]):
        cells = [MARKS.get(r["claims"][i]["status"], "?") if i < len(r["claims"]) else "-" for r in runs]
        rate = claim["hold_rate"] + ("  (declared known failure)" if claim["known_failure"] else "")
        rows.append([cut(claim["name"]), *cells, rate])
    rows.append(["full claim", *({True: "yes", False: "NO", None: "failed"}[r["full_claim"]] for r in runs),
                 data["full_claim"]["hold_rate"]])
    if wall:
        rows.append(["wall s", *(f"{r['wall_seconds']:.0f}" for r in runs), f"{data['wall_seconds']:.0f} in all"])
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = [f"{r['label']}: {r['error']}" for r in runs if r["status"] == "failed"]
    return "\n".join(lines + [LEGEND] + [f"failed run {line}" for line in failed])


def robust_notebook(path: Path, grid: dict[str, list], profile: str, out: Path, executed: Path,
                    timeout: int | None = None, jobs: int = 1) -> dict[str, Any]:
    """Run every point of ``grid`` (``jobs`` at a time, each in its own process and kernel with its share
    of the CPU cores as torch threads); write ``out/<notebook>.json`` after each run, the runs in grid
    order; return its data."""
    import concurrent.futures as futures
    import multiprocessing

    points = grid_points(grid)
    short = abbreviations(grid)
    labels = [point_label(p, short) for p in points]
    if len(set(map(_slug, labels))) < len(labels):
        raise GridError(f"{path.name}: two grid points get the same name; use distinct values.")
    data = {"notebook": path.stem, "profile": profile,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "grid": grid,
            "complete": False, "runs": [], "claims": [], "full_claim": _rate(0, 0), "wall_seconds": 0.0}
    out.mkdir(parents=True, exist_ok=True)
    done: dict[int, dict] = {}

    def record(k: int, run: dict) -> None:
        done[k] = run
        if run["status"] == "ok":
            held = sum(c["status"] in HOLDING for c in run["claims"])
            print(f"    {run['label']}: done in {run['wall_seconds']:.1f} s: {held} of {len(run['claims'])} claims hold",
                  flush=True)
        else:
            print(f"    {run['label']}: FAILED after {run['wall_seconds']:.1f} s: {run['error']}", flush=True)
        data["runs"] = [done[i] for i in sorted(done)]
        data["claims"], data["full_claim"] = summarise(data["runs"])
        data["wall_seconds"] = round(sum(r["wall_seconds"] for r in data["runs"]), 1)
        data["complete"] = len(done) == len(points)
        (out / f"{path.stem}.json").write_text(json.dumps(data, indent=2, default=str))

    if jobs <= 1:
        for k, (point, label) in enumerate(zip(points, labels), 1):
            print(f"=== {path.stem} [{profile}] run {k}/{len(points)}: {label}", flush=True)
            record(k, run_point(path, point, label, profile, executed, out, timeout))
        return data
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = threads or threads_per_job(jobs)  # inherited by the kernels
    try:
        with futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = {}
            for k, (point, label) in enumerate(zip(points, labels), 1):
                print(f"=== {path.stem} [{profile}] run {k}/{len(points)}: {label} (queued, {jobs} at a time)",
                      flush=True)
                pending[pool.submit(run_point, path, point, label, profile, executed, out, timeout)] = k
            for future in futures.as_completed(pending):
                record(pending[future], future.result())
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    return data


def load_robust(folder: str | os.PathLike) -> dict[str, dict]:
    """``{notebook: data}`` for every ``<notebook>.json`` written by this module in ``folder``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))}


RECORDED = Path(__file__).resolve().parent / "recorded"


def show_recorded(notebook: str, folder: str | os.PathLike | None = None) -> dict | None:
    """Print the measurement of ``make robust`` kept for ``notebook`` (its date, profile, grid and the
    claim x run table) from ``tutorial_lib/recorded/<notebook>.json``, the copy of
    ``results/robust/<notebook>.json`` that ships with the package; return its data (None if none)."""
    path = Path(folder or RECORDED) / f"{notebook}.json"
    if not path.is_file():
        print(f"No recorded robustness measurement for {notebook} ships with this installation "
              f"(`make robust NB={notebook[:2]}` measures one).")
        return None
    data = json.loads(path.read_text())
    print(f"Recorded by `make robust` on {data['date'][:10]} at the `{data['profile']}` profile, "
          f"{len(data['runs'])} runs over {json.dumps(data['grid'])}; the full claim holds in "
          f"{data['full_claim']['hold_rate']}.")
    print(format_table(data, wall=False))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="robust", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="default: the method notebooks, notebooks/0[1-9]_*.ipynb")
    parser.add_argument("--nb", action="append", default=[], metavar="PREFIX",
                        help="only the notebooks whose name starts with PREFIX, e.g. 02 (repeatable)")
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--out", type=Path, default=Path("results/robust"))
    parser.add_argument("--executed", type=Path, default=Path("executed/robust"))
    parser.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="grid points run at the same time, each in its own process with its share of the CPU "
                             "cores as torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.exit(2, f"{parser.prog}: error: --jobs must be at least 1, got {args.jobs}\n")
    notebooks = sorted(args.notebooks or Path("notebooks").glob("0[1-9]_*.ipynb"))
    if args.nb:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(args.nb))]
    if not notebooks:
        parser.exit(2, f"{parser.prog}: error: no notebook matches {' '.join(args.nb) or 'notebooks/0[1-9]_*.ipynb'}\n")
    profile = check_arguments(parser, args.profile, notebooks)
    grids = {}
    for nb in notebooks:
        try:
            grids[nb] = read_grid(nb)
        except (GridError, SyntaxError) as err:
            parser.exit(2, f"{parser.prog}: error: {err}\n")

    start = time.perf_counter()
    for nb, grid in grids.items():
        if grid is None:
            print(f"--- {nb.stem}: no {GRID_NAME} in its parameters cell; skipped", flush=True)
            continue
        data = robust_notebook(nb, grid, profile, args.out, args.executed, args.timeout, jobs=args.jobs)
        print()
        print(f"{nb.stem} [{profile}], {len(data['runs'])} runs, grid {json.dumps(grid)}:")
        print(format_table(data))
        print(f"written to {args.out / nb.stem}.json", flush=True)
        print()
    print(f"robust: {time.perf_counter() - start:.0f} s in all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
