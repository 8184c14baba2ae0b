"""Embedded engine: llama-cpp-python in-process, with the bundled GGUF models.

Each model file is loaded once per process per mode (chat, embedding) and
shared by every :class:`EmbeddedBackend` that names it. A llama.cpp context is
not thread-safe, so every loaded instance has its own lock; all llama calls run
in a worker thread (``asyncio.to_thread``) holding it, and parallel subtasks on
the same model queue instead of crashing. ``llama_cpp`` is imported lazily, so
this module imports fine without the ``embedded`` extra.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from tandem.workers.backends._base import ChatMessage, ChatResult, EmbedResult, TokenCallback
from tandem.workers.backends._bundled import EXTRA_INSTALL_COMMAND, ensure_model
from tandem.workers.backends._logprobs import LogprobRecorder
from tandem.workers.backends._prefix import PrefixCache
from tandem.workers.backends._threads import budget
from tandem.workers.errors import BackendRejected, BadModelOutput, ModelAssetError, RunError

if TYPE_CHECKING:
    import llama_cpp

__all__ = ["EmbeddedBackend", "EmbeddedSettings"]

Mode = Literal["chat", "embed"]
T = TypeVar("T")

_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed (?:context window|batch size) of (\d+)")


class EmbeddedSettings(BaseModel):
    """The ``[embedded]`` section of the configuration."""

    cache_dir: Path | None = None
    """Where assembled GGUF files are cached; ``None`` = ``$TANDEM_MODEL_CACHE`` or the user
    cache dir."""
    n_ctx: int = Field(default=4096, ge=128)
    """Context window in tokens (prompt + reply); also the longest text embedded whole."""
    n_threads: int | None = Field(default=None, ge=1)
    """CPU threads for generation; ``None`` = the cores free right now, shared between the
    models running at once (see :mod:`._threads`: on a busy 2-core machine 2 threads were
    ~10× slower than 1, on an idle one ~2× faster)."""
    n_threads_batch: int | None = Field(default=None, ge=1)
    """CPU threads for prompt processing; ``None`` = as ``n_threads`` when that is set, else
    the free cores like it."""
    prefix_cache: bool = True
    """Keep the KV state of each system prompt's prefix and reuse it on later calls with the
    same system prompt (a worker's prompt starts with the same ~230 tokens every time)."""
    persist_prefixes: bool = True
    """Also save those states beside the model files (``prefix-states/``, owner-only) so a
    new process restores them instead of evaluating the prefix again: the first answer of
    each ``tandem ask`` starts seconds sooner. Only system prompts are saved, never a user's
    text."""
    seed: int = 42
    """Sampling seed, set on every call so replies are reproducible."""
    max_tokens: int = Field(default=512, ge=1)
    """Default cap on generated tokens when a call does not give one."""
    repeat_penalty: float = Field(default=1.1, ge=1.0, le=2.0)
    """Penalty on tokens generated recently (llama.cpp's ``repeat_penalty``; Ollama's default
    is the same 1.1): a small model that starts repeating a sentence is pushed off the loop
    instead of running to the token cap. 1.0 turns it off."""


@dataclass
class _Loaded:
    """One llama instance and the lock that serialises every call on it."""

    llama: llama_cpp.Llama
    settings: EmbeddedSettings = field(default_factory=EmbeddedSettings)
    lock: threading.Lock = field(default_factory=threading.Lock)
    prefixes: PrefixCache | None = None
    """Saved prompt prefixes (chat instances with ``prefix_cache``), created on first use."""

    def call(self, fn: Callable[[llama_cpp.Llama], T]) -> T:
        """Run ``fn`` on the instance, alone, with the threads it may use now."""
        with self.lock, budget.running():
            threads = _Threads(self.llama, self.settings)
            threads.apply()
            return fn(self.llama)

    def prepare(self, messages: Sequence[dict[str, Any]]) -> None:
        """Start a completion: restore (or evaluate and save) the prompt's shared prefix, or
        reset the context."""
        if not self.settings.prefix_cache:
            self.llama.reset()  # type: ignore[no-untyped-call]
            return
        if self.prefixes is None:
            self.prefixes = _prefix_cache(self.llama, self.settings)
        self.prefixes.prepare(messages)


def _prefix_cache(llm: llama_cpp.Llama, settings: EmbeddedSettings) -> PrefixCache:
    """The instance's prefix cache, saving states beside the model file when allowed."""
    if not settings.persist_prefixes:
        return PrefixCache(llm)
    import llama_cpp

    model = Path(llm.model_path)
    try:
        stat = model.stat()
    except OSError:
        return PrefixCache(llm)
    identity = (
        f"{model.name}:{stat.st_size}:{stat.st_mtime_ns}:"
        f"llama-cpp-python {llama_cpp.__version__}:n_ctx {settings.n_ctx}"
    )
    return PrefixCache(llm, directory=model.parent / "prefix-states", identity=identity)


class _Threads:
    """Sets an instance's threads: the configured counts, else its share of the free cores,
    re-read every few tokens as a logits processor (it runs in the generating thread)."""

    def __init__(self, llm: llama_cpp.Llama, settings: EmbeddedSettings) -> None:
        self.llm = llm
        self.settings = settings
        self.current: tuple[int, int] = (0, 0)
        self.tokens = 0

    def apply(self) -> None:
        import llama_cpp

        s = self.settings
        share = budget.share() if s.n_threads is None or s.n_threads_batch is None else 0
        n = s.n_threads or share
        wanted = (n, s.n_threads_batch or (s.n_threads or share))
        ctx = getattr(self.llm, "_ctx", None)  # a test double has none
        if wanted != self.current and ctx is not None:
            llama_cpp.llama_set_n_threads(ctx.ctx, *wanted)
            self.current = wanted

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.tokens += 1
        if self.tokens % 8 == 0:
            self.apply()
        return scores


_INSTANCES: dict[tuple[str, Mode, int], _Loaded] = {}
_LOAD_LOCK = threading.Lock()


@atexit.register
def _close_at_exit() -> None:
    """Free the loaded models while the interpreter is whole, then the two /dev/null files
    llama_cpp opens at import (else a ResourceWarning). A model left to ``Llama.__del__`` at
    shutdown prints "TypeError: 'NoneType' object is not callable" tracebacks on exit."""
    with _LOAD_LOCK:
        loaded = list(_INSTANCES.values())
        _INSTANCES.clear()
    for instance in loaded:
        with contextlib.suppress(Exception), instance.lock:
            instance.llama.close()
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        with contextlib.suppress(Exception):
            getattr(utils, name).close()


def _load(name: str, mode: Mode, settings: EmbeddedSettings) -> _Loaded:
    """Assemble/verify the model file and load it once per (path, mode, n_ctx)."""
    with _LOAD_LOCK:
        try:
            path = ensure_model(name, settings.cache_dir)  # refuses a corrupted file
        except OSError as exc:
            raise ModelAssetError(f"cannot read the model '{name}': {exc}") from exc
        key = (str(path), mode, settings.n_ctx)
        if key in _INSTANCES:
            return _INSTANCES[key]
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelAssetError(
                "the embedded engine needs llama-cpp-python", hint=f"run {EXTRA_INSTALL_COMMAND}"
            ) from exc
        extra: dict[str, Any] = {}
        if mode == "embed":  # a text must fit one batch to be mean-pooled whole
            extra = {
                "embedding": True,
                "pooling_type": llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                "n_batch": settings.n_ctx,
                "n_ubatch": settings.n_ctx,
            }
        log = io.StringIO()  # llama.cpp logs some notices even with verbose=False
        try:
            with contextlib.redirect_stderr(log):
                threads = settings.n_threads or budget.share()
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=settings.n_ctx,
                    n_threads=threads,
                    n_threads_batch=settings.n_threads_batch or threads,
                    seed=settings.seed,
                    verbose=False,
                    **extra,
                )
        except Exception as exc:
            raise ModelAssetError(
                f"llama.cpp could not load '{path}' ({mode}): {exc}",
                hint=log.getvalue().strip()[-500:] or None,
            ) from exc
        _INSTANCES[key] = loaded = _Loaded(llama, settings)
        return loaded


