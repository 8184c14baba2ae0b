"""tandem.agents.shell — the top layer: the ``tandem`` command, the REPL and their renderers.

The only code that renders (rich tables, progress bars, prompt_toolkit input). It sits
above :mod:`tandem.graphs` even though it lives inside ``agents/``: nothing in
:mod:`tandem.agents`, :mod:`tandem.graphs` or :mod:`tandem.workers` imports it (the import
contract in ``pyproject.toml`` checks this; see docs/architecture.md).

* :mod:`.cli` — the ``tandem`` console script (``ask``, ``chat``, ``demo``, ``ingest`` …);
* :mod:`.repl` — ``tandem chat``: the read–answer loop over a :class:`~tandem.graphs.Session`;
* :mod:`.render` — answers, routes and ledgers as rich renderables; the token printer.
"""
