"""A report as a list of blocks, written as one self-contained HTML file plus a markdown twin.

The HTML embeds every figure as a base64 PNG and carries its own few lines of CSS: it opens offline
in any browser, with no script. The markdown twin links the same PNGs, written next to it as
``<stem>-<figure>.png``. Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_core.errors import NasError
from nas_core.io import atomic_write_bytes, output_file


@dataclass
class Facts:
    """A two-column table of named values (the report header)."""

    title: str
    items: list[tuple[str, str]]


@dataclass
class Figure:
    name: str  # file-name part of the PNG next to the markdown twin
    title: str
    png: bytes
    caption: str = ""


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    table_id: str = ""


@dataclass
class Note:
    text: str
    warning: bool = False


@dataclass
class Document:
    title: str
    blocks: list[Facts | Figure | Table | Note] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


def figure_png(fig, dpi: int = 100) -> bytes:
    """The PNG bytes of a matplotlib figure, which is closed afterwards."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def pyplot():
    """matplotlib.pyplot on the Agg backend: reports are drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
table.facts th { width: 14em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
p.caption { color: #555; font-size: 0.9em; margin-top: 0.2em; }
p.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5em 0.8em; }
p.note { color: #333; }
"""


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _html_block(block: Facts | Figure | Table | Note) -> str:
    esc = html.escape
    if isinstance(block, Facts):
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in block.items)
        return f'<h2>{esc(block.title)}</h2>\n<table class="facts">{rows}</table>'
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        caption = f'<p class="caption">{esc(block.caption)}</p>' if block.caption else ""
        return (
            f'<h2>{esc(block.title)}</h2>\n<figure id="fig-{esc(block.name)}"><img alt="{esc(block.title)}" '
            f'src="data:image/png;base64,{data}">{caption}</figure>'
        )
    if isinstance(block, Table):
        head = "".join(f"<th>{esc(c)}</th>" for c in block.columns)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="num">{esc(_cell(v))}</td>' if _is_number(v) else f"<td>{esc(_cell(v))}</td>"
                for v in row
            )
            + "</tr>\n"
            for row in block.rows
        )
        table_id = f' id="{esc(block.table_id)}"' if block.table_id else ""
        return (
            f"<h2>{esc(block.title)}</h2>\n<table{table_id}><thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}</tbody></table>"
        )
    css = "warning" if block.warning else "note"
    return f'<p class="{css}">{esc(block.text)}</p>'


def render_html(document: Document) -> str:
    body = "\n".join(_html_block(b) for b in document.blocks)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(document.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(document.title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _md_cell(value: Any) -> str:
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def _md_block(block: Facts | Figure | Table | Note, stem: str) -> str:
    if isinstance(block, Facts):
        rows = "\n".join(f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in block.items)
        return f"## {block.title}\n\n| | |\n|---|---|\n{rows}\n"
    if isinstance(block, Figure):
        caption = f"\n\n{block.caption}" if block.caption else ""
        return f"## {block.title}\n\n![{block.title}]({stem}-{block.name}.png){caption}\n"
    if isinstance(block, Table):
        head = "| " + " | ".join(block.columns) + " |\n|" + "---|" * len(block.columns)
        rows = "\n".join("| " + " | ".join(_md_cell(v) for v in row) + " |" for row in block.rows)
        return f"## {block.title}\n\n{head}\n{rows}\n"
    return ("> **warning:** " if block.warning else "") + block.text + "\n"


def render_markdown(document: Document, stem: str) -> str:
    return f"# {document.title}\n\n" + "\n".join(_md_block(b, stem) for b in document.blocks)


def write_document(document: Document, html_path: str | Path) -> Path:
    """Write ``html_path``, its markdown twin (same stem, .md) and the twin's PNGs; returns html_path."""
    html_path = Path(html_path)
    stem = html_path.stem
    files = {html_path.with_name(f"{stem}-{figure.name}.png"): figure.png for figure in document.figures()}
    files[html_path.with_suffix(".md")] = render_markdown(document, stem).encode()
    files[html_path] = render_html(document).encode()
    for path in files:  # a folder or a file in the way fails here, before anything is written
        output_file(path)
    new = [path for path in files if not path.exists()]
    try:
        for path, data in files.items():
            atomic_write_bytes(path, data)
    except NasError:
        for path in new:  # no half report: the files this call created go again
            path.unlink(missing_ok=True)
        raise
    return html_path
