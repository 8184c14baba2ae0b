"""Sensitive-span detection with Presidio's analyzer, fully offline.

Presidio's default ``AnalyzerEngine()`` downloads a spaCy language model; here
it runs with Presidio's no-op NLP engine and pattern recognizers only, so
nothing is loaded from the network. Its email recognizer validates domains
with ``tldextract``, whose default extractor fetches the public suffix list on
first use: tandem overrides that check with an extractor that reads only the
snapshot bundled with ``tldextract`` (``suffix_list_urls=()``).

Presidio supplies email, phone (``phonenumbers``), card (Luhn), IBAN (mod-97),
IP (v4/v6), US SSN and UK NINO recognizers; tandem adds API keys and tokens,
high-entropy secrets, a permissive phone pattern, ``NNN-NN-NNNN`` national ids,
and the user's own patterns and deny-lists from ``[privacy]``; and
:mod:`.recognizers` adds passports, passwords (also inside URLs), dates of birth (also
in words), street addresses, AWS keys, cards and IBANs in any case and with any
separator, and person names — anywhere with the optional NER pipeline
(``pip install 'tandem[ner]'``), else after a title or an introduction. Everything is
matched on a normalised copy of the text (no-break and narrow spaces, dash variants,
full-width forms, zero-width characters) and reported where it is written. Engines are
built once per distinct configuration and reused (building one takes seconds;
analysing a query takes milliseconds, ~10 ms more with NER).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter, OrderedDict
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field

from tandem.agents.privacy.recognizers import (
    NerRecognizer,
    find_normalized,
    normalize,
    to_original,
)
from tandem.agents.privacy.settings import PrivacySettings

__all__ = ["Detector", "Finding", "detector_for"]

_MEMO_ENTRIES = 4096
_MEMO_MAX_CHARS = 20_000

_ENTITY_NAMES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "US_SSN": "NATIONAL_ID",
    "UK_NINO": "NATIONAL_ID",
}

_API_KEY = (
    r"\b(?:sk-(?:proj-|live-|test-|ant-)?[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|"
    r"github_pat_[A-Za-z0-9_]{20,}|AKIA[0-9A-Z]{16}|xox[abpr]-[A-Za-z0-9-]{10,}|"
    r"AIza[0-9A-Za-z_-]{30,}|glpat-[A-Za-z0-9_-]{20,}|"
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
_SECRET = r"(?<![\w-])[A-Za-z0-9][A-Za-z0-9_\-+/=]{19,}(?![\w-])"
_PHONE = r"(?<![\w+(.])[+(]?\d[\d ()-]{7,}\d\b"
_NATIONAL_ID = r"\b\d{3}-\d{2}-\d{4}\b"
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{4}")
_CASE_SENSITIVE = re.DOTALL | re.MULTILINE


class Finding(BaseModel):
    """One sensitive span."""

    type: str
    """Entity type: ``EMAIL``, ``PHONE``, ``CARD``, ``IBAN``, ``IP``, ``NATIONAL_ID``,
    ``API_KEY``, ``SECRET``, ``PASSPORT``, ``PASSWORD``, ``DATE_OF_BIRTH``, ``ADDRESS``,
    ``PERSON`` or a user-defined one."""
    start: int
    end: int
    text: str = Field(repr=False)
    score: float = 1.0
    """The recognizer's score (at least the entity's threshold)."""


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_like_secret(text: str) -> bool:
    """Long, mixed letters and digits, high character entropy (like detect-secrets)."""
    if sum(c.isdigit() for c in text) < 2 or sum(c.isalpha() for c in text) < 4:
        return False
    parts = [p for p in re.split(r"[-_.]", text) if p]
    if all(p.isdigit() or (p.isalpha() and (p.islower() or p.isupper())) for p in parts):
        return False  # words and numbers joined up: a file name or slug, not a credential
    return _entropy(text) >= 3.5


def _offline_tld() -> Any:
    import tldextract

    # No suffix-list URLs and no cache dir: the snapshot bundled with tldextract, no network.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _build_engine(settings_json: str) -> Any:
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UkNinoRecognizer,
        UsSsnRecognizer,
    )

    settings = PrivacySettings.model_validate_json(settings_json)
    tld = _offline_tld()

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's email recognizer, its domain check against the bundled suffix list."""

        def validate_result(self, pattern_text: str) -> bool:
            domain = pattern_text.rpartition("@")[2]
            # Unknown suffixes (corp.internal) still count: a missed address is a leak.
            return bool(tld(domain).fqdn) or bool(re.search(r"\.[A-Za-z]{2,}$", domain))

    class SecretRecognizer(PatternRecognizer):
        """High-entropy tokens (credentials, canaries) not covered by a known key format."""

        def invalidate_result(self, pattern_text: str) -> bool:
            return not _looks_like_secret(pattern_text)

    class LoosePhoneRecognizer(PatternRecognizer):
        """Digit runs written like phone numbers that ``phonenumbers`` cannot place."""

        def invalidate_result(self, pattern_text: str) -> bool:
            digits = sum(c.isdigit() for c in pattern_text)
            return digits < 8 or bool(_DATE.fullmatch(pattern_text.strip()))

    registry = RecognizerRegistry(supported_languages=["en"])
    recognizers: list[Any] = [
        OfflineEmailRecognizer(),
        PhoneRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        UkNinoRecognizer(),
        PatternRecognizer(
            supported_entity="API_KEY",
            name="ApiKeyRecognizer",
            patterns=[Pattern("api key", _API_KEY, 0.95)],
            global_regex_flags=_CASE_SENSITIVE,
        ),
        SecretRecognizer(
            supported_entity="SECRET",
            name="SecretRecognizer",
            patterns=[Pattern("high-entropy token", _SECRET, 0.6)],
            global_regex_flags=_CASE_SENSITIVE,
        ),
        LoosePhoneRecognizer(
            supported_entity="PHONE",
            name="LoosePhoneRecognizer",
            patterns=[Pattern("phone-like digits", _PHONE, 0.4)],
        ),
        PatternRecognizer(
            supported_entity="NATIONAL_ID",
            name="NationalIdRecognizer",
            patterns=[Pattern("NNN-NN-NNNN", _NATIONAL_ID, 0.5)],
        ),
    ]
    for i, spec in enumerate(settings.patterns):
        recognizers.append(
            PatternRecognizer(
                supported_entity=spec.entity,
                name=f"UserPattern{i}",
                patterns=[Pattern(spec.entity, spec.regex, spec.score)],
                global_regex_flags=_CASE_SENSITIVE,
            )
        )
    for entity, terms in settings.deny_lists.items():
        recognizers.append(
            PatternRecognizer(
                supported_entity=entity, name=f"DenyList{entity}", deny_list=list(terms)
            )
        )
    for r in recognizers:
        registry.add_recognizer(r)
    engine = AnalyzerEngine(
        registry=registry,
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
        supported_languages=["en"],
    )
    return engine


