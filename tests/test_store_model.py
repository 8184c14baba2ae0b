"""Stores know their embedding model: reused, rebuilt (built-in/plugin corpora) or refused
(user stores), never mixed; ``tandem ingest --rebuild`` fixes a refused one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings

from tandem.graphs import Runtime, TandemConfig
from tandem.workers import StoreError, WorkerSpec, WorkerStore
from tandem.workers.backends import EmbedResult, OllamaBackend, OllamaSettings
from tandem.workers.embedding import TandemEmbeddingFunction
from tandem.workers.store import open_client
from tandem.workers.testing import FakeOllama, FakeOpenAI, fake_config_toml, hash_embed

OLD, NEW = "nomic-embed-text", "embeddinggemma"
OLD_REF, NEW_REF = f"ollama:{OLD}", f"ollama:{NEW}"
TANDEM = str(Path(sys.executable).parent / "tandem")


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(chat_models=("qwen2.5:1.5b",), embed_models=(OLD, NEW)) as fake:
        yield fake


def _knowledge(tmp_path: Path) -> Path:
    docs = tmp_path / "knowledge"
    if docs.exists():
        return docs
    docs.mkdir()
    (docs / "deposits.md").write_text(
        "# Deposits\n\nA landlord may ask for a deposit of at most six weeks' rent. "
        "It is returned within 21 days.\n"
    )
    (docs / "pets.md").write_text("# Pets\n\nTenants may keep a cat unless the lease forbids it.\n")
    return docs


def _spec(tmp_path: Path, origin: str) -> WorkerSpec:
    return WorkerSpec(
        name="tenancy",
        description="Renting a home: deposits and pets.",
        model="ollama:qwen2.5:1.5b",
        knowledge=(_knowledge(tmp_path),),
        origin=origin,
    )


def _runtime(ollama: FakeOllama, tmp_path: Path, embed: str, origin: str) -> Runtime:
    config = TandemConfig(
        ollama={"host": ollama.url},
        supervisor={"model": "openai/fake-large", "api_base": "http://127.0.0.1:9/v1"},
        router={"embed_model": embed},
        workers=[_spec(tmp_path, origin)],
        data_dir=tmp_path / "data",
    )
    return Runtime(config)


def _embedded_models(ollama: FakeOllama) -> set[str]:
    return {r.body["model"] for r in ollama.requests_to("/api/embed")}


async def test_same_model_reuses_the_store_and_records_model_and_dimension(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    first = _runtime(ollama, tmp_path, OLD_REF, "builtin")
    reports = await first.ensure_ingested()
    assert reports["tenancy"].files == 2 and reports["tenancy"].rebuilt_from is None
    assert await first.stores["tenancy"].embedding_model() == (OLD_REF, 256)

    ollama.reset()
    again = _runtime(ollama, tmp_path, OLD_REF, "builtin")
    assert await again.ensure_ingested() == {}
    assert ollama.requests_to("/api/embed") == []  # nothing re-embedded


async def test_builtin_store_with_another_model_is_rebuilt_with_one_line_saying_why(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    old = _runtime(ollama, tmp_path, OLD_REF, "builtin")
    await old.ensure_ingested()
    extra = tmp_path / "mine.md"  # a user's own file, ingested into the built-in store
    extra.write_text("# Parking\n\nEach flat has one parking space.\n")
    await old.stores["tenancy"].ingest([extra])
    before = await old.stores["tenancy"].count()

    ollama.reset()
    new = _runtime(ollama, tmp_path, NEW_REF, "builtin")
    notices: list[str] = []
    progress: list[tuple[str, int, int]] = []
    reports = await new.ensure_ingested(
        notice=notices.append, progress=lambda w, d, t, _c: progress.append((w, d, t))
    )
    assert notices == [f"store 'tenancy' was built with {OLD_REF}; rebuilding with {NEW_REF}"]
    assert reports["tenancy"].rebuilt_from == OLD_REF and reports["tenancy"].files == 2
    assert progress and progress[-1] == ("tenancy", 2, 2)
    store = new.stores["tenancy"]
    assert await store.embedding_model() == (NEW_REF, 256)
    assert await store.count() == before  # the user's own chunk survived, re-embedded
    assert _embedded_models(ollama) == {NEW}
    embedded = {t for r in ollama.requests_to("/api/embed") for t in r.body["input"]}
    assert "Parking\nEach flat has one parking space." in embedded
    top = await store.search(hash_embed("parking space flat"), 1)
    assert top[0].metadata["source"] == "mine.md"

    # Chroma's own view agrees: reopened without tandem, it embeds with the new model.
    client = chromadb.PersistentClient(
        path=str(tmp_path / "data" / "stores"), settings=Settings(anonymized_telemetry=False)
    )
    assert {c.name for c in client.list_collections()} == {"tandem-tenancy"}
    ef = client.get_collection("tandem-tenancy").configuration_json["embedding_function"]
    assert ef["config"]["model"] == NEW_REF


async def test_user_store_with_another_model_is_refused_naming_the_fix(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    await _runtime(ollama, tmp_path, OLD_REF, "config").ensure_ingested()
    ollama.reset()
    new = _runtime(ollama, tmp_path, NEW_REF, "config")
    with pytest.raises(StoreError) as info:
        await new.ensure_ingested()
    message = str(info.value)
    assert info.value.problem == "model" and info.value.worker == "tenancy"
    assert f"store 'tenancy' was built with {OLD_REF}" in message and NEW_REF in message
    assert "tandem ingest --rebuild tenancy" in message
    store = new.stores["tenancy"]
    with pytest.raises(StoreError, match="--rebuild tenancy"):
        await store.search(hash_embed("deposit"), 1)
    with pytest.raises(StoreError, match="--rebuild tenancy"):
        await store.ingest([tmp_path / "knowledge"])
    assert ollama.requests_to("/api/embed") == []  # nothing was mixed in
    assert await store.embedding_model() == (OLD_REF, 256)

    # The fix the message names, through the API: re-embed, then the run goes on.
    assert await store.rebuild() == 2
    assert await store.embedding_model() == (NEW_REF, 256)
    reports = await new.ensure_ingested()
    assert reports["tenancy"].files == 2  # the marker was not carried over: re-ingested
    assert (await store.search(hash_embed("cat lease"), 1))[0].metadata["source"] == "pets.md"


async def test_stores_from_before_models_were_recorded_use_their_embedding_function_config(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    path = tmp_path / "stores"
    client = chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False)
    )
    legacy = client.get_or_create_collection(
        "tandem-tenancy",
        embedding_function=TandemEmbeddingFunction(OLD_REF, ollama.url),  # type: ignore[arg-type]
    )  # what the previous version created: no model in the metadata
    legacy.add(ids=["a:0"], documents=["Deposits"], embeddings=[hash_embed("Deposits")])
    assert legacy.metadata is None

    other = WorkerStore("tenancy", client, OllamaBackend(NEW, OllamaSettings(host=ollama.url)))
    assert await other.stale_model() == OLD_REF
    with pytest.raises(StoreError, match=f"built with {OLD_REF}"):
        await other.count()
    same = WorkerStore("tenancy", client, OllamaBackend(OLD, OllamaSettings(host=ollama.url)))
    assert await same.count() == 1
    assert await same.embedding_model() == (OLD_REF, None)  # recorded from now on
    assert client.get_collection("tandem-tenancy").metadata == {"tandem_embed_model": OLD_REF}
    assert open_client(path) is not None


async def test_an_empty_store_adopts_the_new_model(ollama: FakeOllama, tmp_path: Path) -> None:
    client = open_client(tmp_path / "stores")
    old = WorkerStore("tenancy", client, OllamaBackend(OLD, OllamaSettings(host=ollama.url)))
    assert await old.count() == 0
    new = WorkerStore("tenancy", client, OllamaBackend(NEW, OllamaSettings(host=ollama.url)))
    assert await new.stale_model() is None
    assert await new.count() == 0
    assert await new.embedding_model() == (NEW_REF, None)


class _Shrunk:
    """The same model reference, but its vectors changed size (a re-pulled model)."""

    where = "local"
    host = None

    def __init__(self, inner: OllamaBackend) -> None:
        self.inner, self.ref = inner, inner.ref

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        result = await self.inner.embed(texts)
        return result.model_copy(update={"vectors": [v[:128] for v in result.vectors]})


async def test_a_changed_dimension_is_refused(ollama: FakeOllama, tmp_path: Path) -> None:
    client = open_client(tmp_path / "stores")
    backend = OllamaBackend(OLD, OllamaSettings(host=ollama.url))
    await WorkerStore("tenancy", client, backend).ingest([_knowledge(tmp_path)])
    shrunk = WorkerStore("tenancy", client, _Shrunk(backend))  # type: ignore[arg-type]
    extra = tmp_path / "new.md"
    extra.write_text("Something new.")
    with pytest.raises(StoreError, match="256-dimensional vectors but ollama:nomic-embed-text"):
        await shrunk.ingest([extra])


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(TANDEM_PLUGINS="", LITELLM_LOCAL_MODEL_COST_MAP="True", COLUMNS="200")
    return subprocess.run(
        [TANDEM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration
def test_cli_refuses_a_user_store_then_ingest_rebuild_fixes_it(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    docs = _knowledge(tmp_path)
    spec = _spec(tmp_path, "config").model_copy(update={"knowledge": ()})
    with FakeOpenAI() as openai:
        toml = fake_config_toml(ollama, openai, tmp_path / "data", workers=[spec])
    (tmp_path / "tandem.toml").write_text(toml)
    first = _cli(["ingest", "tenancy", str(docs)], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "2 files · 2 chunks added" in first.stdout

    (tmp_path / "tandem.toml").write_text(toml.replace(OLD_REF, NEW_REF))
    refused = _cli(["ingest", "tenancy", str(docs)], tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    text = " ".join(refused.stderr.split())
    assert f"store 'tenancy' was built with {OLD_REF} but the embedding model is now" in text
    assert "run `tandem ingest --rebuild tenancy`" in text
    doctor = _cli(["doctor"], tmp_path)
    assert doctor.returncode == 1
    assert (
        f"✗ store tenancy: built with {OLD_REF}, the embedding model is now {NEW_REF}  "
        "→ fix: tandem ingest --rebuild tenancy" in doctor.stdout
    )

    ollama.reset()
    fixed = _cli(["ingest", "--rebuild", "tenancy"], tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert f"store rebuilt with {NEW_REF} (was {OLD_REF}); 2 chunks re-embedded" in " ".join(
        fixed.stderr.split()
    )
    assert _embedded_models(ollama) == {NEW}
    again = _cli(["ingest", "tenancy", str(docs)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 files · 0 chunks added · 2 unchanged" in again.stdout
