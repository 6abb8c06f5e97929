"""User text (notes, ids, metadata values, class and column names, labels) made safe where a page shows
it: plotly reads a subset of HTML in its labels and hover text, Streamlit's markdown reads links,
emphasis, :colour[] directives, $maths$ and HTML. Every page escapes user text through these two."""

from __future__ import annotations

import html
import re

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def for_plotly(value, limit: int | None = None) -> str:
    """For plotly labels and hover text: whitespace collapsed, cut at `limit` characters, HTML-escaped."""
    text = " ".join(str(value).split())
    if limit and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return html.escape(text, quote=False)


def for_markdown(value) -> str:
    """For st.markdown / st.caption: whitespace collapsed and every ASCII punctuation character
    backslash-escaped, so the text shows as typed."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))