class Detector:
    """Finds sensitive spans; build with :func:`detector_for` (engines are cached).

    Args:
        settings: The ``[privacy]`` settings (thresholds, patterns, deny-lists).
    """

    def __init__(self, settings: PrivacySettings | None = None) -> None:
        self.settings = settings or PrivacySettings()
        key = self.settings.model_dump_json(include={"patterns", "deny_lists"})
        self._engine = _engine(key)
        mode = self.settings.ner
        self.ner = mode == "on" or (mode == "auto" and NerRecognizer.available())
        """Whether person names and addresses are also found by NER (``[privacy] ner``)."""
        # Retrieved passages recur across queries: remember what a text held (bounded LRU).
        self._memo: OrderedDict[str, tuple[Finding, ...]] = OrderedDict()
        self._memo_lock = threading.Lock()

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping sensitive spans in ``text``, in order (higher scores win overlaps)."""
        if not text or not text.strip():
            return []
        with self._memo_lock:
            hit = self._memo.get(text)
            if hit is not None:
                self._memo.move_to_end(text)
                return [f.model_copy() for f in hit]
        found = self._analyze(text)
        if len(text) <= _MEMO_MAX_CHARS:
            with self._memo_lock:
                self._memo[text] = tuple(f.model_copy() for f in found)
                while len(self._memo) > _MEMO_ENTRIES:
                    self._memo.popitem(last=False)
        return found

    def _analyze(self, text: str) -> list[Finding]:
        # Matching runs on a normalised copy (no-break spaces, dash variants, full-width
        # forms, invisible characters); spans are mapped back to where they are written.
        norm, where = normalize(text)
        spans = [
            (_ENTITY_NAMES.get(r.entity_type, r.entity_type), r.start, r.end, r.score)
            for r in self._engine.analyze(text=norm, language="en")
        ]
        spans += find_normalized(norm, ner=self.ner)
        ranked: list[tuple[float, Finding]] = []
        for kind, s, e, score in spans:
            if score < self.settings.threshold(kind) or e <= s:
                continue
            start, end = to_original(where, s, e)
            found = Finding(
                type=kind, start=start, end=end, text=text[start:end], score=min(score, 1.0)
            )
            ranked.append((score, found))  # a recognizer may rank above 1.0 to win overlaps
        ranked.sort(key=lambda x: (-x[0], -(x[1].end - x[1].start), x[1].start))
        candidates = [f for _, f in ranked]
        chosen: list[Finding] = []
        for f in candidates:
            if not any(f.start < c.end and c.start < f.end for c in chosen):
                chosen.append(f)
        return sorted(chosen, key=lambda f: f.start)


@lru_cache(maxsize=8)
def _engine(key: str) -> Any:
    data = json.loads(key)
    return _build_engine(PrivacySettings(**data).model_dump_json())


_DETECTORS: dict[str, Detector] = {}
_DETECTORS_LOCK = threading.Lock()


def detector_for(settings: PrivacySettings | None = None) -> Detector:
    """The shared :class:`Detector` for ``settings`` (built once, then reused)."""
    settings = settings or PrivacySettings()
    key = settings.model_dump_json(include={"patterns", "deny_lists", "thresholds", "ner"})
    with _DETECTORS_LOCK:
        found = _DETECTORS.get(key)
        if found is None:
            found = _DETECTORS[key] = Detector(settings)
    return found
