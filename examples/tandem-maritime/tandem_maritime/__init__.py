"""tandem-maritime: a maritime-law specialist for tandem, shipped as a plugin.

tandem finds it through the ``tandem.workers`` entry point declared in
``pyproject.toml``; nothing in tandem has to change. The corpus (fictional
Velorian maritime law) is package data, ingested into the worker's own store
the first time the worker is used.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tandem.workers import WorkerSpec

__all__ = ["CORPUS", "DEFAULT_MODEL", "specs"]

__version__ = "0.1.0"

DEFAULT_MODEL = "ollama:qwen2.5:0.5b"
"""The small model the worker uses unless tandem.toml overrides it
(``[plugins.workers.maritime] model = "embedded:qwen2.5-coder-0.5b"``)."""

CORPUS = Path(str(resources.files(__name__) / "corpus"))
"""The bundled knowledge: one markdown file per topic."""


def specs() -> list[WorkerSpec]:
    """The specialists this plugin adds (the ``tandem.workers`` entry point)."""
    return [
        WorkerSpec(
            name="maritime",
            description=(
                "Maritime and shipping law in Veloria: ship and boat registration, collision "
                "regulations at sea and right of way, salvage awards, seafarers' wages and rest "
                "hours, port state inspections and ship detention, oil spills and marine "
                "pollution, harbour dues and mooring at the Port of Saltmere, wrecks and the "
                "Receiver of Wreck, shipowners' limitation of liability, leisure boating "
                "licences, cargo claims and bills of lading, and general average."
            ),
            examples=(
                "Which vessel has to give way when two motor boats are crossing?",
                "How much is a salvage award for saving a ship?",
                "How many hours of rest must a seafarer get on board a ship?",
                "Do I need to register my 9 metre sailing boat?",
                "What happens if a foreign ship fails a port state inspection?",
                "Who pays for the clean-up after an oil spill from a ship?",
                "How much does it cost to moor a yacht overnight in Saltmere harbour?",
                "I found a cargo container washed up on the beach, what must I do?",
                "How long do I have to claim for cargo damaged at sea?",
                "Do I need a licence to drive a motor boat or jet ski?",
            ),
            model=DEFAULT_MODEL,
            system_prompt=(
                "You are the maritime law specialist for the Republic of Veloria: shipping, "
                "vessels, seafarers, ports and the sea. Answer only from the provided passages, "
                "quoting their exact limits, fees, deadlines and section numbers. If the "
                "passages do not cover the question, say so plainly instead of guessing. Be "
                "concise."
            ),
            knowledge=(CORPUS,),
            top_k=3,
        )
    ]
