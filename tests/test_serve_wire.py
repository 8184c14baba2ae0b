"""``tandem serve``'s pure parts: request validation, what a stream may send, admission."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tandem.agents.shell.serve import WireError, is_loopback, parse_chat_request
from tandem.agents.shell.serve._limits import Admission, Rejected
from tandem.agents.shell.serve._run import access_line
from tandem.agents.shell.serve._text import StreamText
from tandem.workers.errors import UsageError

WORKERS = ["tenancy", "finance"]


def parse(**body: Any) -> Any:
    body.setdefault("model", "tandem")
    body.setdefault("messages", [{"role": "user", "content": "Q?"}])
    return parse_chat_request(json.dumps(body).encode(), WORKERS)


def test_history_system_messages_and_text_parts() -> None:
    req = parse(
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "I rent "},
                    {"type": "text", "text": "a flat."},
                ],
            },
            {"role": "assistant", "content": "Noted."},
            {"role": "developer", "content": "x"},
            {"role": "user", "content": "When is my deposit back?"},
        ],
        temperature=0.7,
        max_tokens=100,
        user="u1",
        tool_choice="none",
    )
    assert req.query == "When is my deposit back?"
    assert req.history == [("user", "I rent a flat."), ("assistant", "Noted.")]
    assert req.system_messages == 2 and req.worker is None and not req.stream
    assert req.ignored == ["temperature", "max_tokens", "user"]


def test_models_threads_and_extensions() -> None:
    assert parse(model="tandem/finance").worker == "finance"
    assert parse(thread_id="abc-1", approve=True).approve is True
    assert (
        parse_chat_request(
            json.dumps(
                {"model": "tandem", "messages": [{"role": "user", "content": "Q"}], "user": "me"}
            ).encode(),
            WORKERS,
            user_threads=True,
        ).thread_id
        == "me"
    )
    req = parse(stream=True, stream_options={"include_usage": True})
    assert req.stream and req.include_usage


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "gpt-4o"}, 404, "model"),
        ({"model": "tandem/health"}, 404, "model"),
        ({"model": None}, 400, "model"),
        ({"messages": []}, 400, "messages"),
        (
            {"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
            400,
            "messages[0].role",
        ),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "  "}]}, 400, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            400,
            "messages[0].content[0].type",
        ),
        ({"tool_choice": "auto"}, 400, "tool_choice"),
        ({"functions": [{"name": "f"}]}, 400, "functions"),
        ({"top_logprobs": 2}, 400, "top_logprobs"),
        ({"modalities": ["text", "audio"]}, 400, "modalities"),
        ({"audio": {"voice": "alloy"}}, 400, "audio"),
        ({"logit_bias": {"50256": -100}}, 400, "logit_bias"),
        ({"n": 0}, 400, "n"),
        ({"stream": "yes"}, 400, "stream"),
        ({"stream_options": {"include_usage": True}}, 400, "stream_options"),
        ({"thread_id": "has space"}, 400, "thread_id"),
        ({"approve": True}, 400, "approve"),
        ({"approve": "yes", "thread_id": "t"}, 400, "approve"),
        ({"seed": 1, "whatever": 2}, 400, "whatever"),
    ],
)
def test_refusals_name_the_field(body: dict[str, Any], status: int, param: str) -> None:
    with pytest.raises(WireError) as info:
        parse(**body)
    assert (info.value.status, info.value.param) == (status, param)
    assert set(info.value.body()["error"]) == {"message", "type", "param", "code"}


def test_a_body_that_is_not_json_is_a_400() -> None:
    for raw in (b"{", b"[]", b"\xff"):
        with pytest.raises(WireError) as info:
            parse_chat_request(raw, WORKERS)
        assert info.value.status == 400


def test_stream_text_holds_drafts_and_placeholders() -> None:
    text = StreamText()
    assert text.token("Fourteen days", draft=True) == ""  # a specialist's draft: held
    assert text.token("Dear ", draft=False) == "Dear "
    assert text.token("<PER", draft=False) == ""  # could be a placeholder: held
    assert text.token("SON_1>, hello", draft=False) == ""  # it is one: live streaming stops
    assert text.finish("Dear Anna, hello") == ("Anna, hello", True)
    other = StreamText()
    assert other.token("a < b and ", draft=False) == "a < b and "  # not a placeholder
    assert other.token("c <", draft=False) == "c "
    assert other.token(" d", draft=False) == "< d"
    assert other.finish("a < b and c < d!") == ("!", True)
    reset = StreamText()
    reset.token("partial", draft=False)
    reset.reset()
    assert reset.token(" more", draft=False) == ""
    assert reset.finish("something else") == ("", False)  # the caller sends tandem.text


async def test_admission_queues_in_order_then_rejects() -> None:
    gate = Admission(max_concurrent=1, queue=1, queue_timeout=5)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with gate.slot():
            order.append(name)
            await release.wait()

    first = asyncio.ensure_future(hold("first"))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(hold("second"))
    await asyncio.sleep(0.01)
    assert gate.active == 1 and gate.waiting == 1
    with pytest.raises(Rejected) as info:
        async with gate.slot():
            pass
    assert info.value.retry_after >= 1
    release.set()
    await asyncio.gather(first, second)
    assert order == ["first", "second"] and gate.active == 0 and gate.waiting == 0


async def test_admission_wait_times_out_and_a_cancelled_waiter_passes_its_turn_on() -> None:
    gate = Admission(max_concurrent=1, queue=4, queue_timeout=0.05)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await release.wait()

    holder = asyncio.ensure_future(hold())
    await asyncio.sleep(0.01)
    with pytest.raises(Rejected):
        async with gate.slot():
            pass
    gate.queue_timeout = 5
    waiter = asyncio.ensure_future(hold())
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.sleep(0.01)
    assert gate.waiting == 0
    release.set()
    await holder
    assert gate.active == 0


def test_loopback_and_the_bind_rule() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7")
    assert "loopback only" in access_line("127.0.0.1", 0)
    assert "2 API key(s)" in access_line("0.0.0.0", 2)
    with pytest.raises(UsageError, match=r"refusing to listen on 0\.0\.0\.0"):
        access_line("0.0.0.0", 0)
