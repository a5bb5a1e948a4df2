"""Writing tables (CSV, LaTeX with booktabs), figures (PNG, PDF) and the self-contained HTML
report: its provenance block first, then each section's table and figure with a caption
that says what it shows and how it was computed."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from baton.analyze.numbers import fmt, is_number
from baton.fsio import atomic_path


@dataclass
class Section:
    """One part of the report: a table, its caption and (maybe) a figure of it."""

    name: str  # the file name of its table and figure
    heading: str
    caption: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    figure: bytes | None = None
    figure_caption: str = ""
    legend: list[str] = field(default_factory=list)  # the figure's legend entries, as drawn


def _numeric(rows: Sequence[Sequence[Any]], i: int) -> bool:
    """A column of numbers (empty cells aside): right-aligned in LaTeX and HTML."""
    cells = [r[i] for r in rows if r[i] not in ("", None)]
    return bool(cells) and all(is_number(v) for v in cells)


def latex(columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    """A booktabs ``tabular``: text columns left, numbers right-aligned."""
    esc = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                         "{": r"\{", "}": r"\}"})
    spec = "".join("r" if _numeric(rows, i) else "l" for i in range(len(columns)))
    lines = [f"% {caption}"] if caption else []
    lines += [r"% needs \usepackage{booktabs}", r"\begin{tabular}{" + spec + "}", r"\toprule",
              " & ".join(c.translate(esc) for c in columns) + r" \\", r"\midrule"]
    lines += [" & ".join(fmt(v).translate(esc) for v in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def write_table(folder: Path, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                caption: str = "") -> list[Path]:
    """``name.csv`` (numbers as rounded) and ``name.tex``, each written whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, tex_path = folder / f"{name}.csv", folder / f"{name}.tex"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([[fmt(v) if isinstance(v, float) else v for v in r] for r in rows])
    with atomic_path(tex_path) as tmp:
        tmp.write_text(latex(columns, rows, caption))
    return [csv_path, tex_path]


def save_figure(fig: Any, folder: Path, name: str) -> tuple[list[Path], bytes, list[str]]:
    """PNG and PDF; returns the paths, the PNG bytes and the legends' entries (for the
    report, where they are text a reader can search)."""
    legend = list(dict.fromkeys(t.get_text() for ax in fig.axes if ax.get_legend()
                                for t in ax.get_legend().get_texts()))
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [png, pdf], buf.getvalue(), legend


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    num = [_numeric(rows, i) for i in range(len(columns))]
    align = ["num" if n else "text" for n in num]
    head = "".join(f"<th class='{a}'>{html.escape(c)}</th>" for c, a in zip(columns, align,
                                                                               strict=True))
    body = "".join("<tr>" + "".join(f"<td class='{a}'>{html.escape(fmt(v))}</td>"
                                    for v, a in zip(r, align, strict=True)) + "</tr>"
                   for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _link(value: str) -> str:
    if value.startswith(("http://", "https://")):
        return f"<a href='{html.escape(value)}'>{html.escape(value)}</a>"
    return html.escape(value)


STYLE = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
         "padding:4px 8px}th{background:#f4f4f4}.num{text-align:right;"
         "font-variant-numeric:tabular-nums}.text{text-align:left}img{max-width:100%}"
         "caption,figcaption{caption-side:top;text-align:left;color:#444;font-size:.92em;"
         "padding:.3em 0}dl.provenance{display:grid;grid-template-columns:max-content auto;"
         "gap:.2em 1em;background:#f7f7f7;padding:.8em}dl.provenance dt{font-weight:bold}"
         "dl.provenance dd{margin:0}")


def html_report(title: str, provenance: list[tuple[str, str]], sections: list[Section]
                ) -> str:
    """One file, no external resources: images are embedded as data URIs."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             "<section id='provenance'><h2>Provenance</h2><dl class='provenance'>",
             *(f"<dt>{html.escape(k)}</dt><dd>{_link(v)}</dd>" for k, v in provenance),
             "</dl></section>"]
    for s in sections:
        parts.append(f"<section id='{s.name}'><h2>{html.escape(s.heading)}</h2>")
        if s.figure:
            data = base64.b64encode(s.figure).decode()
            parts.append(f"<figure><img alt='{html.escape(s.heading)}' "
                         f"src='data:image/png;base64,{data}'><figcaption>"
                         f"{html.escape(s.figure_caption)}" + (
                             f" <span class='legend'>Legend: {html.escape('; '.join(s.legend))}"
                             "</span>" if s.legend else "") + "</figcaption></figure>")
        parts.append(html_table(s.columns, s.rows, s.caption) + "</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def manifest_entry(path: Path, kind: str) -> dict[str, Any]:
    data = path.read_bytes()
    return {"path": str(path), "type": kind, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}
