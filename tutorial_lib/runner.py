"""Execute notebooks with papermill and print the summary table of their claims.

    python -m tutorial_lib.runner --profile laptop --out executed notebooks/*.ipynb

Exit status 1 if a notebook fails or a claim does not hold (``make run`` relies on this).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from .profiles import check_profile_name
from .results import format_summary, load_results, results_dir, summary_rows


def run_notebook(path: Path, out_dir: Path, profile: str, seed: int | None = None,
                 timeout: int | None = None, log_output: bool = False) -> float:
    """Execute one notebook with papermill into ``out_dir``; return its wall time in seconds."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"PROFILE": profile}
    if seed is not None:
        params["SEED"] = seed
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
            run_notebook(nb, args.out, profile, args.seed, args.timeout)
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
