"""A static HTML site of executed notebooks, with the summary table of their claims on the index.

    python -m tutorial_lib.report --executed executed --results results --out report   # `make report`

Each executed notebook becomes ``report/<name>.html`` (nbconvert); ``report/index.html`` lists every
notebook with its profile, wall time and claims (with values and status: holds, does not hold,
known failure, unexpected hold).
"""

from __future__ import annotations

import argparse
import html
import sys
from datetime import datetime, timezone
from pathlib import Path

from .results import claim_status, load_results

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


def build_index(records: list[dict], pages: dict[str, str], out: Path) -> Path:
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
    declared = f" ({known} declared known failures)" if known else ""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Executed notebooks</title>
<style>{STYLE}</style></head><body>
<h1>Executed notebooks</h1>
<p>{held} of {total} claims hold{declared}. Generated {stamp}. Each notebook computed the values below in its claim cell.</p>
<table><tr><th>notebook</th><th>profile</th><th>wall time</th><th>claim</th><th>value</th><th>threshold</th><th>result</th></tr>
{''.join(rows)}
</table></body></html>"""
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
    exporter = HTMLExporter()
    pages = {}
    for path in notebooks:
        body, _ = exporter.from_notebook_node(nbformat.read(str(path), as_version=4))
        (args.out / f"{path.stem}.html").write_text(body)
        pages[path.stem] = f"{path.stem}.html"
        print(f"{args.out / path.stem}.html")
    records = load_results(args.results) if args.results.exists() else []
    index = build_index(records, pages, args.out)
    print(f"index: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
