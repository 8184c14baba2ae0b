"""The dependency rule holds: import-linter's contracts (pyproject.toml) are kept.

workers ← agents ← graphs ← agents.shell, never upwards; no cycles between sibling
modules; private modules imported only from inside their package (docs/architecture.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("workers", "agents", "graphs")


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


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
