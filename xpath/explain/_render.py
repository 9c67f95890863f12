"""Markdown/HTML rendering of report blocks and the atomic write of a report folder."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["atomic_folder", "blocks_to_html", "blocks_to_markdown", "markdown_table"]


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return ""
        a = abs(v)
        return (
            f"{v:.3g}" if (a < 1e-3 and a != 0) or a >= 1e4 else f"{v:.3f}".rstrip("0").rstrip(".")
        )
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return str(v)


def markdown_table(df: pd.DataFrame, *, index: bool = True) -> str:
    """A GitHub-flavoured Markdown table (no ``tabulate`` dependency)."""
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * len(cols)) + "|"]
    for key, row in df.iterrows():
        cells = ([str(key)] if index else []) + [
            _fmt(v).replace("|", "\\|") for v in row.to_numpy()
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def blocks_to_markdown(blocks: list[tuple]) -> str:
    """Render blocks to Markdown.

    Blocks are ``("h1"|"h2", text)``, ``("p", text)``, ``("table", DataFrame)`` and
    ``("img", path, caption)``.
    """
    out = []
    for kind, *rest in blocks:
        if kind == "h1":
            out.append(f"# {rest[0]}")
        elif kind == "h2":
            out.append(f"## {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "table":
            out.append(markdown_table(rest[0]))
        elif kind == "img":
            out.append(f"![{rest[1]}]({rest[0]})")
    return "\n\n".join(out) + "\n"


def blocks_to_html(blocks: list[tuple], *, title: str) -> str:
    body = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "table":
            body.append(
                rest[0].to_html(float_format=lambda v: _fmt(v), na_rep="", border=0, classes="t")
            )
        elif kind == "img":
            body.append(
                f'<figure><img src="{html.escape(rest[0])}" alt="{html.escape(rest[1])}">'
                f"<figcaption>{html.escape(rest[1])}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table.t{border-collapse:collapse;font-size:0.85em}table.t td,table.t th{padding:2px 8px;"
        "border-bottom:1px solid #ddd}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


class atomic_folder:
    """Write into a temporary sibling folder; on success it replaces ``folder`` in one rename.

    On error the temporary folder is removed and an existing ``folder`` is left untouched.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def __enter__(self) -> Path:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.folder.name}.tmp-", dir=self.folder.parent)
        )
        os.chmod(self.tmp, 0o755)  # mkdtemp makes it private (0700); a report folder is not
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.folder.exists():
            old = self.folder.with_name(f".{self.folder.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.folder, old)
        os.replace(self.tmp, self.folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
