"""The benchmark's self-contained HTML report.

One file that opens offline in any browser: inline CSS, no scripts, every image embedded as a
base64 ``data:`` URI (so the report can be mailed or archived on its own). Sections: header (data,
settings, versions, wall time), headline sentences and the summary table (lowest dose at which each
method reaches each quality level), the PSNR/SSIM-against-dose plots, one image panel per setting,
and the full results table. All text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recon.io.atomic import atomic_write_text

__all__ = ["ReportContent", "render_report", "write_report", "data_uri"]

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1d232a;
       background: #fafbfc; }
main { max-width: 1400px; margin: 0 auto; padding: 1.2em 2em 3em; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; }
h3 { font-size: 1.02em; margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; background: #fff; }
th, td { border: 1px solid #d0d7de; padding: 0.28em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f0f3f6; }
td.l, th.l { text-align: left; }
table.kv td:first-child { text-align: left; color: #57606a; }
table.kv td { text-align: left; white-space: normal; }
.muted { color: #6e7781; }
.headline { font-size: 1.0em; line-height: 1.5; }
.headline li { margin: 0.15em 0; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots figure { margin: 0; background: #fff; border: 1px solid #d0d7de; padding: 0.5em; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; color: #57606a; margin-top: 0.3em; }
.panel { margin: 0.8em 0 1.6em; background: #fff; border: 1px solid #d0d7de; padding: 0.5em; }
.scroll { overflow-x: auto; }
.na { color: #9a6700; }
table.summary td, table.summary th { white-space: normal; min-width: 7em; }
"""


def data_uri(path: str | Path) -> str:
    """``data:<mime>;base64,...`` of an image file (PNG, SVG or JPEG)."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: cannot embed a {path.suffix or 'suffix-less'} file as an image")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


@dataclass
class ReportContent:
    """Everything the report shows; plain data, so the renderer has no benchmark logic.

    Attributes:
        title: page title and heading.
        subtitle: one line under the heading.
        header: ``(label, value)`` pairs for the data / settings table.
        versions: ``(package, version)`` pairs.
        headlines: sentences ("method M reaches Q at dose D").
        summary_columns / summary_rows: the lowest-dose table (rows of display strings; a cell of
            ``None`` renders as "not reached").
        plots: ``(png path, caption)`` per plot.
        panels: ``(png path, caption)`` per setting.
        result_columns / result_rows: the full results table (values formatted by :func:`_fmt`).
        notes: free-text paragraphs (conventions, how dose is defined).
    """

    title: str
    subtitle: str = ""
    header: list[tuple[str, str]] = field(default_factory=list)
    versions: list[tuple[str, str]] = field(default_factory=list)
    headlines: list[str] = field(default_factory=list)
    summary_columns: list[str] = field(default_factory=list)
    summary_rows: list[list[str | None]] = field(default_factory=list)
    plots: list[tuple[Path, str]] = field(default_factory=list)
    panels: list[tuple[Path, str]] = field(default_factory=list)
    result_columns: list[str] = field(default_factory=list)
    result_rows: list[Mapping[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: Any) -> str:
    """Numbers with sensible precision; empty for missing values."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 100:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.3g}" if a < 10 else f"{v:.2f}"
        return f"{v:.4g}"
    return str(v)


def _kv_table(pairs: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{body}</table>'


def _figure(path: Path, caption: str, css_class: str = "", alt: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return (f'<figure{cls}><img src="{data_uri(path)}" alt="{_e(alt or caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def render_report(c: ReportContent) -> str:
    """The complete HTML document as a string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(c.title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(c.title)}</h1>",
    ]
    if c.subtitle:
        parts.append(f'<p class="muted">{_e(c.subtitle)}</p>')
    parts.append('<h2 id="summary">Summary</h2>')
    if c.headlines:
        parts.append('<ul class="headline">' + "".join(f"<li>{_e(h)}</li>" for h in c.headlines) + "</ul>")
    if c.summary_columns:
        head = "".join(f'<th class="{"l" if i == 0 else ""}">{_e(col)}</th>' for i, col in enumerate(c.summary_columns))
        body = []
        for row in c.summary_rows:
            cells = []
            for i, v in enumerate(row):
                if i == 0:
                    cells.append(f'<td class="l">{_e(v)}</td>')
                elif v is None:
                    cells.append('<td class="na">not reached</td>')
                else:
                    cells.append(f"<td>{_e(v)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(f'<div class="scroll"><table class="summary"><tr>{head}</tr>{"".join(body)}</table></div>')
    for note in c.notes:
        parts.append(f'<p class="muted">{_e(note)}</p>')
    parts.append('<h2 id="data">Data and settings</h2>')
    parts.append(_kv_table(c.header))
    if c.versions:
        parts.append("<h3>Software</h3>" + _kv_table(c.versions))
    if c.plots:
        parts.append('<h2 id="plots">Quality against dose</h2><div class="plots">')
        parts.extend(_figure(p, cap, alt=cap) for p, cap in c.plots)
        parts.append("</div>")
    if c.panels:
        parts.append('<h2 id="panels">Images per setting</h2>')
        parts.extend(_figure(p, cap, css_class="panel", alt=cap) for p, cap in c.panels)
    if c.result_columns:
        parts.append('<h2 id="results">All results</h2><div class="scroll"><table><tr>')
        parts.append("".join(f"<th>{_e(col)}</th>" for col in c.result_columns) + "</tr>")
        for r in c.result_rows:
            cells = []
            for col in c.result_columns:
                v = r.get(col)
                cls = ' class="l"' if isinstance(v, str) else ""
                cells.append(f"<td{cls}>{_e(_fmt(v))}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table></div>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def write_report(path: str | Path, content: ReportContent) -> Path:
    """Render ``content`` and write it to ``path`` atomically."""
    return atomic_write_text(path, render_report(content))
