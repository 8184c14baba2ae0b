"""Real-model tests of the embedded engine with the bundled Qwen2.5-Coder-0.5B GGUF."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import shutil
from pathlib import Path

import pytest

from tandem.workers.backends._base import TOP_LOGPROBS, Backend, ChatMessage
from tandem.workers.backends._bundled import ensure_model
from tandem.workers.backends.embedded import _INSTANCES, EmbeddedBackend, EmbeddedSettings
from tandem.workers.errors import BackendRejected, ModelAssetError
from tandem.workers.records import WorkerReply

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
    ),
]

MODEL = "qwen2.5-coder-0.5b"
QUESTION: list[ChatMessage] = [
    {
        "role": "system",
        "content": "You are a Python expert. Reply with a JSON object with the keys "
        "answer, confidence, citations and needs_escalation.",
    },
    {"role": "user", "content": "Which built-in function returns the length of a list?"},
]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache dir with the 0.5B model assembled once for the session."""
    cache = tmp_path_factory.mktemp("models")
    ensure_model(MODEL, cache)
    return cache


@pytest.fixture
def backend(model_cache: Path) -> EmbeddedBackend:
    return EmbeddedBackend(MODEL, EmbeddedSettings(cache_dir=model_cache, max_tokens=96))


def test_satisfies_the_backend_protocol(backend: EmbeddedBackend) -> None:
    assert isinstance(backend, Backend)
    assert (backend.ref, backend.where, backend.host) == (f"embedded:{MODEL}", "local", None)


async def test_chat_with_schema_returns_valid_json(backend: EmbeddedBackend) -> None:
    result = await backend.chat(QUESTION, schema=WorkerReply.model_json_schema(), max_tokens=160)
    reply = WorkerReply.model_validate_json(result.content)
    assert reply.answer
    assert result.tokens_in > 0 and result.tokens_out > 0
    assert result.done_reason == "stop"
    assert result.model == f"embedded:{MODEL}"
    assert result.seconds > 0


async def test_logprobs_give_each_tokens_likeliest_alternatives(backend: EmbeddedBackend) -> None:
    result = await backend.chat(QUESTION, schema=WorkerReply.model_json_schema(), logprobs=True)
    tokens = result.logprobs
    assert tokens is not None and "".join(t.token for t in tokens) in result.content
    for t in tokens:
        top = t.top
        assert top is not None and len(top) == TOP_LOGPROBS
        assert top == sorted(top, reverse=True) and top[0] <= 0.0
        assert sum(math.exp(a) for a in top) <= 1.0 + 1e-6  # one distribution's share
        assert t.logprob <= top[0] + 1e-6  # nothing beats the likeliest token


async def test_stream_pieces_concatenate_to_content(backend: EmbeddedBackend) -> None:
    pieces: list[str] = []
    loop_thread: list[bool] = []

    def on_token(piece: str) -> None:
        asyncio.get_running_loop()  # raises unless called on the event loop thread
        loop_thread.append(True)
        pieces.append(piece)

    messages: list[ChatMessage] = [{"role": "user", "content": "Say hello in five words."}]
    streamed = await backend.chat(messages, max_tokens=24, on_token=on_token)
    assert len(pieces) > 1
    assert "".join(pieces) == streamed.content
    # Greedy decoding on a fresh context: the non-streamed call gives the same text and counts.
    plain = await backend.chat(messages, max_tokens=24)
    assert plain.content == streamed.content
    assert (streamed.tokens_in, streamed.tokens_out) == (plain.tokens_in, plain.tokens_out)
    assert streamed.done_reason == plain.done_reason


async def test_max_tokens_caps_the_reply(backend: EmbeddedBackend) -> None:
    messages: list[ChatMessage] = [{"role": "user", "content": "Count from 1 to 100."}]
    result = await backend.chat(messages, max_tokens=5)
    assert result.tokens_out == 5
    assert result.done_reason == "length"


async def test_failing_callback_or_cancel_stops_generation(backend: EmbeddedBackend) -> None:
    messages: list[ChatMessage] = [{"role": "user", "content": "Count from 1 to 100."}]
    seen: list[str] = []

    def explode(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            raise KeyError("callback failed")

    with pytest.raises(KeyError, match="callback failed"):  # the caller's own error, unchanged
        await backend.chat(messages, max_tokens=200, on_token=explode)
    # Cancelled mid-generation: 0.3 s is well inside a 200-token reply on any CPU (the
    # 0.5B answers "Count from 1 to 100" in ~13 tokens, under a second on 2 idle threads).
    story: list[ChatMessage] = [
        {"role": "user", "content": "Write a long story about a lighthouse keeper."}
    ]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(backend.chat(story, max_tokens=200, on_token=seen.append), 0.3)
    # Both abandoned generations released the model promptly: a short call still works.
    result = await asyncio.wait_for(backend.chat(messages, max_tokens=3), 30)
    assert result.tokens_out == 3


async def test_embed_unit_vectors_and_similarity(backend: EmbeddedBackend) -> None:
    texts = [
        "The cat sat on the mat.",
        "A kitten is sitting on a rug.",
        "Quarterly corporate tax filing deadlines.",
        "",
    ]
    result = await backend.embed(texts)
    assert len(result.vectors) == len(texts)
    dims = {len(vector) for vector in result.vectors}
    assert len(dims) == 1 and dims.pop() > 100
    for vector in result.vectors:
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-6)
    assert result.tokens_in > 0

    def cos(a: list[float], b: list[float]) -> float:
        return math.fsum(x * y for x, y in zip(a, b, strict=True))

    cat, kitten, tax, _ = result.vectors
    assert cos(cat, kitten) > cos(cat, tax)
    assert (await backend.embed([])).vectors == []


