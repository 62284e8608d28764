"""Execute notebooks with papermill and print the summary table of their claims.

    python -m tutorial_lib.runner --profile laptop --out executed notebooks/*.ipynb
    python -m tutorial_lib.runner --seed 1 -p FORGET_CLASS=4 notebooks/02_adapt_then_unlearn.ipynb

``-p NAME=VALUE`` sets any variable of a notebook's parameters cell (VALUE is read as a Python
literal: 4, 0.5, "text", [1, 2]; anything else is passed as a string).

While a notebook runs, a plain-text line reports the cells done and the current section (at most
one line every 10 s, and one at each new section); its wall time follows when it ends.

Exit status 1 if a notebook fails or a claim has status ``fails`` (``make run`` relies on this; a
declared known failure does not count, see :mod:`tutorial_lib.results`); 2 on a
usage error (unknown profile, missing notebook, malformed ``-p``), reported in one line.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
import traceback
from pathlib import Path

from .errors import ProfileError
from .profiles import PROFILE_NAMES, check_profile_name
from .results import STATUSES, format_summary, load_results, results_dir, summary_rows


def parse_parameter(text: str) -> tuple[str, object]:
    """'NAME=VALUE' -> (NAME, VALUE as a Python literal, or the raw string if it is not one)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. FORGET_CLASS=4), got {text!r}")
    try:
        return name, ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return name, value.strip()


class Progress:
    """Progress lines for one notebook run, fed by nbclient's cell hooks (see :meth:`hooks`).

    A line says how many code cells are done out of how many, the time since the start and the
    last markdown heading seen before the running cell. It is printed when a new section starts,
    else at most once every ``every`` seconds. Plain text, flushed: it reads well in CI logs.
    """

    def __init__(self, every: float = 10.0, indent: str = "    ", stream=None, clock=time.monotonic):
        self.every, self.indent, self.stream, self.clock = every, indent, stream, clock
        self.total = self.done = 0
        self.section = ""
        self.start = self.last = clock()
        self._announced = ""

    def hooks(self) -> dict:
        """Keyword arguments for ``papermill.execute_notebook`` (passed on to nbclient)."""
        return {"on_notebook_start": self.notebook_start, "on_cell_start": self.cell_start,
                "on_cell_executed": self.cell_executed}

    def notebook_start(self, notebook, **_) -> None:
        self.total = sum(c.cell_type == "code" and bool(c.source.strip()) for c in notebook.cells)
        self.start = self.last = self.clock()

    def cell_start(self, cell, **_) -> None:
        if cell.cell_type == "markdown":
            headings = [line.lstrip("#").strip() for line in cell.source.splitlines()
                        if line.startswith("#") and line.lstrip("#").startswith(" ")]
            if headings:
                self.section = headings[-1]
        elif cell.source.strip() and self.section != self._announced:
            self._announced = self.section
            self._print()

    def cell_executed(self, **_) -> None:
        self.done += 1
        if self.clock() - self.last >= self.every:
            self._print()

    def line(self) -> str:
        text = f"{self.indent}{self.done}/{self.total} cells, {self.clock() - self.start:.0f} s"
        return f"{text} | {self.section}" if self.section else text

    def _print(self) -> None:
        self.last = self.clock()
        print(self.line(), file=self.stream or sys.stdout, flush=True)


