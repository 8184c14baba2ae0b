"""Reusing llama.cpp's work on a prompt's shared prefix (the system prompt and rules).

Every call of one worker starts with the same few hundred tokens: its system prompt,
the rules, the chat template up to the user's turn. :class:`PrefixCache` evaluates that
prefix once, keeps its KV state (a few MB), and later restores it instead of evaluating
it again; llama-cpp-python's own prefix matching then evaluates only the rest.

Replies stay reproducible: the prefix is always evaluated as a batch of its own — on a
cache miss too — so the KV state a call starts from is the same whether it was computed
now or restored (llama.cpp's numbers depend on how a prompt is split into batches, so
evaluating the whole prompt at once could differ in the last bits and change a greedy
reply). Measured on real worker prompts: ~230 of ~960 prompt tokens skipped, 15.3 → 10.4 s
per call (median, 0.5B, 1 thread, a busy 2-core machine).

With a ``directory`` the saved states also outlive the process: each is written there
(owner-only, with a checksum) the first time it is evaluated, and a new process restores it
instead of evaluating the prefix again — so the first call of ``tandem ask`` or of a demo
question skips it too. A state is keyed by the model file (name, size, mtime), the
llama-cpp-python version, the context size and the prefix's tokens; llama.cpp's KV values
do not depend on the thread count, so a state saved with one thread serves two. A prefix
holds only the system message (tandem's own prompts and a worker's configured
``system_prompt``), never a user's turn. A file that is unreadable, corrupted or refused by
llama.cpp is deleted and the prefix evaluated as on a miss.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import llama_cpp

__all__ = ["PrefixCache"]

MIN_PREFIX = 32
"""Shorter shared prefixes are not worth a saved state."""

DISK_ENTRIES = 48
"""Saved states kept on disk per directory (the oldest are deleted; ~3 MB each for a 0.5B
worker's prefix, ~6 MB for the 1.5B supervisor's)."""

_MAGIC = b"tandem-kv-1\n"


class PrefixCache:
    """Saved KV states of prompt prefixes for one llama.cpp instance (LRU).

    Not thread-safe: use it while holding the instance's lock.

    Args:
        llm: The instance (chat mode).
        entries: Prefixes kept (each ~12 KB per token on the 0.5B model, ~28 KB on the 1.5B).
        directory: Where states are also saved for later processes; ``None`` = memory only.
        identity: What the states depend on besides the tokens (model file, engine version,
            context size); part of each file's key.
    """

    def __init__(
        self,
        llm: llama_cpp.Llama,
        entries: int = 16,
        *,
        directory: Path | None = None,
        identity: str = "",
    ) -> None:
        self.llm = llm
        self.entries = entries
        self.directory = directory
        self.identity = identity
        self._states: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._formatter = _formatter(llm)
        self.hits = 0
        self.misses = 0
        self.loaded = 0
        """Prefixes restored from a state another process saved (counted in ``hits`` too)."""

    def prefix(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """The tokens every prompt with this system message starts with (through the
        chat template up to the user's text); empty when they cannot be known."""
        if self._formatter is None or not messages or messages[0].get("role") != "system":
            return []
        full = self._tokens(messages)
        probe = self._tokens([messages[0], {"role": "user", "content": ""}])
        n = 0
        for a, b in zip(full, probe, strict=False):
            if a != b:
                break
            n += 1
        return full[:n] if n >= MIN_PREFIX else []

    def _tokens(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        assert self._formatter is not None
        result = self._formatter(messages=list(messages))
        return list(
            self.llm.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
        )

    def prepare(self, messages: Sequence[dict[str, Any]]) -> bool:
        """Put the prompt's prefix in the KV cache (restored, or evaluated on its own and
        saved) so the completion that follows evaluates only the rest. ``False``: no
        usable prefix; the instance was reset as before."""
        import llama_cpp

        llm = self.llm
        tokens = self.prefix(messages)
        if not tokens:
            llm.reset()  # type: ignore[no-untyped-call]
            return False
        n = len(tokens)
        key = tuple(tokens)
        ctx = llm._ctx.ctx
        if llm.n_tokens >= n and list(llm.input_ids[:n]) == tokens:
            llm._ctx.kv_cache_seq_rm(-1, n, -1)  # already there: drop what followed it
            llm.n_tokens = n
            self.hits += 1
        elif key in self._states or self._from_disk(key):
            buf, size = self._states[key]
            self._states.move_to_end(key)
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            if llama_cpp.llama_state_seq_set_data(ctx, buf, size, 0) != size:
                del self._states[key]
                self._forget(key)
                llm.reset()  # type: ignore[no-untyped-call]
                return False
            llm.input_ids[:n] = tokens
            llm.n_tokens = n
            self.hits += 1
        else:
            llm.reset()  # type: ignore[no-untyped-call]
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            llm.eval(tokens)
            size = llama_cpp.llama_state_seq_get_size(ctx, 0)
            buf = (ctypes.c_uint8 * size)()
            llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
            self._keep(key, buf, size)
            self._to_disk(key, bytes(buf))
            self.misses += 1
        return True

    def _keep(self, key: tuple[int, ...], buf: Any, size: int) -> None:
        self._states[key] = (buf, size)
        while len(self._states) > self.entries:
            self._states.popitem(last=False)

    def _file(self, key: tuple[int, ...]) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha256(self.identity.encode() + b"\0" + array("q", key).tobytes())
        return self.directory / f"{digest.hexdigest()[:40]}.kv"

    def _from_disk(self, key: tuple[int, ...]) -> bool:
        """Load a state a process saved before into memory; ``False`` when there is none
        (or it was unusable, and is deleted)."""
        path = self._file(key)
        if path is None or not path.is_file():
            return False
        try:
            data = path.read_bytes()
        except OSError:
            return False
        head = len(_MAGIC) + 32
        payload = data[head:]
        if (
            data[: len(_MAGIC)] != _MAGIC
            or hashlib.sha256(payload).digest() != data[len(_MAGIC) : head]
            or not payload
        ):
            self._forget(key)
            return False
        buf = (ctypes.c_uint8 * len(payload)).from_buffer_copy(payload)
        self._keep(key, buf, len(payload))
        self.loaded += 1
        return True

    def _to_disk(self, key: tuple[int, ...], payload: bytes) -> None:
        """Save a state for later processes (best effort: a full or read-only disk only
        means the next process evaluates the prefix itself)."""
        path = self._file(key)
        if path is None:
            return
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
            saved = sorted(path.parent.glob("*.kv"), key=lambda p: p.stat().st_mtime_ns)
            for old in saved[:-DISK_ENTRIES]:
                old.unlink(missing_ok=True)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _forget(self, key: tuple[int, ...]) -> None:
        path = self._file(key)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def _formatter(llm: llama_cpp.Llama) -> Any:
    """The chat template formatter llama-cpp-python itself uses for a GGUF template
    (``chat_template.default``); ``None`` for other chat formats (no prefix reuse)."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template or llm.chat_format != "chat_template.default":
        return None
    from llama_cpp import llama_chat_format

    eos, bos = llm.token_eos(), llm.token_bos()
    return llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
