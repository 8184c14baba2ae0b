"""A worker plugin as a real pip package, end to end, in a fresh virtual environment.

The venv reuses tandem and its dependencies from the development environment through a
``.pth`` file (nothing is downloaded); ``examples/tandem-maritime`` is built and installed
into it with pip, offline. The ``tandem`` command then runs in that venv as a subprocess
against the fake Ollama and fake OpenAI servers: the plugin is listed with its
distribution and version, answers a question in its domain with citations from its
bundled corpus, survives a broken plugin installed next to it, and disappears on
``pip uninstall``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tandem.workers.ask import POOL
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.testing import FakeOllama, FakeOpenAI

# builds a virtual environment and runs `tandem` in it
pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tandem-maritime"
CORPUS = sorted(p.name for p in (EXAMPLE / "tandem_maritime" / "corpus").glob("*.md"))
PLUGIN_MODEL = "qwen2.5:0.5b"  # the plugin's own default model (ollama:qwen2.5:0.5b)
DEMO_MODEL = "qwen2.5:1.5b"
QUESTION = "What is the speed limit for boats inside the breakwater of Saltmere harbour?"

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "tandem-broken"
version = "0.0.1"

[project.entry-points."tandem.workers"]
broken = "tandem_broken:specs"

[tool.setuptools]
packages = ["tandem_broken"]
"""
BROKEN_INIT = 'raise RuntimeError("the plugin lost its configuration file")\n'


