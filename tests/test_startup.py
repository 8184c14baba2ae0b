"""Start-up cost (issue 19, item 8): a command imports what it needs when it needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.agents import cost


def _imported_after(code: str) -> set[str]:
    """Top-level packages loaded by ``code`` in a fresh interpreter."""
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


HEAVY = {
    "litellm",
    "chromadb",
    "langgraph",
    "langchain_core",
    "presidio_analyzer",
    "spacy",
    "numpy",
    "ollama",
    "onnxruntime",
}


@pytest.mark.integration
def test_the_cli_module_loads_no_heavy_library() -> None:
    assert not _imported_after("import tandem.agents.shell.cli") & HEAVY


@pytest.mark.integration
def test_a_light_module_does_not_load_its_whole_package() -> None:
    loaded = _imported_after("import tandem.workers.errors, tandem.graphs, tandem.agents")
    assert not loaded & HEAVY


@pytest.mark.integration
def test_prices_come_from_the_table_without_importing_litellm(tmp_path: Path) -> None:
    code = (
        "import os; os.environ['XDG_CACHE_HOME'] = " + repr(str(tmp_path)) + "\n"
        "from tandem.agents.cost import model_price\n"
        "assert model_price('gpt-4o-mini', {}) is not None\n"
        "assert model_price('openai/gpt-4o-mini', {}) == model_price('gpt-4o-mini', {})\n"
        "assert model_price('openai/fake-large', {}) is None\n"
        "assert model_price('embedded:qwen2.5-coder-1.5b', {}) is None\n"
    )
    assert "litellm" not in _imported_after(code)
    assert (tmp_path / "tandem" / "prices.json").is_file()  # the compact table, cached


def test_the_table_agrees_with_litellm_on_plain_model_names() -> None:
    import litellm

    for model in (
        "gpt-4o-mini",
        "gpt-4o",
        "anthropic/claude-haiku-4-5",
        "openai/gpt-4o-mini",
    ):
        unit = cost.model_price(model, {})
        listed = litellm.cost_per_token(model=model, prompt_tokens=1000, completion_tokens=1000)
        assert unit is not None
        assert unit[0] * 1000 == pytest.approx(listed[0])
        assert unit[1] * 1000 == pytest.approx(listed[1])


def test_custom_prices_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "_TABLE", {})
    price = cost.ModelPrice(input=1.0, output=2.0)
    assert cost.model_price("openai/mine", {"openai/mine": price}) == (1e-6, 2e-6)
    assert cost.model_price("openai/mine", {}) is None


def _run_in(tmp_path: Path, code: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.integration
def test_the_command_collects_garbage_again_once_its_runtime_exists(tmp_path: Path) -> None:
    """The ``tandem`` command pauses the collector for its imports; a REPL or server session
    must not run on without it."""
    _run_in(
        tmp_path,
        "import gc\n"
        "from tandem.agents.shell import _gc\n"
        "from tandem.agents.shell._common import runtime\n"
        "_gc.pause()\n"
        "assert not gc.isenabled()\n"
        "runtime(None, warn=False)\n"
        "assert gc.isenabled()\n"
        "assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()\n",
    )


@pytest.mark.integration
def test_a_program_using_the_commands_keeps_its_collector_as_it_was(tmp_path: Path) -> None:
    _run_in(
        tmp_path,
        "import gc\n"
        "from tandem.agents.shell._common import runtime\n"
        "runtime(None, warn=False)\n"
        "assert gc.isenabled()\n"
        "assert gc.get_freeze_count() == 0\n",
    )