class _TokenCounter:
    """A no-op logits processor that counts sampled tokens (streams carry no usage)."""

    def __init__(self) -> None:
        self.prompt = 0
        self.sampled = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.sampled == 0:
            self.prompt = len(input_ids)
        self.sampled += 1
        return scores


class EmbeddedBackend:
    """A bundled GGUF model served in-process by llama-cpp-python.

    Args:
        name: A bundled model name (``qwen2.5-coder-0.5b``, ``qwen2.5-coder-1.5b``).
        settings: Engine settings; defaults when omitted.
    """

    where: Literal["local", "remote"] = "local"
    host: str | None = None

    def __init__(self, name: str, settings: EmbeddedSettings | None = None) -> None:
        self.name = name
        self.settings = settings or EmbeddedSettings()
        self.ref = f"embedded:{name}"
        self._loaded: dict[Mode, _Loaded] = {}

    async def _instance(self, mode: Mode) -> _Loaded:
        if mode not in self._loaded:
            self._loaded[mode] = await asyncio.to_thread(_load, self.name, mode, self.settings)
        return self._loaded[mode]

    def _translate(self, exc: Exception) -> RunError:
        if isinstance(exc, RunError):
            return exc
        match = _OVERFLOW.search(str(exc))
        if match:
            need, limit = match.groups()
            return BackendRejected(
                f"the input is {need} tokens but the context window is {limit} tokens",
                hint="raise n_ctx in the [embedded] config section, or shorten the input",
                model=self.ref,
            )
        return RunError(f"llama.cpp failed: {type(exc).__name__}: {exc}", model=self.ref)

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        on_token: TokenCallback | None = None,
        logprobs: bool = False,
    ) -> ChatResult:
        """Generate a reply; see :meth:`tandem.workers.backends._base.Backend.chat`.

        ``logprobs`` records each generated token's log-probability with a logits
        processor (see :mod:`._logprobs`), not llama.cpp's ``logits_all`` mode.

        The reply is streamed to ``on_token`` (called on the event loop thread) when given;
        an exception raised by ``on_token`` stops generation and propagates unchanged.
        Cancelling a streamed call stops generation at the next token; a non-streamed
        call that is cancelled still runs to completion in its thread (holding the model).

        Raises:
            ModelAssetError: The model is not installed or its file fails verification.
            BackendRejected: The prompt does not fit the context window.
            RunError: Any other llama.cpp failure.
        """
        loaded = await self._instance("chat")
        kwargs: dict[str, Any] = {
            "messages": list(messages),
            "temperature": temperature,
            "max_tokens": max_tokens or self.settings.max_tokens,
            "seed": self.settings.seed,
            "repeat_penalty": self.settings.repeat_penalty,
        }
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        recorder = LogprobRecorder() if logprobs else None
        if recorder is not None:
            kwargs["logits_processor"] = [recorder]
        start = time.perf_counter()
        if on_token is None:
            try:
                content, tokens_in, tokens_out, reason = await asyncio.to_thread(
                    loaded.call, lambda llm: _complete(loaded, kwargs)
                )
            except Exception as exc:
                raise self._translate(exc) from exc
        else:
            content, tokens_in, tokens_out, reason = await self._stream(loaded, kwargs, on_token)
        return ChatResult(
            content=content,
            model=self.ref,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            seconds=time.perf_counter() - start,
            done_reason=reason,
            logprobs=recorder.entries(loaded.llama) if recorder is not None else None,
        )

    async def _stream(
        self, loaded: _Loaded, kwargs: dict[str, Any], on_token: TokenCallback
    ) -> tuple[str, int, int, str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        stop = threading.Event()

        def put(piece: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone after a cancel
                loop.call_soon_threadsafe(queue.put_nowait, piece)

        def work(llm: llama_cpp.Llama) -> tuple[str, int, int, str]:
            try:
                if stop.is_set():  # abandoned while queued for the lock
                    return "", 0, 0, "cancelled"
                return _complete(loaded, kwargs, put, stop)
            finally:
                put(None)

        task = asyncio.ensure_future(asyncio.to_thread(loaded.call, work))
        try:
            while (piece := await queue.get()) is not None:
                on_token(piece)
        except BaseException:
            stop.set()  # the thread stops at the next token and releases the lock
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise
        try:
            return await task
        except Exception as exc:
            raise self._translate(exc) from exc

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed texts: one unit-length, mean-pooled vector per text, in order.

        Texts longer than ``n_ctx`` tokens are truncated to their first ``n_ctx`` tokens.

        Raises:
            ModelAssetError: The model is not installed or its file fails verification.
            RunError: llama.cpp failed, or returned the wrong number of vectors.
        """
        if not texts:
            return EmbedResult(vectors=[], model=self.ref)
        loaded = await self._instance("embed")
        # An empty string has no tokens and crashes llama.cpp's pooling; embed a space.
        inputs = [text or " " for text in texts]
        start = time.perf_counter()
        try:
            raw, tokens = await asyncio.to_thread(
                loaded.call, lambda llm: llm.embed(inputs, return_count=True)
            )
        except Exception as exc:
            raise self._translate(exc) from exc
        dim = loaded.llama.n_embd()
        if len(raw) != len(inputs) or any(len(vec) != dim for vec in raw):
            raise BadModelOutput(
                f"expected {len(inputs)} vectors of size {dim} from the embedding model",
                model=self.ref,
            )
        return EmbedResult(
            vectors=[_unit(vec) for vec in raw],
            model=self.ref,
            tokens_in=int(tokens),
            seconds=time.perf_counter() - start,
        )


def _complete(
    loaded: _Loaded,
    kwargs: dict[str, Any],
    put: Callable[[str | None], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[str, int, int, str]:
    """Run one chat completion (holding ``loaded``'s lock); stream pieces to ``put`` if given.

    The reply never depends on earlier calls: the context starts from the prompt's shared
    prefix, restored or evaluated on its own exactly as on a first call (``._prefix``).
    """
    import llama_cpp

    llm = loaded.llama
    loaded.prepare(kwargs["messages"])
    threads = _Threads(llm, loaded.settings)
    extra = list(kwargs.get("logits_processor", []))  # e.g. the logprob recorder
    if put is None:
        response: Any = llm.create_chat_completion(
            **{**kwargs, "logits_processor": llama_cpp.LogitsProcessorList([threads, *extra])}
        )
        choice, usage = response["choices"][0], response.get("usage") or {}
        return (
            choice["message"].get("content") or "",
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            choice.get("finish_reason") or "",
        )
    counter = _TokenCounter()
    processors = llama_cpp.LogitsProcessorList([counter, threads, *extra])
    chunks: Any = llm.create_chat_completion(
        **{**kwargs, "logits_processor": processors}, stream=True
    )
    pieces: list[str] = []
    reason = ""
    for chunk in chunks:
        choice = chunk["choices"][0]
        piece = choice["delta"].get("content")
        if piece:
            pieces.append(piece)
            put(piece)
        reason = choice.get("finish_reason") or reason
        if stop is not None and stop.is_set():
            chunks.close()
            reason = "cancelled"
            break
    # The end-of-generation token is sampled but not part of the reply.
    tokens_out = counter.sampled - (1 if reason == "stop" else 0)
    return "".join(pieces), counter.prompt, max(tokens_out, 0), reason


def _unit(vec: Sequence[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vec))
    return [x / norm for x in vec] if norm > 0 else [float(x) for x in vec]
