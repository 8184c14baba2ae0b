"""Small things a newcomer tripped over (issue 19, item 7)."""

from __future__ import annotations

import itertools
import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tandem.agents.shell.cli import app
from tandem.agents.shell.repl import redact_config


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["ask", "-h"], ["config", "-h"]])
def test_dash_h_is_help(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "Usage: tandem" in result.output


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = CliRunner().invoke(app, [flag])
    assert result.exit_code == 0 and result.output.strip() == f"tandem {version('tandem')}"


def test_config_show_masks_only_secrets(tmp_path: Path) -> None:
    (tmp_path / "tandem.toml").write_text(
        'checkpointer = "postgresql://tandem:hunter2@db.example/threads"\n'
        "[supervisor]\n"
        'model = "openai/gpt-4o-mini"\n'
        "max_tokens = 777\n"
        'extra = { api_key = "sk-secret", organization = "acme" }\n'
        "[stores]\n"
        'headers = { Authorization = "Bearer abc", X-Team = "ops" }\n'
    )
    result = CliRunner().invoke(app, ["config", "show", "-c", str(tmp_path / "tandem.toml")])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert shown["supervisor"]["max_tokens"] == 777
    assert isinstance(shown["worker_max_tokens"], int)  # a number, not "***"
    assert shown["supervisor"]["extra"] == {"api_key": "***", "organization": "acme"}
    assert shown["stores"]["headers"] == {"Authorization": "***", "X-Team": "ops"}
    assert shown["checkpointer"] == "postgresql://tandem:***@db.example/threads"
    assert "sk-secret" not in result.output and "hunter2" not in result.output


def test_redact_config_words_not_substrings() -> None:
    data = {"max_tokens": 5, "conclusion_tokens": 9, "keep_alive": "5m", "access_token": "t"}
    assert redact_config(data) == {**data, "access_token": "***"}


def _commands(cmd: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    """Every command of the click tree under ``cmd`` with its argument path."""
    out = [(path, cmd)]
    for name, sub in getattr(cmd, "commands", {}).items():
        out += _commands(sub, [*path, name])
    return out


def test_help_shows_the_config_sections_it_names() -> None:
    """``[privacy]``, ``[router]`` … in a help text are config sections, not rich markup: every
    command's ``--help`` shows each one it names (rich would silently drop them), and no
    help text shows reST double backticks."""
    runner = CliRunner()
    checked = 0
    for path, cmd in _commands(typer.main.get_command(app), []):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        assert not any("``" in t for t in texts), f"tandem {' '.join(path)}: reST in --help"
        named = set(re.findall(r"\[([a-z_]+)\]", " ".join(texts)))
        if not named:
            continue
        shown = runner.invoke(app, [*path, "--help"], terminal_width=200).output
        for section in named:
            assert f"[{section}]" in shown, f"tandem {' '.join(path)} --help drops [{section}]"
            checked += 1
    assert checked >= 3


def test_command_lists_show_each_summary_as_running_text_at_80_columns() -> None:
    """A group's command list gives each command the first paragraph of its help as running
    text: no line of it breaks where the docstring's source line did (``router eval`` read
    "confusion matrix and" on a line of its own)."""
    runner = CliRunner()
    groups = [p for p, c in _commands(typer.main.get_command(app), []) if hasattr(c, "commands")]
    assert len(groups) >= 6
    for path in groups:
        shown = runner.invoke(app, [*path, "--help"], terminal_width=80).output
        panel = shown[shown.index("Commands") :].splitlines()[1:]
        rows = [line.strip()[1:-1].rstrip() for line in panel if line.startswith("│")]
        for row, following in itertools.pairwise(rows):
            # A row whose summary goes on below (indented under the summaries, not a new
            # command's name) is filled close to the panel's width.
            if following.startswith("   "):
                assert len(row) >= 50, f"tandem {' '.join(path)}: {row.strip()!r}"


def test_command_pages_show_their_help_as_running_text_at_80_columns() -> None:
    """A command's own ``--help`` page wraps its description at the terminal's width, not
    where the docstring's source lines broke (``tandem ask --help`` read "the message says
    why);" and then "4 no model" on lines of their own)."""
    runner = CliRunner()
    pages = [
        p for p, c in _commands(typer.main.get_command(app), []) if p and not hasattr(c, "commands")
    ]
    assert len(pages) >= 20
    for path in pages:
        shown = runner.invoke(app, [*path, "--help"], terminal_width=80).output
        body = shown[shown.index("Usage") : shown.index("╭")].splitlines()[1:]
        paragraph: list[str] = []
        for line in [*body, ""]:
            if line.strip():
                paragraph.append(line.strip())
                continue
            for text in paragraph[:-1]:  # every line that the paragraph goes on after
                assert len(text) >= 50, f"tandem {' '.join(path)}: {text!r}"
            paragraph = []


def test_workers_and_models_tables_fit_80_columns_with_names_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 80 columns ``workers list`` gives each worker one line (name, origin and model
    whole, the description cut with an ellipsis) and ``models list`` shows each model
    reference whole: the two bundled chat models differ only in their last characters
    (both once read ``embedded:qwen2.5-cod…``)."""
    monkeypatch.setenv("TANDEM_PLUGINS", "builtin")
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TANDEM_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)  # no tandem.toml: the zero-config setup
    runner = CliRunner(env={"COLUMNS": "80"})
    listed = runner.invoke(app, ["workers", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    rows = [line for line in lines if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["tenancy", "finance", "health"]
    assert all("embedded:qwen2.5-coder-0.5b" in row and "…" in row for row in rows)
    assert all("0 *" in row for row in rows)  # empty stores, with the footnote below
    assert "* empty: its knowledge is ingested on first use" in listed.stdout

    shown = runner.invoke(app, ["workers", "show", "tenancy"])
    assert shown.exit_code == 0, shown.output
    examples = shown.stdout[shown.stdout.index("examples") :].splitlines()
    assert shown.stdout.count("examples") == 1 and sum("•" in ln for ln in examples) == 10
    for line in examples[1:]:  # a wrapped example goes on under its own text
        assert line.lstrip().startswith("•") or line.startswith(" " * 15), line

    models = runner.invoke(app, ["models", "list"])
    assert models.exit_code == 0, models.output
    assert all(len(line) <= 80 for line in models.stdout.splitlines())
    for ref in ("embedded:minilm", "embedded:qwen2.5-coder-0.5b", "embedded:qwen2.5-coder-1.5b"):
        assert ref in models.stdout
    assert "workers tenancy," in models.stdout  # one "workers" for the three
