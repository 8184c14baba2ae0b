"""``tandem chat`` in a real terminal: tmux runs it against the fake servers; we type, then
read the screen (capture-pane)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.workers.testing import FakeOllama, FakeOpenAI, fake_config_toml

TANDEM = str(Path(sys.executable).parent / "tandem")
# drives `tandem chat` in a real terminal (tmux)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    """A private tmux server (its own socket) with one window."""

    def __init__(self) -> None:
        self.socket = f"tandem-test-{os.getpid()}-{time.monotonic_ns()}"

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-J", "-S", "-200", "-t", "chat")

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = " ".join(self.screen().split())  # rich wraps to the pane's width
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear; the screen shows:\n{self.screen()}")

    def type(self, line: str) -> None:
        self("send-keys", "-t", "chat", "-l", line)
        self("send-keys", "-t", "chat", "Enter")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    yield t
    t("kill-server")


def test_chat_in_a_real_terminal(tmux: Tmux, tmp_path: Path, data_dir: Path) -> None:
    with (
        FakeOllama(chat_models=("qwen2.5:1.5b",), embed_models=("nomic-embed-text",)) as ol,
        FakeOpenAI() as oa,
    ):
        config = tmp_path / "tandem.toml"
        config.write_text(fake_config_toml(ol, oa, data_dir))
        env: dict[str, Any] = {"TANDEM_PLUGINS": "", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        exports = " ".join(f"{k}={v!s}" for k, v in env.items())
        command = f"env {exports} {TANDEM} chat -c {config}"
        tmux("new-session", "-d", "-s", "chat", "-x", "150", "-y", "50", command)
        tmux("set-option", "-t", "chat", "remain-on-exit", "on")
        tmux.wait_for("/help for commands")
        tmux.type("How quickly does Brightwater Lettings return deposits?")
        screen = tmux.wait_for("[direct tenancy]")
        assert "14 days" in screen
        tmux.type("/cost")
        screen = tmux.wait_for("local share")
        assert "session ledger · 1 Q" in screen and "local share 100%" in screen
        tmux.type("/exit")
        screen = tmux.wait_for("bye")
        assert "Traceback" not in screen
    assert (data_dir / "history").read_text().count("/cost") == 1
    assert (data_dir / "threads.sqlite").exists()
