"""Writing tables (CSV, LaTeX), figures (PNG, PDF) and the self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_table(folder: Path, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
                ) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, tex_path = folder / f"{name}.csv", folder / f"{name}.tex"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    esc = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#"})
    lines = [r"\begin{tabular}{" + "l" * len(columns) + "}", r"\hline",
             " & ".join(c.translate(esc) for c in columns) + r" \\", r"\hline"]
    lines += [" & ".join(_fmt(v).translate(esc) for v in r) + r" \\" for r in rows]
    lines += [r"\hline", r"\end{tabular}", ""]
    tex_path.write_text("\n".join(lines))
    return [csv_path, tex_path]


def save_figure(fig: Any, folder: Path, name: str) -> tuple[list[Path], bytes]:
    """PNG and PDF; returns the paths and the PNG bytes (for the report)."""
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [png, pdf], buf.getvalue()


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(title: str, sections: list[tuple[str, str]], images: dict[str, bytes]) -> str:
    """One file, no external resources: images are embedded as data URIs."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;max-width:960px;margin:2em auto;"
             "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid "
             "#ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}img{max-width:100%}"
             "</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
        if heading in images:
            data = base64.b64encode(images[heading]).decode()
            parts.append(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def manifest_entry(path: Path, kind: str) -> dict[str, Any]:
    data = path.read_bytes()
    return {"path": str(path), "type": kind, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}
