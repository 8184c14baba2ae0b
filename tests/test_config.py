"""Configuration errors name the file and the key; valid files load with the right precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.graphs import TandemConfig, load_config
from tandem.workers import ConfigError, UsageError

WORKER = """
[[workers]]
name = "{name}"
description = "Maritime law for small boat owners."
model = "{model}"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tandem.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert isinstance(info.value, UsageError)
    assert str(path) in str(info.value), "the message must name the file"
    return info.value


def test_malformed_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '[supervisor]\nmodel = "openai/gpt-4o-mini\n')
    err = _error(path)
    assert "not valid TOML" in str(err)
    assert "line 2" in str(err)


def test_unknown_key_names_the_key_path(tmp_path: Path) -> None:
    path = _write(tmp_path, '[supervisor]\nmodle = "openai/gpt-4o-mini"\n')
    err = _error(path)
    assert "supervisor.modle" in str(err)
    assert "unknown key" in str(err)
    assert err.key == "supervisor.modle"


def test_unknown_top_level_section(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, "[superviser]\ntimeout = 5\n"))
    assert "superviser" in str(err) and "unknown key" in str(err)


def test_invalid_worker_name_names_the_worker_entry(tmp_path: Path) -> None:
    path = _write(tmp_path, WORKER.format(name="Maritime Law", model="ollama:qwen2.5:1.5b"))
    err = _error(path)
    assert "workers[0] (Maritime Law).name" in str(err)
    assert "not a valid worker name" in str(err)


def test_unknown_model_reference_names_the_key_and_the_expected_form(tmp_path: Path) -> None:
    path = _write(tmp_path, WORKER.format(name="maritime", model="gpt4all:tiny"))
    err = _error(path)
    assert "workers[0] (maritime).model" in str(err)
    assert "'gpt4all:tiny' is not a model reference" in str(err)
    assert "ollama:<model>" in str(err)


def test_unknown_embedding_model_reference(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, '[router]\nembed_model = "nomic-embed-text"\n'))
    assert "router" in str(err) and "not a model reference" in str(err)


def test_out_of_range_value_names_the_key(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, "max_subtasks = 0\n"))
    assert "max_subtasks" in str(err) and "greater than or equal to 1" in str(err)


def test_supervisor_given_a_worker_style_reference_gets_a_suggestion(tmp_path: Path) -> None:
    err = _error(_write(tmp_path, '[supervisor]\nmodel = "ollama:llama3.3:70b"\n'))
    assert "supervisor.model" in str(err) and "ollama_chat/llama3.3:70b" in str(err)


def test_duplicate_worker_names(tmp_path: Path) -> None:
    text = WORKER.format(name="maritime", model="ollama:a") * 2
    err = _error(_write(tmp_path, text))
    assert "'maritime' is declared twice" in str(err)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    err = _error(tmp_path / "tandem.toml")
    assert "file not found" in str(err)


def test_valid_file_loads_resolves_knowledge_and_env_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs").mkdir()
    text = (
        '[supervisor]\nmodel = "openai/gpt-4o-mini"\ntimeout = 12\n'
        '[privacy]\npolicy = "local_only"\n'
        + WORKER.format(name="maritime", model="ollama:qwen2.5:1.5b")
        + 'knowledge = ["docs"]\n'
    )
    path = _write(tmp_path, text)
    monkeypatch.setenv("TANDEM_SUPERVISOR__TIMEOUT", "30")
    monkeypatch.setenv("TANDEM_MAX_SUBTASKS", "3")
    config = load_config(path, max_subtasks=2)

    assert isinstance(config, TandemConfig)
    assert config.source == str(path)
    assert config.supervisor.model == "openai/gpt-4o-mini"  # file
    assert config.supervisor.timeout == 30  # env beats file
    assert config.max_subtasks == 2  # arguments beat env
    assert config.privacy.policy == "local_only"
    (worker,) = config.workers
    assert worker.knowledge == (tmp_path / "docs",)  # relative to the file, not the cwd
    assert not config.use_builtin_workers()


def test_environment_errors_are_config_errors_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./tandem.toml
    monkeypatch.setenv("TANDEM_MAX_SUBTASKS", "many")
    with pytest.raises(ConfigError, match="max_subtasks"):
        load_config()


def test_data_dir_expands_home_and_resolves_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "tandem.toml").write_text('data_dir = "~/tandem-data"\n')
    assert load_config(conf / "tandem.toml").data_dir == tmp_path / "home" / "tandem-data"
    (conf / "tandem.toml").write_text('data_dir = "state"\n')
    assert load_config(conf / "tandem.toml").data_dir == conf / "state"
