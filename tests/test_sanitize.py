"""Plugin HTML is sanitised before anyone sees it; Bootstrap markup survives."""

from __future__ import annotations

import pytest

from services_ai_plugins.calling.sanitize import sanitize_html


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<script>alert(1)</script><p>ok</p>", "<p>ok</p>"),
        ('<img src="https://x.io/a.png" onerror="steal()">', '<img src="https://x.io/a.png">'),
        ('<a href="javascript:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
        ('<a href="JaVaScRiPt:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
        ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', "<img>"),
        ('<img src="//evil.example/pixel.gif">', "<img>"),
        ('<a href="\\\\evil.example">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
        ('<span data-bs-toggle="tooltip" data-bs-html="true" title="t">x</span>', '<span title="t">x</span>'),
        ("<svg><circle/></svg><math><mi>x</mi></math>ok", "ok"),
        ("<style>body{display:none}</style><base href='https://e/'>ok", "ok"),
        ("<form action='https://e'><input name='password'></form>ok", "ok"),
        ("<iframe src='https://e'></iframe>ok", "ok"),
        ('<div id="app" class="card">x</div>', '<div class="card">x</div>'),
        ('<div class="position-fixed fixed-top modal z-3 vh-100 card">x</div>', '<div class="card">x</div>'),
        ('<p style="position:fixed;top:0">x</p>', "<p>x</p>"),
        ("<!-- secret --><b>x</b>", "<b>x</b>"),
    ],
)
def test_dangerous_markup_is_removed(html: str, expected: str) -> None:
    assert sanitize_html(html) == expected


def test_bootstrap_markup_is_kept() -> None:
    html = (
        '<div class="card"><div class="card-body"><h5 class="card-title">Leads</h5>'
        '<table class="table table-sm"><tbody><tr><td colspan="2">1</td></tr></tbody></table>'
        '<span class="badge bg-success">hot</span><div class="row"><div class="col-md-6 text-muted">x</div></div>'
        '<a class="btn btn-primary" href="https://example.com/x" rel="noopener noreferrer nofollow">go</a>'
        "</div></div>"
    )
    assert sanitize_html(html) == html


def test_oversize_html_is_refused_not_truncated() -> None:
    with pytest.raises(ValueError, match="over 262144 bytes"):
        sanitize_html("<p>" + "x" * 300_000 + "</p>")
