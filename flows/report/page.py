"""The page around the figures: the header, the sections, the style, the figures' data and the
script that draws them (figures.js) with plotly.js, which is loaded from beside the page."""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from typing import Any

from flows.report.site import plotly_js_path


def esc(value: Any) -> str:
    """`value` as HTML text: every string of the data goes through here."""
    return html.escape(str(value))


def label(value: Any) -> str:
    """`value` as a figure's label (a name, a hover line): plotly.js renders tags and some
    &-entities in them, so <, > and & are escaped; a quote is left as it is (plotly.js shows
    `&quot;` as written, and a label never lands in an attribute)."""
    return html.escape(str(value), quote=False)


def note(text: str) -> str:
    """A remark in place of (or under) a figure; nothing for no text."""
    return f'<p class="note">{esc(text)}</p>' if text else ""


def section(title: str, intro: str, content: str, section_id: str | None = None) -> str:
    """One part of the page: a heading, a line saying what it shows, then `content` (HTML)."""
    anchor = f' id="{section_id}"' if section_id else ""
    lead = f"<p>{esc(intro)}</p>" if intro else ""
    return f"<section{anchor}><h2>{esc(title)}</h2>{lead}{content}</section>"


def no_runs(env: str) -> str:
    """What a page of no runs shows instead of the figures."""
    return (
        '<section id="no-runs"><h2>No runs yet</h2>'
        f"<p>The store holds no run of environment {esc(env)} for this selection: "
        "run <code>ferry run</code> (or a deployment) first, then make the report again.</p>"
        "</section>"
    )


def figure(div_id: str) -> str:
    """Where figures.js draws the figure `div_id` of the page's data."""
    return f'<div id="{div_id}" class="figure"></div>'


@cache
def _script() -> str:
    """figures.js, the page's own script (read once per process)."""
    return (Path(__file__).with_name("figures.js")).read_text(encoding="utf-8")


def _data(figures: list[dict[str, Any]]) -> str:
    """The figures' data as JSON inside a script element: a `<` is written `\\u003c`, so no
    string of the data can end the element (`</script`) or open a comment."""
    text = json.dumps({"figures": figures}, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
  max-width: 1200px; padding: 1rem 2rem; color: #212121; }
h1 { font-size: 1.6rem; margin-bottom: 0.5rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #e0e0e0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { color: #616161; }
dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.6rem; border-bottom: 1px solid #eeeeee; }
td.none { color: #2e7d32; }
p.note { color: #616161; font-style: italic; }
div.figure { height: 420px; width: 100%; }
"""


def page(
    env: str,
    facts: dict[str, str],
    sections: list[str],
    *,
    figures: list[dict[str, Any]] | None = None,
    links: dict[str, list[tuple[str, str]]] | None = None,
) -> str:
    """The whole document: `facts` as the header, then the `sections` (HTML) in order.

    Args:
        figures: the data of each figure the sections place (`figure`), drawn in the browser by
            figures.js; none: the page loads no script at all.
        links: header rows of links, each a list of (text, href): followed, never fetched.
    """
    header = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts.items())
    header += "".join(
        f"<dt>{esc(k)}</dt><dd>"
        + ", ".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in found)
        + "</dd>"
        for k, found in (links or {}).items()
        if found
    )
    # MathJaxConfig 'local' keeps plotly.js from ever asking a CDN for MathJax.
    head = (
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script src="{esc(plotly_js_path())}" id="plotly-js"></script>\n'
        if figures
        else ""
    )
    tail = (
        f'<script type="application/json" id="report-data">{_data(figures)}</script>\n'
        f"<script>{_script()}</script>\n"
        if figures
        else ""
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>ferry report: {esc(env)}</title>\n"
        f"<style>{_STYLE}</style>\n{head}</head>\n<body>\n"
        f'<header><h1>ferry report: {esc(env)}</h1><dl id="facts">{header}</dl></header>\n'
        + "\n".join(sections)
        + f"\n{tail}</body>\n</html>\n"
    )
