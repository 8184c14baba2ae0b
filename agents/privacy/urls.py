"""Where a URL points, as a browser (WHATWG URL Standard) would see it.

Python's :func:`urllib.parse.urlparse` and browsers disagree on URLs an attacker can
write on purpose: ``http://evil.example\\@gov.uk/`` is host ``gov.uk`` to ``urlparse`` and
host ``evil.example`` to a browser (a backslash ends the authority of an http(s) URL);
``http://EVIL%2Eexample``, ``http://ｅｖｉｌ.example`` (full-width), ``http://0x7f.1/`` and
``http://gov.uk.`` all have hosts that differ from their spelling. This module parses the
*authority* of a URL with the Standard's rules — enough to answer "which host would be
contacted?" — and nothing more (no path normalisation, no relative resolution).

:func:`url_target` answers that question for a URL written in a link destination or an
HTML attribute, where a renderer resolves it against the page; :func:`host_matches`
compares a host with an allowlist.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_to_bytes

__all__ = [
    "SPECIAL_SCHEMES",
    "UrlTarget",
    "host_matches",
    "normalize_host",
    "parse_authority",
    "url_target",
]

SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
"""Schemes whose URLs the Standard parses with "special" rules (``\\`` is ``/``)."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_STRIP = "".join(chr(c) for c in range(0x21))  # C0 controls and space
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
# Forbidden domain code points (URL Standard §3.2): C0 controls, space, and these.
_FORBIDDEN_DOMAIN = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")


@dataclass(frozen=True)
class UrlTarget:
    """What a URL would make a browser contact."""

    kind: Literal["none", "network", "script", "other", "invalid"]
    """``none``: a relative reference or a fragment — it stays on the page's own site;
    ``network``: an http(s)/ws(s)/ftp URL (or protocol-relative) with a host;
    ``script``: ``javascript:``/``vbscript:``; ``other``: any other scheme (``data:``,
    ``mailto:``, ``file:`` …); ``invalid``: a URL a browser would reject, or one this
    parser cannot be sure about."""
    scheme: str = ""
    host: str = ""
    """The host as the browser would contact it (lower-case ASCII, IDNA, IPv4 canonical)."""
    userinfo: bool = False
    """Whether the URL carries a user name or password (``user:pw@host``)."""
    port: int | None = None


def _preprocess(url: str) -> str:
    """The Standard's first step: trim C0/space, drop tabs and newlines anywhere."""
    return _TAB_NEWLINE.sub("", url.strip(_STRIP))


def _parse_ipv4_number(part: str) -> int | None:
    if not part:
        return None
    base = 10
    if part[:2].lower() == "0x":
        part, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, base = part[1:], 8
    if part == "":
        return 0
    try:
        return int(part, base)
    except ValueError:
        return None


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "":
        if len(parts) == 1:
            return False
        parts.pop()
    last = parts[-1]
    if last and last.isascii() and last.isdigit():
        return True
    return _parse_ipv4_number(last) is not None and last[:2].lower() == "0x"


def _parse_ipv4(host: str) -> str | None:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = [_parse_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    nums = [n for n in numbers if n is not None]
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        return None
    value = nums[-1]
    for i, n in enumerate(nums[:-1]):
        value += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(value))


def normalize_host(raw: str) -> str | None:
    """The host a browser would contact for ``raw`` (an authority's host part), or None.

    Percent-decodes, maps Unicode through IDNA (UTS #46), lower-cases, canonicalises IPv4
    written in any of the forms browsers accept (``0x7f.1``, ``2130706433``) and IPv6 in
    brackets; ``None`` when a browser would reject the host.
    """
    if raw.startswith("["):
        if not raw.endswith("]"):
            return None
        try:
            return f"[{ipaddress.IPv6Address(raw[1:-1]).compressed}]"
        except ValueError:
            return None
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if decoded.isascii():
        ascii_host = decoded.lower()
    else:
        try:
            import idna

            ascii_host = idna.encode(decoded, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            # The Standard maps some labels idna (IDNA 2008) refuses; a browser might still
            # resolve them, so the caller must treat "no answer" as "not allowed".
            return None
        ascii_host = ascii_host.lower()
    if not ascii_host or _FORBIDDEN_DOMAIN.search(ascii_host):
        return None
    if _ends_in_number(ascii_host):
        return _parse_ipv4(ascii_host)
    return ascii_host


def parse_authority(rest: str, *, special: bool) -> UrlTarget | None:
    """Parse the authority at the start of ``rest`` (what follows the ``//``).

    Returns a target with ``kind="network"``, or ``None`` when the host is invalid.
    """
    stop = re.search(r"[/?#\\]" if special else r"[/?#]", rest)
    authority = rest[: stop.start()] if stop else rest
    _userinfo, at, hostport = authority.rpartition("@")
    port: int | None = None
    if hostport.startswith("["):
        close = hostport.find("]")
        host_raw, tail = (hostport[: close + 1], hostport[close + 1 :]) if close > 0 else ("", "")
        if tail and not tail.startswith(":"):
            return None
        port_raw = tail[1:]
    else:
        host_raw, _, port_raw = hostport.partition(":")
    if port_raw:
        if not port_raw.isascii() or not port_raw.isdigit() or int(port_raw) > 65535:
            return None
        port = int(port_raw)
    host = normalize_host(host_raw) if host_raw else None
    if host is None:
        return None
    return UrlTarget(kind="network", host=host, userinfo=bool(at), port=port)


def url_target(url: str) -> UrlTarget:
    """What a browser would contact for ``url`` written in a link or an HTML attribute.

    The page's own scheme is taken to be http(s): ``//host/x`` and ``\\\\host/x`` (and
    ``/\\host``) reach ``host``; a path without a scheme stays on the page's site.
    """
    s = _preprocess(url)
    if not s or s.startswith("#"):
        return UrlTarget(kind="none")
    m = _SCHEME.match(s)
    if m is None:
        if len(s) >= 2 and s[0] in "/\\" and s[1] in "/\\":
            rest = s.lstrip("/\\")
            target = parse_authority(rest, special=True)
            return target or UrlTarget(kind="invalid")
        return UrlTarget(kind="none")
    scheme = m.group(1).lower()
    rest = s[m.end() :]
    if scheme in ("javascript", "vbscript"):
        return UrlTarget(kind="script", scheme=scheme)
    if scheme in SPECIAL_SCHEMES and scheme != "file":
        # "http:evil.example" from an https page (or http:/\evil.example) reaches the host;
        # from an http page it would be a relative path — assume the worse reading.
        target = parse_authority(rest.lstrip("/\\"), special=True)
        if target is None:
            return UrlTarget(kind="invalid", scheme=scheme)
        return UrlTarget(
            kind="network",
            scheme=scheme,
            host=target.host,
            userinfo=target.userinfo,
            port=target.port,
        )
    return UrlTarget(kind="other", scheme=scheme)


def _norm_pattern(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    return normalize_host(host) or host


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Whether ``host`` is one of ``patterns`` or a subdomain of one (trailing dots ignored)."""
    host = host.rstrip(".")
    if not host:
        return False
    for pattern in patterns:
        p = _norm_pattern(pattern).rstrip(".")
        if p and (host == p or host.endswith("." + p)):
            return True
    return False