@dataclass
class Venv:
    """A fresh venv with tandem importable and the example plugin installed."""

    root: Path
    python: Path
    work: Path

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TANDEM_", "PYTHON", "PIP_")) and k != "VIRTUAL_ENV"
        }
        # TANDEM_PLUGINS unset, as on a user's machine: every installed plugin loads.
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", PIP_NO_INDEX="1")
        env["VIRTUAL_ENV"] = str(self.root)
        return env

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args],
            cwd=cwd or self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def pip(self, *args: str) -> None:
        proc = self.run("-m", "pip", *args, "--disable-pip-version-check", "-q")
        assert proc.returncode == 0, proc.stderr

    def install(self, source: Path) -> None:
        # A copy, so that the build never writes into the repository.
        copy = self.work / "src" / source.name
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
        self.pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(copy))

    def tandem(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("-c", "from tandem.agents.shell.cli import main; main()", *args)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("plugin-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    host = sysconfig.get_paths()["purelib"]  # tandem (editable), pip, setuptools, deps
    (Path(purelib) / "_tandem_dev.pth").write_text(f"import site; site.addsitedir({host!r})\n")
    work = tmp_path_factory.mktemp("plugin-work")
    env = Venv(root=root, python=python, work=work)
    probe = env.run(
        "-c",
        "import sys, importlib.metadata as m; print(sys.prefix); "
        "print(sorted(e.name for e in m.entry_points(group='tandem.workers')))",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split("\n")[:2] == [str(root), "['builtin']"], probe.stdout
    env.install(EXAMPLE)
    return env


@pytest.fixture
def servers() -> Iterator[tuple[FakeOllama, FakeOpenAI]]:
    chat = (DEMO_MODEL, PLUGIN_MODEL)
    with (
        FakeOllama(chat_models=chat, embed_models=("nomic-embed-text",)) as ol,
        FakeOpenAI() as oa,
    ):
        yield ol, oa


def _config(venv: Venv, ollama: FakeOllama, openai: FakeOpenAI, data: Path) -> None:
    lines = [
        f'data_dir = "{data}"',
        "[supervisor]",
        'model = "openai/fake-large"',
        f'api_base = "{openai.api_base}"',
        'extra = { api_key = "test-key" }',
        "timeout = 30",
        "[ollama]",
        f'host = "{ollama.url}"',
        "timeout = 30",
        "[router]",
        'embed_model = "ollama:nomic-embed-text"',
        'kind = "centroid"',
        "min_score = 0.12",
        "part_min_score = 0.1",
        "plan_margin = 0.0",
        "[privacy]",
        'policy = "allow"',
    ]
    # The built-in specialists come through the same entry-point path; [plugins] moves them
    # off the embedded engine. The plugin keeps its own default model.
    for spec in builtin_specs():
        lines += [f"[plugins.workers.{spec.name}]", f'model = "ollama:{DEMO_MODEL}"']
    (venv.work / "tandem.toml").write_text("\n".join(lines) + "\n")


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def _list(venv: Venv) -> dict[str, dict[str, Any]]:
    proc = venv.tandem("workers", "list", "--json")
    assert "warning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    return {row["name"]: row for row in _json(proc)}


def test_installed_plugin_is_listed_routed_and_answers_from_its_corpus(
    venv: Venv, servers: tuple[FakeOllama, FakeOpenAI], tmp_path: Path
) -> None:
    ollama, openai = servers
    _config(venv, ollama, openai, tmp_path / "data")

    rows = _list(venv)
    assert list(rows) == ["tenancy", "finance", "health", "maritime"]
    assert rows["maritime"]["origin"] == "tandem-maritime 0.1.0"
    assert rows["maritime"]["model"] == f"ollama:{PLUGIN_MODEL}"
    assert rows["maritime"]["chunks"] == 0  # not ingested until first use
    assert rows["tenancy"]["origin"] == "builtin"
    assert rows["tenancy"]["model"] == f"ollama:{DEMO_MODEL}"

    out = _json(venv.tandem("ask", "--json", QUESTION))
    assert out["route"]["kind"] == "direct", out["route"]
    assert out["route"]["workers"] == ["maritime"]
    assert out["citations"], out
    assert {c["worker"] for c in out["citations"]} == {"maritime"}
    assert {c["source"] for c in out["citations"]} <= set(CORPUS)
    assert "5 knots" in out["text"]
    assert openai.completions() == []  # answered locally by the plugin's worker
    chats = ollama.chat_requests()
    assert chats and {c["model"] for c in chats} == {PLUGIN_MODEL}
    assert "maritime law specialist" in chats[0]["messages"][0]["content"]

    embeds = len(ollama.requests_to("/api/embed"))
    _json(venv.tandem("ask", "--json", QUESTION))
    # First use only: the second run embeds the question (and, for the answer's signals,
    # the few passage sentences that match it: workers/ask.py), never the corpus again.
    new = ollama.requests_to("/api/embed")[embeds:]
    assert 1 <= len(new) <= 2
    assert all(len(r.body["input"]) <= POOL + 1 for r in new)

    show = _json(venv.tandem("workers", "show", "maritime", "--json"))
    assert show["origin"] == "tandem-maritime 0.1.0"
    assert show["chunks"] >= len(CORPUS)
    assert show["knowledge"][0]["files"] == len(CORPUS)
    assert show["knowledge"][0]["path"].startswith(str(venv.root))  # the installed copy
    assert len(show["examples"]) == 10


def test_a_broken_plugin_next_to_it_is_one_readable_warning(
    venv: Venv, servers: tuple[FakeOllama, FakeOpenAI], tmp_path: Path
) -> None:
    ollama, openai = servers
    _config(venv, ollama, openai, tmp_path / "data")
    broken = tmp_path / "tandem-broken"
    (broken / "tandem_broken").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (broken / "tandem_broken" / "__init__.py").write_text(BROKEN_INIT)
    venv.install(broken)
    try:
        proc = venv.tandem("workers", "list", "--json")
        rows = _json(proc)
        assert [r["name"] for r in rows] == ["tenancy", "finance", "health", "maritime"]
        # Exactly one warning (rich wraps it to the terminal width), nothing else.
        assert " ".join(proc.stderr.split()) == (
            "warning: plugin 'broken' from tandem-broken 0.0.1 skipped: cannot import "
            "tandem_broken:specs: RuntimeError: the plugin lost its configuration file"
        )
    finally:
        venv.pip("uninstall", "-y", "tandem-broken")


def test_the_plugins_own_tests_pass_against_the_installed_package(venv: Venv) -> None:
    copy = venv.work / "src" / EXAMPLE.name
    proc = venv.run(
        "-m",
        "pytest",
        str(copy / "tests"),
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(copy),
        "-c",
        str(copy / "pyproject.toml"),
        cwd=venv.work,  # not the source tree: the tests must import the installed package
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout, proc.stdout


def test_uninstalling_the_plugin_removes_the_worker(
    venv: Venv, servers: tuple[FakeOllama, FakeOpenAI], tmp_path: Path
) -> None:
    ollama, openai = servers
    _config(venv, ollama, openai, tmp_path / "data")
    venv.pip("uninstall", "-y", "tandem-maritime")
    try:
        proc = venv.tandem("workers", "show", "maritime")
        assert proc.returncode == 1
        message = " ".join(proc.stderr.split())
        assert message == "error: no worker named 'maritime'; known: tenancy, finance, health"
    finally:
        venv.install(EXAMPLE)
