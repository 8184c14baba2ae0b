"""The dependency rule holds: import-linter's contracts (pyproject.toml) are kept.

workers ← agents ← graphs ← agents.shell, never upwards; no cycles between sibling
modules; private modules imported only from inside their package (docs/architecture.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from importlinter import configuration
from importlinter.application.use_cases import lint_imports

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("workers", "agents", "graphs")


def test_import_contracts_are_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``make contracts`` (``lint-imports``) checks, in process (about a second)."""
    configuration.configure()  # what the lint-imports command does first
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))  # the custom contract type: tests.import_contracts
    kept = lint_imports(str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    out = capsys.readouterr().out
    assert kept, out
    assert "0 broken" in out


def test_no_dynamic_imports_hide_a_dependency() -> None:
    """``__import__`` / ``importlib.import_module`` of tandem modules escape the contracts."""
    dynamic = re.compile(r"__import__\(|import_module\(\s*[\"']tandem")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in LIBRARY
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if dynamic.search(line)
    ]
    assert not found, found
