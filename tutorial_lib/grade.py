"""Grade a class's submissions of one notebook from the checks' JSON records.

    python -m tutorial_lib.grade SUBMISSIONS --notebook 02 --out graded [-j 2] [--profile smoke]
                                 [--timeout 900] [--scheduler tcp://host:8786] [--source notebooks]

``SUBMISSIONS/<student>/02_*.ipynb`` is one student's notebook. Each submission runs through
papermill in a scratch folder of its own:

* its check cells (tagged ``exercise-check``) are first replaced by the course's own, matched by
  exercise id, so an edited check grades nothing (a removed one is reported as such);
* it gets its own writable checkpoint cache, layered over a read-only shared one
  (``TUTORIAL_SHARED_CACHE``, or ``--shared-cache``): no submission can change another's numbers;
* only the records the checks write (``exercises/<id>.json`` in its results folder) count, never
  printed text.

A submission that raises, runs past ``--timeout`` seconds or deletes files gets its rows and never
stops the others. Results:

* ``OUT/grades.csv``: ``student,exercise,points,max_points,status`` (status: passed, failed,
  not attempted, error, timeout), one row per student and exercise;
* ``OUT/<student>/feedback.html``: each check's message and the hints the student reached, and the
  executed notebook ``OUT/<student>/<notebook>.ipynb`` when the run produced one;
* ``OUT/summary.html``: pass rate per exercise, the most frequent known mistakes, the submissions
  that did not run with their error.

Jobs run in local worker processes (``-j``), or, with ``--scheduler ADDRESS``, on a Dask distributed
cluster (``pip install tutorial_lib[grade]``); the submissions, the course notebooks and the shared
cache must then be at the same paths on the workers (a shared file system).
"""

from __future__ import annotations

import argparse
import collections
import csv
import html
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import nbformat

from .errors import TutorialError, exit_status
from .exercises import CHECK_TAG, RECORD_FOLDER, exercise_of, get

STATUSES = ("passed", "failed", "not attempted", "error", "timeout")
COLUMNS = ("student", "exercise", "points", "max_points", "status")
SHARED_CACHE_ENV = "TUTORIAL_SHARED_CACHE"


class GradingError(TutorialError):
    """Bad input to the grading command (missing folders, no such notebook, no exercises)."""


# ---------------------------------------------------------------------------------------------
# The course notebook and its exercises
# ---------------------------------------------------------------------------------------------

def source_notebook(number: str, source: Path) -> Path:
    found = sorted(Path(source).glob(f"{number}_*.ipynb"))
    if len(found) != 1:
        raise GradingError(f"expected one course notebook {number}_*.ipynb in {source}, found "
                           f"{[p.name for p in found] or 'none'}.")
    return found[0]


def exercises_in(nb) -> list[tuple[str, int]]:
    """(exercise id, points) of every check cell, in notebook order."""
    out = []
    for cell in nb.cells:
        ex = exercise_of(cell)
        if ex:
            out.append((ex, get(ex).points))
    return out


def restore_checks(submission, course) -> list[str]:
    """Put the course's check cells back into ``submission`` (matched by exercise id, in place).
    Returns the exercise ids whose check cell the submission no longer has."""
    originals = {exercise_of(c): c for c in course.cells if exercise_of(c)}
    seen = set()
    for cell in submission.cells:
        ex = exercise_of(cell)
        if ex in originals and ex not in seen:
            cell.source = originals[ex].source
            seen.add(ex)
        elif ex:  # a duplicate, or a check cell of another notebook: neutralised
            cell.source = "# (a duplicated check cell: removed by the grader)"
    return [ex for ex in originals if ex not in seen]


# ---------------------------------------------------------------------------------------------
# One submission
# ---------------------------------------------------------------------------------------------

def _kill_tree(pid: int) -> None:
    """Kill a process and every process it started (the kernel runs in a session of its own)."""
    try:
        import psutil
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)
    except Exception:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def _first_error(path: Path) -> str | None:
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:
        return None
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                first = (cell.source.strip().splitlines() or [""])[0][:80]
                return f"In [{cell.get('execution_count')}] ({first}): {out.get('ename')}: {out.get('evalue')}"
    return None


