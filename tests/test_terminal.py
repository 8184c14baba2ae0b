from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.agents.privacy.hygiene import sanitize_output
from tandem.agents.privacy.streams import OutputStream, StreamRestorer, restore
from tandem.agents.privacy.terminal import StreamControlStripper, strip_controls

ATTACKS = [
    "clear\x1b[2J\x1b[Hscreen",
    "title\x1b]0;pwned\x07 here",
    "title\x1b]0;pwned\x1b\\ here",
    "clip\x1b]52;c;ZXZpbA==\x07board",
    "link \x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\ end",
    "dcs \x1bP1$qm\x1b\\ done",
    "8-bit \x9b2J csi and \x9d0;t\x07 osc",
    "over\rwrite and back\bspace bell\x07",
    "bidi \u202eevil\u202c and \u2066iso\u2069",
    "keep\ttabs\nand newlines",
    "csi \x1b[38;5;196mred\x1b[0m",
    "unterminated \x1b]0;title never ends",
    "esc at end \x1b",
    "charset \x1b(B done",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_controls_stripped(text):
    out = strip_controls(text)
    assert not any(ord(c) < 32 and c not in "\n\t" for c in out)
    assert not any(0x7F <= ord(c) <= 0x9F for c in out)
    assert "pwned" not in out and "ZXZpbA" not in out and "evil.example" not in out
    for k in range(len(text) + 1):
        s = StreamControlStripper()
        assert s.feed(text[:k]) + s.feed(text[k:]) + s.finish() == out


def test_visible_text_kept():
    assert strip_controls("csi \x1b[38;5;196mred\x1b[0m") == "csi red"
    assert strip_controls("over\rwrite") == "overwrite"
    assert strip_controls("keep\ttabs\nand newlines") == "keep\ttabs\nand newlines"
    long = "\x1b]0;" + "x" * 5000
    assert (
        strip_controls(long) == "0;" + "x" * 5000
    )  # an unterminated string cannot swallow the rest


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.sampled_from(list("ab;[]0\x1b\x07\\\x9b\x9dP\n\r\t\u202e ")), max_size=40),
    st.lists(st.integers(0, 60), max_size=6),
)
def test_control_stream_equals_whole(text, cuts):
    s = StreamControlStripper()
    out, last = [], 0
    for c in [*sorted({c % (len(text) + 1) for c in cuts}), len(text)]:
        out.append(s.feed(text[last:c]))
        last = c
    out.append(s.finish())
    assert "".join(out) == strip_controls(text)


MAPPING = {"<EMAIL_1>": "jane@example.com", "<PHONE_1>": "+44 7700 900123"}


def test_restorer_shows_each_value_once():
    text = "Write to <EMAIL_1> or call <PHONE_1>."
    for k in range(len(text) + 1):
        r = StreamRestorer(MAPPING)
        assert r.feed(text[:k]) + r.feed(text[k:]) + r.finish() == restore(text, MAPPING)
    r = StreamRestorer(MAPPING)
    shown = [r.feed(p) for p in ["Write to <EM", "AIL_", "1> now"]] + [r.finish()]
    assert shown == ["Write to ", "", "jane@example.com now", ""]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<EMAIL_1>",
                "<PHONE_1>",
                "<",
                "EMAIL",
                "_1>",
                "![x](",
                "https://evil.example/p.png",
                ")",
                " ",
                "\x1b[2J",
                "\x1b]0;t\x07",
                "text",
                "www.",
                "gov.uk/x",
            ]
        ),
        max_size=15,
    ),
    st.lists(st.integers(0, 200), max_size=8),
)
def test_output_stream_equals_whole(pieces, cuts):
    text = "".join(pieces)
    whole = sanitize_output(strip_controls(restore(text, MAPPING)), ["gov.uk"])
    s = OutputStream(MAPPING, ["gov.uk"])
    out, last = [], 0
    for c in [*sorted({c % (len(text) + 1) for c in cuts}), len(text)]:
        out.append(s.feed(text[last:c]))
        last = c
    out.append(s.finish())
    assert "".join(out) == whole
