"""Execute notebooks with papermill and print the summary table of their claims.

    python -m tutorial_lib.runner --profile laptop --out executed notebooks/*.ipynb
    python -m tutorial_lib.runner --seed 1 -p FORGET_CLASS=4 notebooks/02_adapt_then_unlearn.ipynb

``-p NAME=VALUE`` sets any variable of a notebook's parameters cell (VALUE is read as a Python
literal: 4, 0.5, "text", [1, 2]; anything else is passed as a string).

Exit status 1 if a notebook fails or a claim does not hold (``make run`` relies on this).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
import traceback
from pathlib import Path

from .profiles import check_profile_name
from .results import format_summary, load_results, results_dir, summary_rows


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


def run_notebook(path: Path, out_dir: Path, profile: str, seed: int | None = None,
                 timeout: int | None = None, log_output: bool = False,
                 parameters: dict | None = None) -> float:
    """Execute one notebook with papermill into ``out_dir``; return its wall time in seconds."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile}
    if seed is not None:
        params["SEED"] = seed
    params.update(parameters or {})
    start = time.perf_counter()
    pm.execute_notebook(str(path), str(out_dir / path.name), parameters=params, cwd=str(path.parent),
                        kernel_name="python3", progress_bar=False, log_output=log_output,
                        execution_timeout=timeout)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("executed"))
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", default=[], type=parse_parameter,
                        metavar="NAME=VALUE", help="set a variable of the notebooks' parameters cell (repeatable)")
    parser.add_argument("--timeout", type=int, default=1800,
                        help="per-cell timeout in seconds (a hung kernel fails instead of waiting forever)")
    args = parser.parse_args(argv)
    profile = check_profile_name(args.profile)
    os.environ.setdefault("TUTORIAL_RESULTS_DIR", str(results_dir().resolve()))
    folder = Path(os.environ["TUTORIAL_RESULTS_DIR"])

    walls, failures = {}, []
    for nb in sorted(args.notebooks):
        stem = nb.stem
        stale = folder / f"{stem}.json"
        if stale.exists():
            stale.unlink()
        print(f"=== {nb} [{profile}]", flush=True)
        start = time.perf_counter()
        try:
            run_notebook(nb, args.out, profile, args.seed, args.timeout, parameters=dict(args.parameters))
            walls[stem] = time.perf_counter() - start
            print(f"    done in {walls[stem]:.1f} s -> {args.out / nb.name}", flush=True)
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's error
            walls[stem] = time.perf_counter() - start  # a failed claim still wrote its record
            failures.append(stem)
            text = str(err).strip().splitlines()
            print(f"    FAILED after {walls[stem]:.1f} s: "
                  f"{' | '.join(text[-3:]) if text else traceback.format_exc()}", flush=True)
        if not stale.exists() and stem not in failures:
            failures.append(stem)
            print(f"    FAILED: the notebook wrote no results file ({stale}); does it have a claim cell?")

    records = [r for r in load_results(folder) if r["notebook"] in walls]
    rows = summary_rows(records, walls)
    print()
    print(format_summary(rows))
    bad_claims = [r for r in rows if r["holds"] != "yes"]
    print()
    if failures or bad_claims:
        print(f"NOT OK: {len(failures)} notebook(s) failed {failures or ''}; "
              f"{len(bad_claims)} claim(s) do not hold.")
        return 1
    print(f"OK: {len(walls)} notebook(s), {len(rows)} claim(s), all hold at profile {profile!r}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
