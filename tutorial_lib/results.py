"""Claim cells: every notebook ends its experiment by checking the paper's effect, with numbers.

::

    run = Results("01_parameter_space_directions", cfg, seed=SEED)   # in the setup cell: starts the clock
    ...
    run.metric("fid_at_gamma0", fid0)
    run.claim("share of class 8 falls by >= 80 %", value=drop, threshold=0.8, op=">=")
    run.finish()     # writes results/<notebook>.json, shows the table, raises if a claim fails

Under ``smoke`` a failing claim is reported (smoke runs are too short to show the effect);
under ``laptop`` and ``gpu`` it raises :class:`ClaimFailed`.

A claim that is known not to reproduce at this scale is declared with the reason and its measured
hold rate (like pytest's xfail)::

    run.claim("PSNR gap paired - unpaired (dB)", gap, 3.0, "<=",
              known_failure="does not reproduce at this scale: holds in 0 of 4 seeds")

Each recorded claim has a ``status``: ``holds``, ``fails``, ``known failure`` (declared, and it
does not hold) or ``unexpected hold`` (declared, and it holds: printed loudly, worth a look). Only
``fails`` stops a run at ``laptop``/``gpu``.
"""

from __future__ import annotations

import json
import math
import operator
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .errors import ClaimFailed, TutorialError
from .profiles import MAX_STEPS_ENV_VAR, step_cap

ENV_VAR = "TUTORIAL_RESULTS_DIR"
ENFORCED_PROFILES = ("laptop", "gpu")
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
STATUSES = ("holds", "fails", "known failure", "unexpected hold")
HOLDING = ("holds", "unexpected hold")


def claim_status(claim: Mapping[str, Any]) -> str:
    """The status of a recorded claim; records written before statuses existed have only ``holds``."""
    return claim.get("status") or ("holds" if claim["holds"] else "fails")


def project_root(start: Path | None = None) -> Path | None:
    """The repository root (a folder with pyproject.toml and tutorial_lib/) above ``start``, if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "tutorial_lib").is_dir():
            return folder
    return None


def results_dir() -> Path:
    """``$TUTORIAL_RESULTS_DIR``, else ``<repository>/results``, else ``./results``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    root = project_root()
    return (root / "results") if root else Path("results")


def _number(value: Any) -> float | int | bool:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item"):
        value = value.item()
    if not isinstance(value, (int, float)):
        raise TutorialError(f"Claims and metrics need numbers, got {value!r}.")
    return value


