"""A static HTML site of executed notebooks, with the summary table of their claims on the index.

    python -m tutorial_lib.report --executed executed --results results --out report   # `make report`

Each executed notebook becomes ``report/<name>.html`` (nbconvert); ``report/index.html`` lists every
notebook with its profile, wall time and claims (with values and status: holds, does not hold,
known failure, unexpected hold), then, for each notebook measured by ``make robust``
(``results/robust/<notebook>.json``), its claim x run table with the hold rates.

Formulas are typeset by a copy of MathJax 2.7 in ``report/mathjax/`` (from the package
jupyter-server-mathjax), so the report reads offline.
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from .results import HOLDING, claim_status, load_results
from .robust import load_robust

# MathJax 2.7 from jupyter-server-mathjax, with its STIX-Web fonts (it ships no TeX fonts);
# config/offline.js is written next to it and tells the HTML-CSS output to use them.
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,offline"
MATHJAX_SKIP = ("a11y", "SVG")  # screen-reader explorer and SVG output: not used by this configuration
OFFLINE_CONFIG = """MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null,
                                  webFont: "STIX-Web", imageFont: null}});
MathJax.Ajax.loadComplete("[MathJax]/config/offline.js");
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .6rem; text-align: left; font-size: .95rem; }
th { background: #f4f4f4; }
.yes { color: #1a7f37; font-weight: 600; } .no { color: #cf222e; font-weight: 600; }
.missing { color: #888; } .known { color: #9a6700; } .unexpected { color: #8250df; font-weight: 600; }
"""


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


STATUS_TEXT = {"holds": ("yes", "holds"), "fails": ("no", "does not hold"),
               "known failure": ("known", "known failure"), "unexpected hold": ("unexpected", "unexpected hold")}


def _status_cell(status: str, reason: str | None = None) -> str:
    css, text = STATUS_TEXT.get(status, ("missing", status))
    note = f'<br><small class="missing">{html.escape(reason)}</small>' if reason else ""
    return f'<td><span class="{css}">{html.escape(text)}</span>{note}</td>'


def copy_mathjax(out: Path) -> Path:
    """Copy MathJax into ``out/mathjax`` (about 6 MB) so that the pages typeset formulas offline."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = out / "mathjax"
    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*MATHJAX_SKIP))
    (target / "config" / "offline.js").write_text(OFFLINE_CONFIG)
    return target


ROBUST_MARKS = {"holds": ("yes", "yes"), "fails": ("no", "no"), "known failure": ("known", "known failure"),
                "unexpected hold": ("unexpected", "unexpected hold")}


def robust_table(data: dict) -> str:
    """One notebook's ``make robust`` measurement: claim x run, hold rate last, then full claim and wall time."""
    runs = data["runs"]
    head = "".join(f'<th title="{html.escape(str(r["parameters"]))}">{html.escape(r["label"])}</th>' for r in runs)
    rows = []
    for i, claim in enumerate(data["claims"]):
        cells = []
        for r in runs:
            if i >= len(r["claims"]):
                cells.append('<td class="missing">-</td>')
                continue
            c = r["claims"][i]
            css, text = ROBUST_MARKS.get(c["status"], ("missing", c["status"]))
            cells.append(f'<td class="{css}" title="{_value(c["value"])} {html.escape(c["op"])} '
                         f'{_value(c["threshold"])}">{text}</td>')
        note = (f'<br><small class="missing">declared known failure: {html.escape(claim["known_failure"])}</small>'
                if claim.get("known_failure") else "")
        rows.append(f"<tr><td>{html.escape(claim['name'])}{note}</td>{''.join(cells)}"
                    f"<td>{html.escape(claim['hold_rate'])}</td></tr>")
    full = {True: '<td class="yes">yes</td>', False: '<td class="no">no</td>', None: '<td class="no">run failed</td>'}
    rows.append(f"<tr><th>full claim</th>{''.join(full[r['full_claim']] for r in runs)}"
                f"<th>{html.escape(data['full_claim']['hold_rate'])}</th></tr>")
    walls = "".join(f"<td>{r['wall_seconds']:.0f} s</td>" for r in runs)
    rows.append(f"<tr><td>wall time</td>{walls}<td>{data['wall_seconds']:.0f} s in all</td></tr>")
    failed = "".join(f"<li>{html.escape(r['label'])}: {html.escape(r['error'] or '')}</li>"
                     for r in runs if r["status"] != "ok")
    grid = ", ".join(f"{html.escape(k)} in {html.escape(str(v))}" for k, v in data["grid"].items())
    return (f"<h3>{html.escape(data['notebook'])}</h3><p>{len(runs)} runs at profile "
            f"{html.escape(data['profile'])}, {grid}; measured {html.escape(data['date'])}"
            f"{'' if data.get('complete', True) else ' (incomplete)'}. Hold rate: the runs in which the claim "
            f"holds, of those that measured it.</p><table><tr><th>claim</th>{head}<th>hold rate</th></tr>"
            f"{''.join(rows)}</table>" + (f"<p>Failed runs:</p><ul>{failed}</ul>" if failed else ""))


def build_index(records: list[dict], pages: dict[str, str], out: Path, robust: dict[str, dict] | None = None) -> Path:
    rows = []
    names = sorted(set(pages) | {r["notebook"] for r in records})
    by_name = {r["notebook"]: r for r in records}
    for name in names:
        link = f'<a href="{html.escape(pages[name])}">{html.escape(name)}</a>' if name in pages else html.escape(name)
        rec = by_name.get(name)
        if rec is None:
            rows.append(f'<tr><td>{link}</td><td colspan="6" class="missing">no results recorded</td></tr>')
            continue
        for i, claim in enumerate(rec["claims"]):
            first = i == 0
            status = claim_status(claim)
            rows.append(
                "<tr>"
                + (f'<td rowspan="{len(rec["claims"])}">{link}</td>'
                   f'<td rowspan="{len(rec["claims"])}">{html.escape(rec["profile"])}</td>'
                   f'<td rowspan="{len(rec["claims"])}">{rec.get("wall_seconds", 0):.0f} s</td>' if first else "")
                + f"<td>{html.escape(claim['name'])}</td><td>{_value(claim['value'])}</td>"
                f"<td>{html.escape(claim['op'])} {_value(claim['threshold'])}</td>"
                f"{_status_cell(status, claim.get('known_failure'))}</tr>")
    total = sum(len(r["claims"]) for r in records)
    held = sum(c["holds"] for r in records for c in r["claims"])
    known = sum(claim_status(c) in ("known failure", "unexpected hold") for r in records for c in r["claims"])
    declared = f"; {known} declared known failure(s)" if known else ""
    measured = "".join(robust_table(robust[name]) for name in sorted(robust or {}))
    if measured:
        measured = ("<h2>Robustness</h2><p>Each notebook measured by <code>make robust</code> over the grid "
                    "of parameters it declares (ROBUST_GRID).</p>" + measured)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Executed notebooks</title>
<style>{STYLE}</style></head><body>
<h1>Executed notebooks</h1>
<p>{held} of {total} claims hold{declared}. Generated {stamp}. Each notebook computed the values below in its claim cell.</p>
<table><tr><th>notebook</th><th>profile</th><th>wall time</th><th>claim</th><th>value</th><th>threshold</th><th>result</th></tr>
{''.join(rows)}
</table>{measured}</body></html>"""
    index = out / "index.html"
    index.write_text(page)
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executed", type=Path, default=Path("executed"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("report"))
    args = parser.parse_args(argv)
    notebooks = sorted(args.executed.glob("*.ipynb"))
    if not notebooks:
        print(f"No executed notebooks in {args.executed}/: run `make run` first.", file=sys.stderr)
        return 1
    from nbconvert import HTMLExporter
    import nbformat

    args.out.mkdir(parents=True, exist_ok=True)
    copy_mathjax(args.out)
    exporter = HTMLExporter(mathjax_url=MATHJAX_URL)
    pages = {}
    for path in notebooks:
        body, _ = exporter.from_notebook_node(nbformat.read(str(path), as_version=4))
        (args.out / f"{path.stem}.html").write_text(body)
        pages[path.stem] = f"{path.stem}.html"
        print(f"{args.out / path.stem}.html")
    records = load_results(args.results) if args.results.exists() else []
    robust = load_robust(args.results / "robust") if (args.results / "robust").is_dir() else {}
    index = build_index(records, pages, args.out, robust)
    print(f"index: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
