"""tandem's graph for LangGraph's server tooling (``langgraph dev`` / LangGraph Server).

``examples/deploy/langgraph.json`` points at ``tandem.graphs.serve:graph``. The
configuration comes from the server's environment like everywhere else:
``TANDEM_CONFIG`` (a ``tandem.toml``) plus ``TANDEM_*`` overrides. The graph is
compiled without a checkpointer: the server brings its own persistence (in memory
for ``langgraph dev``, Postgres for LangGraph Server) and runs every request as a
thread on it.

A run takes ``{"query": "…"}`` and returns the final state; its ``answer`` holds
the text, the route, the citations and the ledger::

    from langgraph_sdk import get_client

    client = get_client(url="http://127.0.0.1:2024")
    state = await client.runs.wait(None, "tandem", input={"query": "…"})
    print(state["answer"]["text"])
"""

from __future__ import annotations

from tandem.graphs.config import TandemConfig, load_config
from tandem.graphs.hybrid import TandemGraph, build_graph

__all__ = ["graph", "make_graph"]


def make_graph(config: TandemConfig | None = None) -> TandemGraph:
    """Build the served graph: no checkpointer (the server owns persistence).

    Args:
        config: The configuration; default: :func:`~tandem.graphs.load_config` (``TANDEM_CONFIG``
            and ``TANDEM_*`` from the environment).

    Raises:
        ConfigError: The configuration is invalid (the server refuses to start and says why).
    """
    return build_graph(config or load_config(), checkpointer=None)


graph = make_graph()
"""The compiled graph the server loads (built once when the server imports this module)."""
