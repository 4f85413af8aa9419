"""write_report: a study's Markdown report, a self-contained HTML page, and CSV/JSON numbers.

Outputs (in the study directory unless ``out_dir`` is given)::

    report.md  report.html  figures/*.png  summary.csv  pairwise.csv  targets.csv  results.json

The HTML embeds every figure as a base64 ``data:`` URI and its CSS inline, so it can be mailed
or attached as one file. Both documents state the mode (--quick or full), the machine the
trials ran on, and the commands that produced them.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import yaml

from archlab.studies.aggregate import StudyResults, results_to_dict
from archlab.studies.runner import RESOLVED
from archlab.studies.sections import (REPORT_SECTIONS, STANDARD_SECTIONS, Figure, ReportContext,
                                      Section, Table, Text)


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    json: Path
    csv: list[Path]


def build_sections(results: StudyResults, figures_dir: Path) -> list[Section]:
    ctx = ReportContext(results, figures_dir)
    names = list(STANDARD_SECTIONS) + [s for s in results.study.report.sections
                                       if s not in STANDARD_SECTIONS]
    sections = []
    for name in names:
        section = REPORT_SECTIONS.get(name)(ctx)
        if section is not None:
            sections.append(section)
    return sections


def provenance(results: StudyResults, report_command: Sequence[str] | None) -> list[str]:
    """Lines saying how the numbers were made: mode, machine, commands."""
    resolved = yaml.safe_load((results.study_dir / RESOLVED).read_text())
    machine = resolved.get("machine") or {}
    mode = ("QUICK mode (--quick: reduced data/epochs/seeds; for a smoke check, not for "
            "conclusions)" if results.quick else "full mode")
    if results.quick and results.study.quick.overrides:
        # Say exactly what was cut, e.g. a test subset makes test.acc noisier than the full one.
        mode += f"; quick overrides: `{' '.join(results.study.quick.overrides)}`"
    changed = list(resolved.get("command_overrides") or [])
    if resolved.get("command_seeds"):
        changed.append(f"--seeds {' '.join(map(str, resolved['command_seeds']))}")
    if changed:
        # Not the study file's settings: whoever reads the numbers must know what differs.
        mode += f"; changed on the command line: `{' '.join(changed)}`"
    lines = [f"Mode: {mode}.",
             f"Seeds: {len(results.trials) and len({t.seed for t in results.trials})} per "
             f"configuration; {len(results.groups)} configurations; {len(results.trials)} trials."]
    if machine:
        load = machine.get("load_1_5_15min")
        lines.append(
            f"Machine (at `study run`): {machine.get('cores')} cores, torch "
            f"{machine.get('torch')}, python {machine.get('python')}, "
            f"{machine.get('cuda') or 'no GPU'}, {machine.get('jobs', 1)} job(s)"
            + (f", load average {load[0]} / {load[1]} / {load[2]}" if load else "")
            + f", {machine.get('platform')}.")
    if results.command:
        lines.append(f"Run command: `{' '.join(results.command)}`")
    shown = list(report_command) if report_command else [Path(sys.argv[0]).name, *sys.argv[1:]]
    lines.append(f"Report written by: `{' '.join(shown)}` ({time.strftime('%Y-%m-%d %H:%M:%S')}).")
    # Re-aggregating needs only the stored runs, not training again.
    lines.append(f"Re-make this report: `archlab study report {results.study_dir}`.")
    return lines


def write_report(results: StudyResults, out_dir: str | Path | None = None,
                 report_command: Sequence[str] | None = None) -> ReportFiles:
    out = Path(out_dir) if out_dir is not None else results.study_dir
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(results, out / "figures")
    title = f"Study: {results.study.name}" + (" (quick)" if results.quick else "")
    header = provenance(results, report_command)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(render_markdown(title, results.study.description, header, sections, out))
    html_path.write_text(render_html(title, results.study.description, header, sections))
    json_path = out / "results.json"
    json_path.write_text(json.dumps(results_to_dict(results), indent=2))
    return ReportFiles(md_path, html_path, json_path, write_csv(results, out))


# ---------------------------------------------------------------------- CSV
def write_csv(results: StudyResults, out: Path) -> list[Path]:
    tables = {"summary.csv": [asdict(r) for r in results.summary],
              "pairwise.csv": [asdict(r) for r in results.pairwise],
              "targets.csv": [_flat_target(r) for r in results.targets]}
    paths = []
    for name, rows in tables.items():
        if not rows:
            continue
        path = out / name
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)  # floats in repr form: they read back exactly
        paths.append(path)
    return paths


def _flat_target(row) -> dict:
    flat = {"group": row.group, "metric": row.metric, "target": row.target,
            "reached": row.reached, "n": row.n}
    for name, s in (("epochs", row.epochs), ("time_s", row.time_s)):
        flat[f"{name}_mean"] = s.mean if s else float("nan")
        flat[f"{name}_std"] = s.std if s else float("nan")
    return flat


# ---------------------------------------------------------------------- Markdown
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, description: str, header: list[str], sections: list[Section],
                    out: Path) -> str:
    lines = [f"# {title}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += [f"- {line}" for line in header] + [""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"*{block.caption}*", ""]
                lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
                lines.append("|" + "---|" * len(block.header))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |"
                          for row in block.rows]
                lines.append("")
            elif isinstance(block, Figure):
                rel = block.path.relative_to(out) if block.path.is_relative_to(out) else block.path
                lines += [f"![{block.caption}]({rel.as_posix()})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- HTML
STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #333; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 4px 9px; text-align: left; }
th { background: #e8eef6; }
tr:nth-child(even) td { background: #f6f6f6; }
caption { caption-side: top; text-align: left; font-style: italic; padding: 4px 0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #555; }
.quick { background: #fff3cd; border: 1px solid #e0c060; padding: .5em 1em; }
ul.meta { color: #444; font-size: 0.92em; }
code { background: #f0f0f0; padding: 1px 4px; }
"""


def _inline(text: str) -> str:
    # Backtick spans become <code>; everything else is escaped text.
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(title: str, description: str, header: list[str],
                sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    if any(line.startswith("Mode: QUICK") for line in header):
        body.append('<p class="quick"><b>Quick mode</b>: reduced data, epochs and seeds. These '
                    'numbers check that the study runs; they are not the study\'s result.</p>')
    if description:
        body.append(f"<p>{_inline(description.strip())}</p>")
    body.append('<ul class="meta">' + "".join(f"<li>{_inline(l)}</li>" for l in header)
                + "</ul>")
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Text):
                body.append(f"<p>{_inline(block.text)}</p>")
            elif isinstance(block, Table):
                cap = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block.header)
                rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
                               + "</tr>" for row in block.rows)
                body.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
                            f"</table>")
            elif isinstance(block, Figure):
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                alt = html.escape(block.caption, quote=True)
                body.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
