"""HTML for the annotation pages: model outputs as markdown (markdown-it-py, HTML off) and the page templates.

Model outputs are untrusted. markdown-it-py renders CommonMark with raw HTML switched off, so
any markup in a completion is escaped text; links, images, autolinks and link reference
definitions are switched off too (shown as their text, never clickable or fetched).
"""

from __future__ import annotations

import html
from functools import lru_cache
from importlib import resources
from string import Template

from markdown_it import MarkdownIt
from markdown_it.token import Token

esc = html.escape

# Markdown constructs a completion may not use: they would make the page load, link or run something.
_OFF = ["html_block", "html_inline", "link", "image", "autolink", "reference"]


def _page_safe(state) -> None:
    """Core rule after parsing: headings sit below the page's own (h1 -> h3 ... h6), and tables
    are shown as their escaped source in monospace (an HTML table's alignment would need inline
    styles, which the page's Content-Security-Policy forbids)."""
    lines = state.src.split("\n")
    out: list[Token] = []
    i = 0
    while i < len(state.tokens):
        tok = state.tokens[i]
        if tok.type in ("heading_open", "heading_close"):
            tok.tag = f"h{min(6, int(tok.tag[1:]) + 2)}"
        if tok.type == "table_open":
            j = i
            while state.tokens[j].type != "table_close":
                j += 1
            first, last = tok.map
            shown = Token("html_block", "", 0)
            shown.content = f'<pre class="md-table">{esc(chr(10).join(x.strip() for x in lines[first:last]))}</pre>\n'
            out.append(shown)
            i = j + 1
            continue
        out.append(tok)
        i += 1
    state.tokens = out


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # breaks: a model's single newlines are meant as line breaks; xhtmlOut off: <br>, not <br />.
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "xhtmlOut": False})
    md.enable("table").disable(_OFF)
    md.core.ruler.push("tulu_page_safe", _page_safe)
    return md


def render_markdown(text: str) -> str:
    """CommonMark without HTML, links or images: code, emphasis, headings, lists, quotes, rules, line breaks."""
    return _markdown().render(text).rstrip("\n")


@lru_cache(maxsize=None)
def asset(name: str) -> bytes:
    """A file shipped in tulu_cli/resources/human_eval (templates, CSS, JavaScript)."""
    return resources.files("tulu_cli.resources").joinpath("human_eval", name).read_bytes()


def fill(template: str, **values: str) -> str:
    """Substitute ``$name`` placeholders; callers pass values that are already escaped HTML."""
    return Template(asset(template).decode("utf-8")).substitute(values)


def page(title: str, body: str, *, user: str = "", csrf: str = "", nav: str = "") -> bytes:
    """A whole page in the shared layout; ``body`` and ``nav`` are trusted HTML built from escaped parts."""
    account = ""
    if user:
        account = (
            f'<span class="who">{esc(user)}</span>'
            f'<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf_token" value="{esc(csrf)}">'
            '<button type="submit" class="link">Sign out</button></form>'
        )
    return fill("layout.html", title=esc(title), body=body, account=account, nav=nav, csrf=esc(csrf)).encode("utf-8")
