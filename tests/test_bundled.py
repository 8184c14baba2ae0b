"""Fast tests of bundled-model assembly: fake part distributions, no llama, no real model."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

import pytest

from tandem.workers.backends import _bundled
from tandem.workers.backends._bundled import (
    BUNDLED_MODELS,
    EXTRA_INSTALL_COMMAND,
    ModelAsset,
    ModelPart,
    default_cache_dir,
    ensure_model,
    get_asset,
    verify_file,
)
from tandem.workers.errors import ModelAssetError

PART_SIZES = (300_000, 123_457, 77)


def _install_fake_parts(
    root: Path, prefix: str, contents: list[bytes], *, skip: frozenset[int] = frozenset()
) -> tuple[ModelPart, ...]:
    """Lay out one data wheel per part (package dir + dist-info) under ``root``."""
    parts = []
    for i, data in enumerate(contents, start=1):
        dist, package = f"{prefix}-part{i}", f"{prefix.replace('-', '_')}_part{i}"
        resource = f"{package}/data/part{i:02d}.bin"
        parts.append(ModelPart(distribution=dist, version="1.0.0", resource=resource))
        if i in skip:
            continue
        (root / package / "data").mkdir(parents=True)
        (root / resource).write_bytes(data)
        info = root / f"{package}-1.0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n")
    return tuple(parts)


@pytest.fixture
def fake_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> tuple[ModelAsset, bytes]:
    """A registered fake model whose parts are found through importlib.metadata."""
    contents = [os.urandom(n) for n in PART_SIZES]
    blob = b"".join(contents)
    skip = frozenset(getattr(request, "param", ()))
    site = tmp_path / "site"
    site.mkdir()
    prefix = f"tandem-fake-{abs(hash(tmp_path)) % 10**8}"
    parts = _install_fake_parts(site, prefix, contents, skip=skip)
    monkeypatch.syspath_prepend(str(site))
    asset = ModelAsset(
        name="fake-model",
        description="test asset",
        parts=parts,
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
    )
    monkeypatch.setitem(BUNDLED_MODELS, asset.name, asset)
    return asset, blob


def test_assembles_and_verifies(fake_model: tuple[ModelAsset, bytes], tmp_path: Path) -> None:
    asset, blob = fake_model
    cache = tmp_path / "cache"
    path = ensure_model(asset.name, cache)
    assert path == cache / "fake-model.gguf"
    assert path.read_bytes() == blob
    assert (cache / "fake-model.gguf.sha256").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["fake-model.gguf", "fake-model.gguf.sha256"]


def test_reuses_cached_file_without_reassembly_or_rehash(
    fake_model: tuple[ModelAsset, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset, _ = fake_model
    cache = tmp_path / "cache"
    first = ensure_model(asset.name, cache).stat()

    def no_hash(*_: object) -> str:
        raise AssertionError("a verified file must not be re-hashed")

    monkeypatch.setattr(_bundled, "_hash_file", no_hash)
    second = ensure_model(asset.name, cache).stat()
    assert (second.st_ino, second.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_missing_sidecar_forces_one_rehash(
    fake_model: tuple[ModelAsset, bytes], tmp_path: Path
) -> None:
    asset, _ = fake_model
    path = ensure_model(asset.name, tmp_path)
    sidecar = tmp_path / "fake-model.gguf.sha256"
    sidecar.unlink()
    inode = path.stat().st_ino
    seen: list[tuple[int, int]] = []
    assert ensure_model(asset.name, tmp_path, progress=lambda d, t: seen.append((d, t))) == path
    assert seen[-1] == (asset.size, asset.size)  # it hashed the whole file
    assert sidecar.is_file()
    assert path.stat().st_ino == inode  # verified in place, not re-assembled


def test_progress_reaches_total(fake_model: tuple[ModelAsset, bytes], tmp_path: Path) -> None:
    asset, _ = fake_model
    seen: list[tuple[int, int]] = []
    ensure_model(asset.name, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert seen, "progress was never called"
    assert all(total == asset.size for _, total in seen)
    dones = [done for done, _ in seen]
    assert dones == sorted(dones)
    assert dones[-1] == asset.size


@pytest.mark.parametrize("fake_model", [(2,)], indirect=True)
def test_missing_part_names_the_package_and_the_install_command(
    fake_model: tuple[ModelAsset, bytes], tmp_path: Path
) -> None:
    asset, _ = fake_model
    cache = tmp_path / "cache"
    with pytest.raises(ModelAssetError) as info:
        ensure_model(asset.name, cache)
    message = str(info.value)
    assert asset.parts[1].distribution in info.value.message
    assert asset.parts[0].distribution not in info.value.message  # only the missing one
    assert asset.pip_command in message
    assert f"'{asset.parts[1].distribution}==1.0.0'" in asset.pip_command
    assert EXTRA_INSTALL_COMMAND in message
    assert not cache.exists() or not any(cache.iterdir())


def test_checksum_mismatch_leaves_nothing_behind(
    fake_model: tuple[ModelAsset, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asset, _ = fake_model
    wrong = ModelAsset(asset.name, asset.description, asset.parts, asset.size, "0" * 64)
    monkeypatch.setitem(BUNDLED_MODELS, asset.name, wrong)
    cache = tmp_path / "cache"
    with pytest.raises(ModelAssetError, match="sha256"):
        ensure_model(asset.name, cache)
    assert list(cache.iterdir()) == []


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_corrupted_cached_file_is_refused(
    fake_model: tuple[ModelAsset, bytes], tmp_path: Path, keep_mtime: bool
) -> None:
    asset, _ = fake_model
    path = ensure_model(asset.name, tmp_path)
    before = path.stat()
    _flip_byte(path, asset.size // 2)
    if keep_mtime:  # even a sneaky edit that restores the mtime is caught (ctime changes)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(ModelAssetError, match="refusing to load"):
        ensure_model(asset.name, tmp_path)
    with pytest.raises(ModelAssetError, match="checksum"):
        verify_file(path, asset.sha256)
    assert path.exists()  # refused, not silently replaced


def test_wrong_size_cached_file_is_refused_and_force_repairs(
    fake_model: tuple[ModelAsset, bytes], tmp_path: Path
) -> None:
    asset, blob = fake_model
    path = ensure_model(asset.name, tmp_path)
    with path.open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelAssetError, match="bytes"):
        ensure_model(asset.name, tmp_path)
    assert ensure_model(asset.name, tmp_path, force=True).read_bytes() == blob


def test_verify_file_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelAssetError, match="does not exist"):
        verify_file(tmp_path / "nope.gguf", "0" * 64)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ModelAssetError) as info:
        ensure_model("no-such-model")
    assert "qwen2.5-coder-0.5b" in str(info.value)
    assert "qwen2.5-coder-1.5b" in str(info.value)


def test_default_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_MODEL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("TANDEM_MODEL_CACHE")
    assert default_cache_dir().parts[-1] == "models"
    assert "tandem" in default_cache_dir().parts


@pytest.mark.parametrize(
    ("name", "count", "version"),
    [("qwen2.5-coder-0.5b", 6, "0.9.0"), ("qwen2.5-coder-1.5b", 22, "0.2.0")],
)
def test_real_registry_entries(name: str, count: int, version: str) -> None:
    asset = get_asset(name)
    assert len(asset.parts) == count
    assert len(asset.sha256) == 64 and int(asset.sha256, 16) >= 0
    assert asset.pip_command.count(f"=={version}'") == count
    assert asset.parts[-1].resource.endswith(f"data/part{count:02d}.bin")
    # When the parts are installed, their sizes add up to the assembled size (cheap: stat only).
    try:
        importlib.metadata.distribution(asset.parts[0].distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{asset.parts[0].distribution} is not installed")
    paths = [part.locate() for part in asset.parts]
    assert None not in paths
    assert sum(p.stat().st_size for p in paths if p is not None) == asset.size


def test_commands_show_a_model_bar_only_when_there_is_work(
    fake_model: tuple[ModelAsset, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tandem ask` and friends prepare the models first: the first run shows each model
    assembled (a bar ending in ✓), a later run with the model cached and vouched for prints
    nothing, and a cached file that must be re-hashed shows its bar again."""
    from tandem.agents.shell._common import prepare_models
    from tandem.graphs import Runtime, load_config

    asset, _ = fake_model
    cache = tmp_path / "cache"
    config = tmp_path / "tandem.toml"
    config.write_text(
        f"[embedded]\ncache_dir = {str(cache)!r}\n"
        '[[workers]]\nname = "notes"\ndescription = "my notes"\n',
        encoding="utf-8",
    )
    rt = Runtime(load_config(config))

    assert prepare_models(rt, names=[asset.name]) == [cache / "fake-model.gguf"]
    assert "model fake-model ✓" in capsys.readouterr().err
    assert prepare_models(rt, names=[asset.name]) == [cache / "fake-model.gguf"]
    assert capsys.readouterr().err == ""  # not even a blank line
    (cache / "fake-model.gguf.sha256").unlink()
    prepare_models(rt, names=[asset.name])
    assert "model fake-model ✓" in capsys.readouterr().err