def run_notebook(path: Path, out_dir: Path, profile: str, seed: int | None = None,
                 timeout: int | None = None, log_output: bool = False,
                 parameters: dict | None = None, progress: bool = True,
                 out_name: str | None = None, indent: str = "    ") -> float:
    """Execute one notebook with papermill into ``out_dir / (out_name or path.name)``; return its
    wall time in seconds. ``progress`` prints :class:`Progress` lines while it runs."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile}
    if seed is not None:
        params["SEED"] = seed
    params.update(parameters or {})
    hooks = Progress(indent=indent).hooks() if progress else {}
    start = time.perf_counter()
    pm.execute_notebook(str(path), str(out_dir / (out_name or path.name)), parameters=params,
                        cwd=str(path.parent), kernel_name="python3", progress_bar=False,
                        log_output=log_output, execution_timeout=timeout, **hooks)
    return time.perf_counter() - start


def threads_per_job(jobs: int) -> str:
    """The torch threads (as ``OMP_NUM_THREADS``) of each of ``jobs`` kernels run side by side: its share
    of the CPU cores, at least 1. A notebook that would use more would spin-wait on a core another
    kernel is using."""
    from .runtime import available_cpus

    return str(max(1, available_cpus() // jobs))


def longest_first(notebooks: list[Path], folder: Path, profile: str) -> list[Path]:
    """``notebooks`` ordered by the wall time of their last run at ``profile`` (read from the results
    files in ``folder``), longest first, so that side-by-side runs end close together; notebooks
    never run keep their order, ahead of the others (they may be long)."""
    walls = {}
    for rec in load_results(folder):
        if rec.get("profile") == profile and rec.get("wall_seconds") is not None:
            walls[rec["notebook"]] = float(rec["wall_seconds"])
    return sorted(notebooks, key=lambda nb: -walls.get(nb.stem, float("inf")))


def check_arguments(parser: argparse.ArgumentParser, profile: str, notebooks: list[Path]) -> str:
    """The valid profile name; else exit with status 2 and one line (no traceback, no usage)."""
    try:
        profile = check_profile_name(profile)
    except ProfileError:
        parser.exit(2, f"{parser.prog}: error: unknown profile {profile!r}; "
                       f"choose one of {', '.join(PROFILE_NAMES)}\n")
    missing = [str(nb) for nb in notebooks if not nb.is_file()]
    if missing:
        parser.exit(2, f"{parser.prog}: error: no such notebook: {', '.join(missing)}\n")
    return profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("executed"))
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", default=[], type=parse_parameter,
                        metavar="NAME=VALUE", help="set a variable of the notebooks' parameters cell (repeatable)")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="notebooks run at the same time (each in its own kernel with its share of the CPU "
                             "cores as torch threads, unless OMP_NUM_THREADS is set; default 1). With 2 or more, "
                             "the longest (by the last run's wall time at this profile) start first; two notebooks "
                             "that need the same model train it once (the second waits for it)")
    parser.add_argument("--timeout", type=int, default=1800,
                        help="per-cell timeout in seconds (a hung kernel fails instead of waiting forever)")
    args = parser.parse_args(argv)
    profile = check_arguments(parser, args.profile, args.notebooks)
    if args.jobs < 1:
        parser.exit(2, f"{parser.prog}: error: --jobs must be at least 1, got {args.jobs}\n")
    os.environ.setdefault("TUTORIAL_RESULTS_DIR", str(results_dir().resolve()))
    folder = Path(os.environ["TUTORIAL_RESULTS_DIR"]).resolve()

    notebooks = sorted(args.notebooks)
    if args.jobs > 1:
        notebooks = longest_first(notebooks, folder, profile)
    walls, failures = {}, []

    def run_one(nb: Path) -> None:
        stem = nb.stem
        tag = f"[{stem[:2]}] " if args.jobs > 1 else ""
        stale = folder / f"{stem}.json"
        if stale.exists():
            stale.unlink()
        print(f"=== {nb} [{profile}]", flush=True)
        start = time.perf_counter()
        try:  # absolute paths: papermill changes the process's working folder while a notebook runs
            run_notebook(nb.resolve(), args.out.resolve(), profile, args.seed, args.timeout,
                         parameters=dict(args.parameters), indent=f"    {tag}")
            walls[stem] = time.perf_counter() - start
            print(f"    {tag}done in {walls[stem]:.1f} s -> {args.out / nb.name}", flush=True)
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's error
            walls[stem] = time.perf_counter() - start  # a failed claim still wrote its record
            failures.append(stem)
            text = str(err).strip().splitlines()
            print(f"    {tag}FAILED after {walls[stem]:.1f} s: "
                  f"{' | '.join(text[-3:]) if text else traceback.format_exc()}", flush=True)
        if not stale.exists() and stem not in failures:
            failures.append(stem)
            print(f"    {tag}FAILED: the notebook wrote no results file ({stale}); does it have a claim cell?")

    started = time.perf_counter()
    if args.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        os.environ.setdefault("OMP_NUM_THREADS", threads_per_job(args.jobs))

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(run_one, notebooks))
    else:
        for nb in notebooks:
            run_one(nb)
    total = time.perf_counter() - started

    records = [r for r in load_results(folder) if r["notebook"] in walls]
    rows = summary_rows(records, walls)
    print()
    print(format_summary(rows))
    bad_claims = [r for r in rows if r["status"] == "fails"]
    counts = ", ".join(f"{n} {status}" for status in STATUSES if (n := sum(r["status"] == status for r in rows)))
    print()
    for r in rows:
        if r["status"] == "unexpected hold":
            print(f"UNEXPECTED HOLD: {r['notebook']}: {r['claim']!r} is declared a known failure but holds.")
    if failures or bad_claims:
        print(f"NOT OK: {len(failures)} notebook(s) failed {failures or ''}; "
              f"{len(bad_claims)} claim(s) do not hold ({counts or 'no claims'}); {total:.0f} s in all.")
        return 1
    print(f"OK: {len(walls)} notebook(s), {len(rows)} claim(s) at profile {profile!r}: {counts}; "
          f"{total:.0f} s in all ({args.jobs} at a time).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
