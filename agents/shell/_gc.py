"""The garbage collector around a command's start-up and exit.

A command that answers a question imports langgraph, langchain-core, chromadb and the model
clients: about a quarter of a million long-lived objects. While they load, every growth of
the heap by a quarter triggers a full collection that walks all of them again, and at exit
the interpreter walks them once more before it quits. Neither finds garbage worth the time
(~0.3 s and ~0.5 s of a ``tandem ask`` on 2 cores). So the ``tandem`` command

* starts with the collector paused (:func:`pause`),
* freezes what start-up built and resumes collecting once the runtime exists
  (:func:`resume`, called by :func:`tandem.agents.shell._common.runtime`; a long REPL or
  server session collects as usual from there on), and
* freezes everything at exit (:func:`at_exit`): reference counting still frees what
  modules held; only the final cycle search over objects about to vanish is skipped.
"""

from __future__ import annotations

import gc

__all__ = ["at_exit", "pause", "resume"]

_paused = False


def pause() -> None:
    """Stop automatic collection while the command imports what it needs."""
    global _paused
    _paused = True
    gc.disable()


def resume() -> None:
    """Move everything alive now out of the collector's sight and collect again (only after
    :func:`pause`: a program that imports the commands keeps its collector as it was)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def at_exit() -> None:
    """Spare the interpreter's final full collection."""
    gc.freeze()