async def test_concurrent_chats_on_one_model_queue(backend: EmbeddedBackend) -> None:
    schema = WorkerReply.model_json_schema()
    other = EmbeddedBackend(MODEL, backend.settings)  # separate backend, same llama instance
    results = await asyncio.gather(
        backend.chat(QUESTION, schema=schema, max_tokens=120),
        other.chat(QUESTION, schema=schema, max_tokens=120),
        backend.embed(["parallel embedding while chatting"]),
    )
    first, second = (WorkerReply.model_validate_json(r.content) for r in results[:2])
    assert first == second  # same prompt, greedy, fresh context each call
    assert len(results[2].vectors) == 1
    chat_instances = [key for key in _INSTANCES if key[1] == "chat" and MODEL in key[0]]
    assert len(chat_instances) == 1


async def test_context_overflow_is_a_clear_rejection(model_cache: Path) -> None:
    small = EmbeddedBackend(MODEL, EmbeddedSettings(cache_dir=model_cache, n_ctx=256))
    messages: list[ChatMessage] = [{"role": "user", "content": "hello " * 400}]
    with pytest.raises(BackendRejected) as info:
        await small.chat(messages, max_tokens=8)
    message = str(info.value)
    assert "n_ctx" in message and "256" in message and f"embedded:{MODEL}" in message


async def test_corrupted_model_file_is_refused_before_loading(
    model_cache: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "cache"
    corrupt.mkdir()
    path = corrupt / f"{MODEL}.gguf"
    shutil.copyfile(model_cache / f"{MODEL}.gguf", path)
    shutil.copyfile(model_cache / f"{MODEL}.gguf.sha256", corrupt / f"{MODEL}.gguf.sha256")
    with path.open("r+b") as fh:  # flip one byte in the middle of the weights
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    backend = EmbeddedBackend(MODEL, EmbeddedSettings(cache_dir=corrupt))
    with pytest.raises(ModelAssetError, match="checksum"):
        await backend.chat(QUESTION, max_tokens=4)
    with pytest.raises(ModelAssetError, match="checksum"):
        await backend.embed(["x"])
    assert not any(key[0] == str(path) for key in _INSTANCES)


async def test_a_system_prompts_prefix_is_evaluated_once_and_replies_do_not_change(
    model_cache: Path,
) -> None:
    rules = "Rules: reply in one short sentence. " * 12  # a long shared system prompt
    system: ChatMessage = {"role": "system", "content": f"You are a Python expert. {rules}"}
    asks = [
        [system, {"role": "user", "content": "Which built-in returns the length of a list?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}],
        [system, {"role": "user", "content": "Which keyword defines a function?"}],
    ]
    cold = EmbeddedSettings(cache_dir=model_cache, max_tokens=24, n_ctx=2048)
    # A separate instance (another n_ctx) answers each question on a fresh context.
    fresh = [
        EmbeddedSettings(cache_dir=model_cache, max_tokens=24, n_ctx=2048 + 64 * i)
        for i in range(3)
    ]
    backend = EmbeddedBackend(MODEL, cold)
    warm = [(await backend.chat(m)).content for m in asks]
    again = (await backend.chat(asks[0])).content  # the prefix is restored from its saved state
    alone = [
        (await EmbeddedBackend(MODEL, s).chat(m)).content for s, m in zip(fresh, asks, strict=True)
    ]

    assert warm == alone and again == alone[0]
    loaded = next(v for k, v in _INSTANCES.items() if k[1] == "chat" and k[2] == 2048)
    assert loaded.prefixes is not None
    # The long system prompt's prefix: evaluated once, then restored twice. "Be brief." is
    # too short a prefix to be worth a saved state (the context is reset as before).
    assert loaded.prefixes.misses == 1 and loaded.prefixes.hits >= 2


def _new_process(n_ctx: int) -> None:
    """Forget the loaded instance, as a new process would not have it."""
    key = next(k for k in _INSTANCES if k[1] == "chat" and k[2] == n_ctx)
    _INSTANCES.pop(key).llama.close()


async def test_a_saved_prefix_serves_the_next_process_and_a_corrupt_one_is_rebuilt(
    model_cache: Path, tmp_path: Path
) -> None:
    for name in (f"{MODEL}.gguf", f"{MODEL}.gguf.sha256"):  # a cache of its own
        (tmp_path / name).symlink_to(model_cache / name)
    rules = "Rules: answer in a few words, from what you know. " * 10
    ask: list[ChatMessage] = [
        {"role": "system", "content": f"You are a Python expert. {rules}"},
        {"role": "user", "content": "Which keyword defines a function?"},
    ]
    settings = EmbeddedSettings(cache_dir=tmp_path, max_tokens=16, n_ctx=1536)

    async def answer() -> tuple[str, tuple[int, int, int]]:
        backend = EmbeddedBackend(MODEL, settings)
        reply = (await backend.chat(ask)).content
        prefixes = backend._loaded["chat"].prefixes
        assert prefixes is not None
        return reply, (prefixes.misses, prefixes.loaded, prefixes.hits)

    first, counts = await answer()
    assert counts == (1, 0, 0)  # evaluated, then saved
    (saved,) = (tmp_path / "prefix-states").glob("*.kv")
    assert saved.stat().st_mode & 0o777 == 0o600

    _new_process(1536)
    again, counts = await answer()
    assert (again, counts) == (first, (0, 1, 1))  # restored from disk: the same reply

    data = bytearray(saved.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the KV values
    saved.write_bytes(bytes(data))
    _new_process(1536)
    rebuilt, counts = await answer()
    assert (rebuilt, counts) == (first, (1, 0, 0))  # refused, evaluated again, same reply
    assert saved.read_bytes() != bytes(data)  # and saved whole again
    _new_process(1536)
