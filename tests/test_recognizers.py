"""Formats that leaked raw under redact, and text that must not be flagged."""

from __future__ import annotations

import pytest

from tandem.agents.privacy.recognizers import (
    NerRecognizer,
    coverage,
    find_extra,
    iban_ok,
    luhn,
    normalize,
)

NBSP, NNBSP, THIN, ZW = "\u00a0", "\u202f", "\u2009", "\u200b"

# (text, values that must be covered) — detected WITHOUT NER
PATTERN_CASES: list[tuple[str, list[str]]] = [
    (f"card 4111{NBSP}1111{NBSP}1111{NBSP}1111 please", [f"4111{NBSP}1111{NBSP}1111{NBSP}1111"]),
    (f"card 4111{NNBSP}1111{NNBSP}1111{NNBSP}1111", [f"4111{NNBSP}1111{NNBSP}1111{NNBSP}1111"]),
    ("card 4111.1111.1111.1111.", ["4111.1111.1111.1111"]),
    ("card 5500-0000-0000-0004", ["5500-0000-0000-0004"]),
    (f"card 4111{ZW}1111{ZW}1111{ZW}1111", [f"4111{ZW}1111{ZW}1111{ZW}1111"]),
    ("card ４１１１ １１１１ １１１１ １１１１", ["４１１１ １１１１ １１１１ １１１１"]),
    ("amex 3782 822463 10005", ["3782 822463 10005"]),
    ("iban de89370400440532013000 thanks", ["de89370400440532013000"]),
    ("iban de89 3704 0044 0532 0130 00", ["de89 3704 0044 0532 0130 00"]),
    (
        f"IBAN DE89{NNBSP}3704{NNBSP}0044{NNBSP}0532{NNBSP}0130{NNBSP}00",
        [f"DE89{NNBSP}3704{NNBSP}0044{NNBSP}0532{NNBSP}0130{NNBSP}00"],
    ),
    (
        f"IBAN GB82{NBSP}WEST{NBSP}1234{NBSP}5698{NBSP}7654{NBSP}32",
        [f"GB82{NBSP}WEST{NBSP}1234{NBSP}5698{NBSP}7654{NBSP}32"],
    ),
    ("IBAN GB82.WEST.1234.5698.7654.32", ["GB82.WEST.1234.5698.7654.32"]),
    ("IBAN fr14-2004-1010-0505-0001-3m02-606", ["fr14-2004-1010-0505-0001-3m02-606"]),
    ("my passport number is 340020013", ["340020013"]),
    ("US passport: A12345678", ["A12345678"]),
    ("UK passport no. 123456789 expires", ["123456789"]),
    ("Reisepass Nr. C01X00T47", ["C01X00T47"]),
    ("mein Pass: C01X00T47", ["C01X00T47"]),
    ("numéro de passeport 12AB34567", ["12AB34567"]),
    ("passport #X1234567 issued in Madrid", ["X1234567"]),
    ("document C01X00T47 was lost", ["C01X00T47"]),
    (
        "AWS key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    ),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    ),
    ("temporary ASIAY34FZKBOKMUTVV7A", ["ASIAY34FZKBOKMUTVV7A"]),
    ("key: 9sK2+pQ8vN4mZ1xR7tY3wB6cE0fH5jL2aD8gU4iO", ["9sK2+pQ8vN4mZ1xR7tY3wB6cE0fH5jL2aD8gU4iO"]),
    ("connect to postgres://app:s3cr3tPW@db.internal:5432/prod", ["s3cr3tPW"]),
    ("https://user:hunter2@example.com/path", ["hunter2"]),
    ("mysql://root:p%40ss@10.0.0.1/db", ["p%40ss"]),
    ("my password is Tr0ub4dor&3", ["Tr0ub4dor&3"]),
    ("pwd=correcthorse", ["correcthorse"]),
    ("Passwort: Sommer2024!", ["Sommer2024!"]),
    ("I was born on 3 March 1985", ["3 March 1985"]),
    ("born on the third of March 1985", ["the third of March 1985"]),
    (
        "born on the third of March nineteen eighty-five, in Leeds",
        ["the third of March nineteen eighty-five"],
    ),
    ("DOB: 1985-03-03", ["1985-03-03"]),
    ("date of birth 03/03/1985", ["03/03/1985"]),
    ("D.O.B. 3.3.85", ["3.3.85"]),
    ("born March 3rd, 1985", ["March 3rd, 1985"]),
    ("geboren am 3. März 1985", ["3. März 1985"]),
    ("my birthday is 12 December 1990", ["12 December 1990"]),
    ("I live at 42 Baker Street, London NW1 6XE", ["42 Baker Street", "NW1 6XE"]),
    (
        "send it to 1600 Pennsylvania Avenue NW, Washington, DC 20500",
        ["1600 Pennsylvania Avenue NW"],
    ),
    ("Hauptstraße 12, 10115 Berlin", ["Hauptstraße 12", "10115 Berlin"]),
    ("Musterweg 5a", ["Musterweg 5a"]),
    ("flat 3, 221B Baker St.", ["221B Baker St."]),
    ("10 rue de Rivoli, Paris", ["10 rue de Rivoli"]),
    ("PO Box 1234", ["PO Box 1234"]),
    (
        "742 Evergreen Terrace, Springfield, IL 62704",
        ["742 Evergreen Terrace", "Springfield, IL 62704"],
    ),
    ("Dr. Maria Gonzalez treated me", ["Maria Gonzalez"]),
    ("my name is John Smith and I rent a flat", ["John Smith"]),
    ("Patient Anna Müller, 54, diabetic", ["Anna Müller"]),
    ("Mrs O'Brien called", ["O'Brien"]),
]

NER_CASES: list[tuple[str, list[str]]] = [
    ("Can Maria Gonzalez claim the tenancy deposit back?", ["Maria Gonzalez"]),
    ("Beverly Crusher shares a flat with Jean Picard", ["Beverly Crusher", "Jean Picard"]),
    ("Tell Hans Peter that the rent is due", ["Hans Peter"]),
    ("What did Angela Merkel say about pensions?", ["Angela Merkel"]),
]

CLEAN = [
    "How long does a landlord have to return a deposit under the Housing Act 2004?",
    "Is rent taxable income? What is the personal allowance for 2024/25?",
    "Can I take ibuprofen with paracetamol? The dose is 400 mg every 4-6 hours.",
    "Version 3.12.1 of Python was released on 2023-12-08.",
    "Section 21 notices need 2 months' notice; see page 12.",
    "The capital gains tax rate is 20% above £50,270.",
    "Use the road to the north for 3 miles then turn left.",
    "Order 12 apples and 3 pears.",
]


def covered(text, spans, value):
    i = text.index(value)
    return any(s <= i and i + len(value) <= e for _, s, e, _ in spans)


@pytest.mark.parametrize("text,values", PATTERN_CASES)
def test_pattern_recognizers(text, values):
    spans = find_extra(text, ner=False)
    for v in values:
        assert covered(text, spans, v), (v, [(k, text[s:e]) for k, s, e, _ in spans])


@pytest.mark.skipif(not NerRecognizer.available(), reason="NER package not installed")
@pytest.mark.parametrize("text,values", NER_CASES)
def test_ner_names(text, values):
    spans = find_extra(text, ner=True)
    for v in values:
        assert covered(text, spans, v), (v, [(k, text[s:e]) for k, s, e, _ in spans])


@pytest.mark.parametrize("text", CLEAN)
def test_clean_text_not_flagged_by_patterns(text):
    assert find_extra(text, ner=False) == [], [
        (k, text[s:e]) for k, s, e, _ in find_extra(text, ner=False)
    ]


def test_normalize_maps_back():
    text = f"a{NBSP}b{ZW}c１d"
    norm, where = normalize(text)
    assert norm == "a bc1d"
    assert [text[where[i]] for i in range(len(norm))] == ["a", NBSP, "b", "c", "１", "d"]


def test_checksums():
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_ok("DE89370400440532013000") and iban_ok("gb82west12345698765432")
    assert not iban_ok("DE89370400440532013001")


def test_coverage_says_what_is_missing_without_ner(monkeypatch):
    monkeypatch.setattr(NerRecognizer, "available", classmethod(lambda cls: False))
    c = coverage()
    assert "PERSON" in c.partial and "ADDRESS" in c.partial and "tandem[ner]" in c.note
