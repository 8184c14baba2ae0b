"""Small things a newcomer tripped over (issue 19, item 7)."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest
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
