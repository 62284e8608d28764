"""Notebook hygiene for the committed notebooks.

Policy: notebooks are committed without outputs, except cells tagged ``nbval-check-output``
(small deterministic outputs - data shapes, parameter counts - that nbval re-checks under
``TUTORIAL_PROFILE=smoke``).

    python -m tutorial_lib.nbtools check   notebooks/*.ipynb   # structure + stored-output policy
    python -m tutorial_lib.nbtools strip   notebooks/*.ipynb   # drop every output but the tagged ones
    python -m tutorial_lib.nbtools refresh notebooks/*.ipynb   # run at smoke, keep only tagged outputs
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

CHECK_TAG = "nbval-check-output"
PARAMETERS_TAG = "parameters"
CLAIM_TAG = "claim"
WIDGET_TAG = "widget"
_INTERACT = re.compile(r"\binteract(ive)?\(")
REQUIRED_PARAMETERS = ("PROFILE", "SEED", "DEVICE")


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def read(path: str | os.PathLike):
    return nbformat.read(str(path), as_version=4)


def _clean_metadata(nb) -> None:
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in ("papermill", "execution", "collapsed", "scrolled", "ExecuteTime"):
            cell.metadata.pop(key, None)


def strip(nb) -> None:
    """Remove outputs and execution counts except in ``nbval-check-output`` cells."""
    _clean_metadata(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if CHECK_TAG in tags(cell):
            cell.execution_count = cell.get("execution_count")
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = cell.execution_count
            continue
        cell.outputs = []
        cell.execution_count = None


def problems(nb) -> list[str]:
    """Everything that breaks the notebook policy (empty list: all good)."""
    found = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if PARAMETERS_TAG in tags(c)]
    if len(params) != 1:
        found.append(f"needs exactly one cell tagged '{PARAMETERS_TAG}', found {len(params)}")
    else:
        for name in REQUIRED_PARAMETERS:
            if f"{name} =" not in params[0].source and f"{name}=" not in params[0].source:
                found.append(f"the parameters cell does not set {name}")
        if "TUTORIAL_PROFILE" not in params[0].source:
            found.append("PROFILE should default to the TUTORIAL_PROFILE environment variable")
    claims = [c for c in code if CLAIM_TAG in tags(c)]
    if len(claims) != 1:
        found.append(f"needs exactly one cell tagged '{CLAIM_TAG}', found {len(claims)}")
    elif ".finish(" not in claims[0].source:
        found.append("the claim cell does not call .finish()")
    for i, cell in enumerate(code):
        if _INTERACT.search(cell.source):
            found.append(f"code cell {i} uses ipywidgets interact/interactive (they can hang a headless "
                         f"kernel): use tutorial_lib.plots.explorer")
        if "plots.explorer(" in cell.source and WIDGET_TAG not in tags(cell):
            found.append(f"code cell {i} calls plots.explorer but is not tagged '{WIDGET_TAG}'")
        if cell.get("outputs") and CHECK_TAG not in tags(cell):
            found.append(f"code cell {i} stores outputs but is not tagged '{CHECK_TAG}'")
        if "raises-exception" in tags(cell):
            found.append(f"code cell {i} is tagged 'raises-exception' (papermill stops on it)")
    if not nb.cells or nb.cells[0].cell_type != "markdown" or not nb.cells[0].source.lstrip().startswith("#"):
        found.append("the first cell should be a markdown title")
    return found


def refresh(path: Path) -> None:
    """Execute ``path`` at the smoke profile and store only the tagged cells' outputs."""
    import papermill as pm

    nb = read(path)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / path.name
        env_before = os.environ.get("TUTORIAL_PROFILE")
        os.environ["TUTORIAL_PROFILE"] = "smoke"
        try:
            pm.execute_notebook(str(path), str(out), cwd=str(path.parent), kernel_name="python3",
                                progress_bar=False, execution_timeout=600)
        finally:
            if env_before is None:
                os.environ.pop("TUTORIAL_PROFILE", None)
            else:
                os.environ["TUTORIAL_PROFILE"] = env_before
        executed = read(out)
    by_id = {c.get("id"): c for c in executed.cells}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if CHECK_TAG in tags(cell) and cell.get("id") in by_id:
            done = by_id[cell["id"]]
            cell.outputs = [o for o in done.outputs if o.get("output_type") != "display_data"
                            or "text/plain" in o.get("data", {})]
            cell.execution_count = done.execution_count
    strip(nb)
    nbformat.write(nb, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check", "strip", "refresh"])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        if args.command == "check":
            found = problems(read(path))
            for p in found:
                print(f"{path}: {p}")
            status |= bool(found)
        elif args.command == "strip":
            nb = read(path)
            strip(nb)
            nbformat.write(nb, str(path))
        else:
            refresh(path)
            print(f"refreshed {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
