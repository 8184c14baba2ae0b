"""Escalations teach the specialists: learning records, answer memory, router feedback, exports.

* :class:`~tandem.graphs.learning.store.LearningStore` — the records (SQLite, in the data dir);
* :class:`~tandem.graphs.learning.engine.Learning` — the loop of one runtime
  (``Runtime.learning``): record a run, keep/drop/forget, router feedback;
* :mod:`~tandem.graphs.learning.export` — chat fine-tuning exports and an Ollama Modelfile.
"""

from __future__ import annotations

from tandem.graphs.learning.engine import ROUTING_FILE, Learning
from tandem.graphs.learning.records import (
    Candidate,
    LearnedPassage,
    LearningReport,
    LearningSettings,
    Record,
)
from tandem.graphs.learning.store import LearningStore, learning_dir

__all__ = [
    "ROUTING_FILE",
    "Candidate",
    "LearnedPassage",
    "Learning",
    "LearningReport",
    "LearningSettings",
    "LearningStore",
    "Record",
    "learning_dir",
]
