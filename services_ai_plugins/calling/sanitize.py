"""Sanitising plugin HTML before anyone sees it (nh3, a maintained Rust sanitiser).

Kept: the structure and Bootstrap 5 classes widgets are built from (cards, tables, badges,
grid, text utilities). Removed: scripts and everything that runs or loads code (``script``,
``style``, ``iframe``, ``object``, ``svg``, ``math``, ``form``, ``base``...), event handlers,
``style`` and ``data-*`` attributes (Bootstrap reads HTML templates from ``data-bs-*``),
``id``/``name`` (they can clobber the page's own DOM), URLs that are not http(s)/mailto or that
are protocol-relative, and classes that would lift a widget out of its card (fixed, sticky,
modal, full-viewport, z-index utilities).
"""

from __future__ import annotations

import html as html_lib
import re
import unicodedata

import nh3

__all__ = ["MAX_HTML_BYTES", "plain_text", "sanitize_html"]

TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd",
    "del", "details", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s",
    "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "time", "tr", "u", "ul", "progress",
}  # fmt: skip

# Removed together with everything inside them.
DROP_WITH_CONTENT = {
    "script", "style", "template", "iframe", "frame", "frameset", "object", "embed", "applet",
    "svg", "math", "form", "noscript", "textarea", "select", "button", "input", "title", "base",
    "link", "meta", "head", "video", "audio", "canvas", "dialog", "portal",
}  # fmt: skip

ATTRIBUTES = {
    "*": {"class", "title", "role", "lang", "dir", "aria-label", "aria-hidden",
          "aria-describedby", "aria-labelledby", "aria-valuenow", "aria-valuemin", "aria-valuemax"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "reversed"},
    "time": {"datetime"},
    "progress": {"value", "max"},
    "details": {"open"},
}  # fmt: skip

URL_SCHEMES = {"http", "https", "mailto"}

# Bootstrap utilities (and look-alikes) that take an element out of its card or over the page.
_LAYOUT_BREAKING = re.compile(
    r"^(position-(fixed|absolute|sticky)|fixed-(top|bottom)|sticky-(top|bottom|[a-z]+-top)"
    r"|(min-)?v[hw]-\d+|z-\S+|modal\S*|offcanvas\S*|toast\S*|popover\S*|tooltip\S*"
    r"|top-\d+|bottom-\d+|start-\d+|end-\d+|translate-middle\S*|visually-hidden\S*|d-print\S*)$"
)
_CLASS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_HTML_BYTES = 256 * 1024


def _filter_attribute(tag: str, attr: str, value: str) -> str | None:
    if attr in ("href", "src"):
        v = value.strip()
        # Protocol-relative (//host) and backslash variants load from anywhere; relative
        # paths resolve against the admin's own origin. Only absolute http(s)/mailto stay.
        if not re.match(r"^(https?://[^/\\\s]|mailto:)", v, re.IGNORECASE):
            return None
        return v
    if attr == "class":
        kept = [c for c in value.split() if _CLASS_NAME.match(c) and not _LAYOUT_BREAKING.match(c)]
        return " ".join(kept) or None
    return value


_CLEANER = nh3.Cleaner(
    tags=TAGS,
    clean_content_tags=DROP_WITH_CONTENT,
    attributes=ATTRIBUTES,
    attribute_filter=_filter_attribute,
    url_schemes=URL_SCHEMES,
    strip_comments=True,
    link_rel="noopener noreferrer nofollow",
)


def sanitize_html(html: str, max_bytes: int = MAX_HTML_BYTES) -> str:
    """Plugin HTML made safe to put in a page. Oversize input is refused, never truncated
    (a cut-off tag could change the meaning of what follows)."""
    if not isinstance(html, str):
        raise TypeError(f"HTML must be a string, not {type(html).__name__}")
    if len(html.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ValueError(f"HTML is over {max_bytes} bytes")
    return _CLEANER.clean(html)


_TEXT_ONLY = nh3.Cleaner(tags=set(), clean_content_tags={"script", "style"}, attributes={})


def plain_text(text: str, max_chars: int = 200) -> str:
    """A title or label from a plugin as plain text: no markup, no control or invisible
    formatting characters, white space folded, capped in length."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, not {type(text).__name__}")
    # Markup can come back out of unescaping (the raw text inside an unclosed <iframe> is given
    # back escaped): clean again until nothing changes, so what is left holds no tag.
    stripped = text[: max_chars * 8]
    for _ in range(4):
        cleaner = html_lib.unescape(_TEXT_ONLY.clean(stripped))
        if cleaner == stripped:
            break
        stripped = cleaner
    kept = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in stripped)
    return " ".join(kept.split())[:max_chars].rstrip()