def grade_one(job: dict[str, Any]) -> dict[str, Any]:
    """Run one submission and collect its check records. Never raises: problems become the result.

    ``job``: student, submission (path or None), course (path), profile, timeout, shared_cache,
    threads, keep (folder for the executed notebook, or None)."""
    student, started = job["student"], time.perf_counter()
    result: dict[str, Any] = {"student": student, "run": "ok", "error": None, "records": {},
                              "missing_checks": [], "seconds": 0.0}
    if not job.get("submission"):
        result.update(run="missing", error=f"no {Path(job['course']).name[:2]}_*.ipynb in the submission folder")
        return result
    scratch = Path(tempfile.mkdtemp(prefix=f"grade-{student}-"))
    try:
        try:
            submission = nbformat.read(job["submission"], as_version=4)
            course = nbformat.read(job["course"], as_version=4)
        except Exception as err:
            result.update(run="error", error=f"the notebook cannot be read: {type(err).__name__}: {err}")
            return result
        result["missing_checks"] = restore_checks(submission, course)
        work = scratch / "work"
        work.mkdir()
        notebook_in = work / Path(job["course"]).name
        notebook_out = scratch / ("executed-" + Path(job["course"]).name)
        nbformat.write(submission, str(notebook_in))
        results = scratch / "results"
        env = {**os.environ, "TUTORIAL_CACHE": str(scratch / "cache"), "TUTORIAL_RESULTS_DIR": str(results),
               "TUTORIAL_PROFILE": job["profile"], "CI": "1", "MPLBACKEND": "Agg",
               "OMP_NUM_THREADS": str(job.get("threads", 1)), "MKL_NUM_THREADS": str(job.get("threads", 1))}
        env.pop("TUTORIAL_RETRAIN", None)
        if job.get("shared_cache"):
            env[SHARED_CACHE_ENV] = str(job["shared_cache"])
        else:
            env.pop(SHARED_CACHE_ENV, None)
        command = [sys.executable, "-m", "papermill", str(notebook_in), str(notebook_out),
                   "-p", "PROFILE", job["profile"], "--cwd", str(work), "--no-progress-bar",
                   "--kernel", "python3"]
        proc = subprocess.Popen(command, env=env, cwd=str(work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, text=True, errors="replace")
        try:
            log, _ = proc.communicate(timeout=job["timeout"])
            if proc.returncode != 0:
                result.update(run="error", error=_first_error(notebook_out) or _tail(log))
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.communicate()
            result.update(run="timeout", error=f"still running after {job['timeout']:g} s: stopped")
        folder = results / RECORD_FOLDER
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                record = json.loads(path.read_text())
                result["records"][record["exercise"]] = record
            except (OSError, ValueError, KeyError, TypeError):
                continue
        if job.get("keep") and notebook_out.exists():
            keep = Path(job["keep"])
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook_out, keep / Path(job["course"]).name)
    except Exception as err:  # the grader itself must go on with the next submission
        result.update(run="error", error=f"grading failed: {type(err).__name__}: {err}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _tail(log: str | None, lines: int = 6) -> str:
    text = [line for line in (log or "").strip().splitlines() if line.strip()]
    return "\n".join(text[-lines:]) or "papermill failed without output"


def rows_for(result: dict[str, Any], exercises: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """One row per exercise: a check's record decides; without one, how the run ended does."""
    rows = []
    for ex, max_points in exercises:
        record = result["records"].get(ex)
        if record is not None and record.get("status") in ("passed", "failed", "not attempted"):
            status = record["status"]
            points = max_points if status == "passed" else 0
        elif result["run"] == "missing":
            status, points = "not attempted", 0
        elif result["run"] in ("error", "timeout"):
            status, points = result["run"], 0
        else:
            status, points = "failed", 0
        rows.append({"student": result["student"], "exercise": ex, "points": points,
                     "max_points": max_points, "status": status})
    return rows


# ---------------------------------------------------------------------------------------------
# The class
# ---------------------------------------------------------------------------------------------

def find_submissions(root: Path, number: str) -> list[tuple[str, Path | None]]:
    if not Path(root).is_dir():
        raise GradingError(f"{root} is not a folder of submissions (expected {root}/<student>/{number}_*.ipynb).")
    out = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = sorted(folder.glob(f"{number}_*.ipynb"))
        out.append((folder.name, found[0] if found else None))
    if not out:
        raise GradingError(f"{root} has no student folders.")
    return out


def grade(submissions: Path, number: str, out: Path, *, source: Path = Path("notebooks"), jobs: int = 1,
          profile: str = "smoke", timeout: float = 900, scheduler: str | None = None,
          shared_cache: str | None = None, verbose: bool = True) -> list[dict[str, Any]]:
    """Grade every submission of notebook ``number``; write grades.csv, feedback and summary; return the rows."""
    import importlib.util

    if importlib.util.find_spec("papermill") is None:
        raise GradingError("grading runs the notebooks with papermill, which is not installed: "
                           "pip install 'tutorial_lib[course]'.")
    number = f"{int(number):02d}" if str(number).isdigit() else str(number)
    course_path = source_notebook(number, Path(source))
    exercises = exercises_in(nbformat.read(str(course_path), as_version=4))
    if not exercises:
        raise GradingError(f"{course_path.name} has no check cells (tagged {CHECK_TAG!r}).")
    shared_cache = shared_cache or os.environ.get(SHARED_CACHE_ENV) or None
    cores = os.cpu_count() or 1
    out = Path(out).resolve()
    work = [{"student": s, "submission": str(p.resolve()) if p else None, "course": str(course_path.resolve()),
             "profile": profile, "timeout": float(timeout), "shared_cache": shared_cache,
             "threads": max(1, cores // max(1, jobs)), "keep": str(out / s)} for s, p in find_submissions(submissions, number)]
    if verbose:
        where = f"on the Dask cluster at {scheduler}" if scheduler else f"with {jobs} local worker(s)"
        print(f"grading {len(work)} submission(s) of {course_path.name} ({len(exercises)} exercises) {where}, "
              f"profile {profile}, timeout {timeout:g} s")
    started = time.perf_counter()
    results = _run_dask(work, scheduler, verbose) if scheduler else _run_local(work, jobs, verbose)
    results.sort(key=lambda r: r["student"])
    rows = [row for r in results for row in rows_for(r, exercises)]
    write_reports(out, course_path.name, exercises, results, rows)
    if verbose:
        print(f"{len(results)} submission(s) graded in {time.perf_counter() - started:.0f} s: {out / 'grades.csv'}, "
              f"{out / 'summary.html'}")
    return rows


def _announce(result: dict[str, Any], verbose: bool) -> None:
    if verbose:
        passed = sum(r.get("status") == "passed" for r in result["records"].values())
        extra = f" ({result['run']}: {result['error'].splitlines()[0]})" if result["error"] else ""
        print(f"  {result['student']}: {passed} check(s) passed, {result['seconds']:.0f} s{extra}", flush=True)


def _run_local(work: list[dict], jobs: int, verbose: bool) -> list[dict]:
    results = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in as_completed([pool.submit(grade_one, job) for job in work]):
            results.append(future.result())
            _announce(results[-1], verbose)
    return results


def _run_dask(work: list[dict], scheduler: str, verbose: bool) -> list[dict]:
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        raise GradingError("--scheduler needs Dask's distributed scheduler: pip install 'tutorial_lib[grade]'.") from None
    results = []
    with Client(scheduler) as client:
        futures = client.map(grade_one, work, pure=False)
        for future in dask_completed(futures):
            results.append(future.result())
            _announce(results[-1], verbose)
    return results


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------

_STYLE = ("<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
          ".passed{color:#176b2c}.failed,.error,.timeout{color:#a4161a}pre{white-space:pre-wrap;background:#f6f6f6;"
          "padding:.5rem}</style>")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{_STYLE}"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def write_reports(out: Path, notebook: str, exercises: list[tuple[str, int]], results: list[dict],
                  rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grades.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    by_student = collections.defaultdict(list)
    for row in rows:
        by_student[row["student"]].append(row)
    for result in results:
        folder = out / result["student"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "feedback.html").write_text(_feedback(notebook, result, by_student[result["student"]]))
    (out / "summary.html").write_text(_summary(notebook, exercises, results, rows))


def _feedback(notebook: str, result: dict, rows: list[dict]) -> str:
    total = sum(r["points"] for r in rows)
    most = sum(r["max_points"] for r in rows)
    body = [f"<p><b>{html.escape(result['student'])}</b>: {total} of {most} points.</p>"]
    if result["error"]:
        body.append(f"<p>The notebook did not run to the end ({html.escape(result['run'])}):</p>"
                    f"<pre>{html.escape(result['error'])}</pre>")
    if result["missing_checks"]:
        body.append("<p>Check cells missing from the submission (they cannot be graded): "
                    + ", ".join(html.escape(x) for x in result["missing_checks"]) + "</p>")
    for row in rows:
        record = result["records"].get(row["exercise"], {})
        title = record.get("title") or get(row["exercise"]).title
        body.append(f"<h2>{html.escape(title)} <small>({html.escape(row['exercise'])})</small></h2>"
                    f"<p class='{row['status'].replace(' ', '-')}'>{html.escape(row['status'])}: "
                    f"{row['points']} of {row['max_points']} points</p>")
        if record.get("message"):
            body.append(f"<pre>{html.escape(record['message'])}</pre>")
        if record.get("mistake"):
            body.append(f"<p>Recognised mistake: <b>{html.escape(record['mistake'])}</b></p>")
        if record.get("hints"):
            body.append("<p>Hints reached:</p><ol>" + "".join(f"<li>{html.escape(h)}</li>" for h in record["hints"])
                        + "</ol>")
    return _page(f"Feedback on {notebook}", "".join(body))


def _summary(notebook: str, exercises: list[tuple[str, int]], results: list[dict], rows: list[dict]) -> str:
    n = len(results)
    body = [f"<p>{n} submission(s).</p><h2>Pass rate per exercise</h2><table><tr><th>exercise</th><th>points</th>"
            + "".join(f"<th>{s}</th>" for s in STATUSES) + "<th>pass rate</th></tr>"]
    for ex, points in exercises:
        counts = collections.Counter(r["status"] for r in rows if r["exercise"] == ex)
        rate = counts["passed"] / n if n else 0.0
        body.append(f"<tr><td>{html.escape(ex)}</td><td>{points}</td>"
                    + "".join(f"<td>{counts[s]}</td>" for s in STATUSES) + f"<td>{rate:.0%}</td></tr>")
    body.append("</table><h2>Most frequent known mistakes</h2>")
    mistakes = collections.Counter((ex, rec["mistake"]) for r in results for ex, rec in r["records"].items()
                                   if rec.get("mistake"))
    if mistakes:
        body.append("<table><tr><th>exercise</th><th>mistake</th><th>submissions</th></tr>"
                    + "".join(f"<tr><td>{html.escape(ex)}</td><td>{html.escape(m)}</td><td>{c}</td></tr>"
                              for (ex, m), c in mistakes.most_common(20)) + "</table>")
    else:
        body.append("<p>None recognised.</p>")
    body.append("<h2>Submissions that did not run</h2>")
    broken = [r for r in results if r["run"] != "ok"]
    if broken:
        body.append("<table><tr><th>student</th><th>how</th><th>error</th></tr>"
                    + "".join(f"<tr><td>{html.escape(r['student'])}</td><td>{html.escape(r['run'])}</td>"
                              f"<td><pre>{html.escape(r['error'] or '')}</pre></td></tr>" for r in broken) + "</table>")
    else:
        body.append("<p>Every submission ran to the end.</p>")
    return _page(f"Grades for {notebook}", "".join(body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path, help="folder with one sub-folder per student")
    parser.add_argument("--notebook", required=True, help="the notebook's number, e.g. 02")
    parser.add_argument("--out", type=Path, required=True, help="folder for grades.csv, feedback and summary")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="submissions run at once (local workers)")
    parser.add_argument("--profile", default="smoke", choices=("smoke", "laptop", "gpu"))
    parser.add_argument("--timeout", type=float, default=900, help="seconds per submission (default 900)")
    parser.add_argument("--scheduler", help="address of a Dask distributed scheduler, e.g. tcp://host:8786")
    parser.add_argument("--source", type=Path, default=None, help="folder of the course notebooks (default: notebooks/)")
    parser.add_argument("--shared-cache", default=None,
                        help=f"read-only cache of trained models for every submission (default: ${SHARED_CACHE_ENV})")
    args = parser.parse_args(argv)
    source = args.source
    if source is None:
        from .results import project_root
        root = project_root()
        source = (root / "notebooks") if root else Path("notebooks")
    return exit_status(lambda: grade(args.submissions, args.notebook, args.out, source=source, jobs=args.jobs,
                                     profile=args.profile, timeout=args.timeout, scheduler=args.scheduler,
                                     shared_cache=args.shared_cache))


if __name__ == "__main__":
    sys.exit(main())