class Results:
    """Records a notebook's metrics and claims, times the run, writes and shows them."""

    def __init__(self, notebook: str, config, seed: int, device: Any = None):
        self.notebook = notebook
        self.profile = config.name if hasattr(config, "name") else str(config)
        self.config = config.to_dict() if hasattr(config, "to_dict") else {}
        self.seed = int(seed)
        self.device = str(device) if device is not None else "unknown"
        self.step_cap = step_cap()
        self.metrics: dict[str, Any] = {}
        self.claims: list[dict[str, Any]] = []
        self._start = time.perf_counter()
        self.path: Path | None = None

    def metric(self, name: str, value: Any) -> Any:
        """Record a number (or a small dict/list of numbers) worth keeping; returns it."""
        self.metrics[name] = value if isinstance(value, (dict, list, str)) else _number(value)
        return value

    def claim(self, name: str, value: Any, threshold: Any, op: str = ">=",
              known_failure: str | None = None) -> bool:
        """Record the claim ``value op threshold`` (``op`` one of >=, >, <=, <); returns whether it holds.

        ``known_failure``: why the claim is known not to reproduce here, with its measured hold rate
        ("holds in 0 of 5 seeds; ..."). Its status is then ``known failure`` (it does not hold,
        the run goes on) or ``unexpected hold``.
        """
        if op not in _OPS:
            raise TutorialError(f"op must be one of {', '.join(_OPS)}, got {op!r}.")
        if known_failure is not None and not (isinstance(known_failure, str) and known_failure.strip()):
            raise TutorialError("known_failure must say why the claim does not reproduce (a non-empty string).")
        value, threshold = _number(value), _number(threshold)
        holds = bool(_OPS[op](value, threshold)) and not (isinstance(value, float) and math.isnan(value))
        if known_failure is None:
            status = "holds" if holds else "fails"
        else:
            status = "unexpected hold" if holds else "known failure"
        self.claims.append({"name": name, "value": value, "op": op, "threshold": threshold, "holds": holds,
                            "status": status, "known_failure": known_failure})
        return holds

    @property
    def enforced(self) -> bool:
        """Claims stop the notebook at ``laptop`` and ``gpu``, unless the run is capped
        (``TUTORIAL_MAX_STEPS``: too few steps to show any effect)."""
        return self.profile in ENFORCED_PROFILES and not self.step_cap

    @property
    def all_hold(self) -> bool:
        return bool(self.claims) and all(c["holds"] for c in self.claims)

    def table(self):
        import pandas as pd

        frame = pd.DataFrame(self.claims, columns=["name", "value", "op", "threshold", "status"])
        return frame.rename(columns={"name": "claim"})

    def to_dict(self) -> dict[str, Any]:
        from . import __version__

        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "seed": self.seed,
            "device": self.device,
            "wall_seconds": round(time.perf_counter() - self._start, 2),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tutorial_lib": __version__,
            "platform": platform.platform(terse=True),
            "config": self.config,
            "metrics": self.metrics,
            "claims": self.claims,
            "all_hold": self.all_hold,
            "step_cap": self.step_cap,
        }

    def finish(self, display: bool = True) -> dict[str, Any]:
        """Write ``results/<notebook>.json``, show the claims, and enforce them at laptop/gpu."""
        if not self.claims:
            raise TutorialError("finish() called without any claim: a claim cell must check something.")
        record = self.to_dict()
        folder = results_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{self.notebook}.json"
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        os.replace(tmp, self.path)
        if display:
            _show(self.table())
            counts = ", ".join(f"{n} {status}" for status in STATUSES
                               if (n := sum(c["status"] == status for c in self.claims)))
            print(f"{self.notebook} [{self.profile}, seed {self.seed}]: {counts}; "
                  f"{record['wall_seconds']:.0f} s since setup; written to {self.path}")
        for c in self.claims:
            if c["status"] == "known failure":
                print(f"known failure (does not stop the run): {_comparison(c, 'is false')}. {c['known_failure']}")
            elif c["status"] == "unexpected hold":
                print(f"UNEXPECTED HOLD: {_comparison(c, 'is true')}, but it is declared a known failure "
                      f"({c['known_failure']}). Measure it again over seeds (make robust) and update the claim.")
        failed = [c for c in self.claims if c["status"] == "fails"]
        if failed:
            lines = "; ".join(_comparison(c, "is false") for c in failed)
            if self.enforced:
                raise ClaimFailed(f"At profile {self.profile!r} these claims must hold but do not: {lines}")
            why = f"a capped run ({MAX_STEPS_ENV_VAR}={self.step_cap})" if self.step_cap else f"profile {self.profile!r}"
            print(f"({why}: claims are reported, not enforced; not holding: {lines})")
        return record


def _comparison(claim: Mapping[str, Any], verdict: str) -> str:
    def num(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return f"{claim['name']}: {num(claim['value'])} {claim['op']} {num(claim['threshold'])} {verdict}"


def _show(frame) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(frame)
            return
    except ImportError:  # pragma: no cover
        pass
    print(frame.to_string(index=False))


def load_results(folder: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    folder = Path(folder) if folder else results_dir()
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def summary_rows(records: list[Mapping[str, Any]], wall_times: Mapping[str, float] | None = None) -> list[dict]:
    """One row per claim: notebook, profile, wall time, claim, value, threshold, holds (yes/NO), status."""
    rows = []
    for rec in records:
        wall = (wall_times or {}).get(rec["notebook"], rec.get("wall_seconds"))
        for claim in rec["claims"]:
            rows.append({"notebook": rec["notebook"], "profile": rec["profile"],
                         "wall_s": None if wall is None else round(float(wall), 1),
                         "claim": claim["name"], "value": claim["value"],
                         "threshold": f"{claim['op']} {claim['threshold']}",
                         "holds": "yes" if claim["holds"] else "NO", "status": claim_status(claim)})
    return rows


def format_summary(rows: list[Mapping[str, Any]]) -> str:
    """A plain-text table (for terminals and CI logs)."""
    if not rows:
        return "(no results)"
    cols = ["notebook", "profile", "wall_s", "claim", "value", "threshold", "status"]

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    widths = {c: max(len(c), *(len(cell(r[c])) for r in rows)) for c in cols}
    line = "  ".join(c.ljust(widths[c]) for c in cols)
    out = [line, "  ".join("-" * widths[c] for c in cols)]
    out += ["  ".join(cell(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(out)
