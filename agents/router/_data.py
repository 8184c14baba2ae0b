"""What the router learns from: worker profiles, off-topic questions, labelled routes.

* every worker's ``description`` and ``examples`` (one specialist each);
* a list of general questions no specialist should take (``offtopic.txt``, written for
  tandem, not taken from any evaluation set) — the "none" class;
* labelled routes (``[router] train``, the ``tandem eval`` JSONL format): one specialist,
  several (cross-domain) or none (``expected_workers: []``);
* synthetic cross-domain pairs: two single-domain questions of different specialists
  joined with a connective ("…? Also, …", "… and …", "…; …"). Their embedding is the
  normalised mean of the two questions' embeddings (no extra model call; measured as
  accurate as embedding the joined text), their word features those of the joined text.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tandem.agents.router._text import normalize
from tandem.workers.errors import ConfigError
from tandem.workers.spec import WorkerSpec

__all__ = [
    "LabelledRoute",
    "TrainingSet",
    "build_training_set",
    "load_routes",
    "offtopic",
    "stratified_folds",
    "stratum",
]

CONNECTIVES = (" and ", ", and ", "? Also, ", "; ", ". And ", "? And ", ", also ", " — and ")
SYNTHETIC_PAIRS = 1500
"""Synthetic two-specialist questions (plus one three-specialist question per eight)."""


@dataclass(frozen=True)
class LabelledRoute:
    """One labelled question: the specialists it needs (``()``: none of them)."""

    question: str
    workers: tuple[str, ...]
    written: bool = False
    """Written as training data (like a worker's examples): always trained on, never held
    out to tune the thresholds, which are chosen on questions as users ask them."""


def load_routes(path: Path, *, written: bool = False) -> list[LabelledRoute]:
    """Read a labelled routing file (JSONL: ``question``/``query`` and
    ``expected_workers``/``expected``; other fields are ignored); ``written``: see
    :attr:`LabelledRoute.written`.

    Raises:
        ConfigError: The file is missing or a line is not such an object.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read routing data {path}: {exc.strerror or exc}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question = row.get("question", row.get("query"))
            workers = row.get("expected_workers", row.get("expected"))
            if not isinstance(question, str) or not isinstance(workers, list):
                raise ValueError("needs 'question' and 'expected_workers' (a list)")
            out.append(LabelledRoute(question, tuple(str(w) for w in workers), written))
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"{path}:{n}: not a labelled route ({exc})") from None
    return out


def offtopic() -> list[str]:
    """The bundled general questions (the "none" class)."""
    text = resources.files("tandem.agents.router").joinpath("offtopic.txt").read_text("utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@dataclass
class TrainingSet:
    """Texts with their specialists, grouped for weighting, plus synthetic pairs.

    ``texts[i]`` needs ``labels[i]`` (names of workers; empty: none). ``groups[i]`` is
    ``single``, ``cross`` or ``none``; each group gets the same total weight, and so do the
    ``synthetic`` rows (indices into ``texts`` whose vectors are averaged).
    """

    workers: list[str]
    texts: list[str] = field(default_factory=list)
    labels: list[tuple[str, ...]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """Where each row came from: ``description``, ``example``, ``labelled``, ``written``
    (labelled routes written as training data) or ``offtopic``."""
    synthetic: list[tuple[tuple[int, ...], str]] = field(default_factory=list)
    """(source rows, joined text) of each synthetic cross-domain question."""
    skipped: int = 0
    """Labelled rows naming a worker that is not registered (not used)."""

    def add(self, text: str, labels: Iterable[str], source: str) -> None:
        labels = tuple(labels)
        self.texts.append(text)
        self.labels.append(labels)
        self.groups.append("none" if not labels else "single" if len(labels) == 1 else "cross")
        self.sources.append(source)

    @property
    def labelled(self) -> list[int]:
        """Rows from labelled files (the ones threshold tuning holds out)."""
        return [i for i, s in enumerate(self.sources) if s == "labelled"]

    def fingerprint(self, embed_model: str, extra: str = "") -> str:
        """A hash of everything the fitted model depends on."""
        h = hashlib.sha256()
        for part in (embed_model, extra, "|".join(self.workers)):
            h.update(part.encode() + b"\0")
        for text, labels, source in zip(self.texts, self.labels, self.sources, strict=True):
            h.update(text.encode() + b"\0" + ",".join(labels).encode() + b"\0")
            h.update(source.encode() + b"\n")
        return h.hexdigest()[:32]

    def without(self, rows: Sequence[int]) -> tuple[TrainingSet, list[int]]:
        """The same set without ``rows`` (synthetic pairs drawn again) and the kept rows."""
        drop = set(rows)
        out = TrainingSet(list(self.workers), skipped=self.skipped)
        kept = [i for i in range(len(self.texts)) if i not in drop]
        for i in kept:
            out.add(self.texts[i], self.labels[i], self.sources[i])
        add_synthetic(out)
        return out, kept


def build_training_set(
    specs: Sequence[WorkerSpec],
    routes: Sequence[LabelledRoute] = (),
    *,
    use_offtopic: bool = True,
    exclude: Iterable[str] = (),
) -> TrainingSet:
    """Profiles, off-topic questions and labelled routes of the registered workers.

    Args:
        specs: The registered workers.
        routes: Labelled routes; rows naming an unregistered worker are skipped.
        use_offtopic: Train the "none" class on the bundled general questions.
        exclude: Questions never to train on (cross-validation holds them out), compared
            after :func:`~._text.normalize`.
    """
    names = [s.name for s in specs]
    known = set(names)
    banned = {normalize(q) for q in exclude}
    ts = TrainingSet(names)
    seen: set[str] = set()

    def fresh(text: str) -> bool:
        key = normalize(text)
        if key in banned or key in seen:
            return False
        seen.add(key)
        return True

    for spec in specs:
        if spec.description.strip() and fresh(spec.description):
            ts.add(spec.description, [spec.name], "description")
        for text in spec.examples:
            if text.strip() and fresh(text):
                ts.add(text, [spec.name], "example")
    for route in routes:
        if not set(route.workers) <= known:
            ts.skipped += 1
        elif fresh(route.question):
            source = "written" if route.written else "labelled"
            ts.add(route.question, dict.fromkeys(route.workers), source)
    if use_offtopic:
        for text in offtopic():
            if fresh(text):
                ts.add(text, [], "offtopic")
    add_synthetic(ts)
    return ts


def _lower_first(text: str) -> str:
    return text if text.startswith(("I ", "I'", "VC")) else text[:1].lower() + text[1:]


def _join(a: str, b: str, connective: str) -> str:
    """``a`` and ``b`` as one question joined by ``connective``."""
    a, b = a.strip().rstrip("?.!"), b.strip()
    if not connective.lstrip().startswith(("?", ".")) or connective.endswith(", "):
        b = _lower_first(b)
    joined = a + connective + b
    return joined if joined.endswith("?") else joined.rstrip(".!") + "?"


def add_synthetic(ts: TrainingSet, n: int = SYNTHETIC_PAIRS, seed: int = 0) -> None:
    """Join single-domain questions of different workers into cross-domain ones."""
    ts.synthetic = []
    by_worker: dict[str, list[int]] = {}
    for i, (labels, source) in enumerate(zip(ts.labels, ts.sources, strict=True)):
        if len(labels) == 1 and source != "description":
            by_worker.setdefault(labels[0], []).append(i)
    names = sorted(by_worker)
    if len(names) < 2:
        return
    rng = random.Random(seed)
    for _ in range(n):
        w1, w2 = rng.sample(names, 2)
        i, j = rng.choice(by_worker[w1]), rng.choice(by_worker[w2])
        ts.synthetic.append(((i, j), _join(ts.texts[i], ts.texts[j], rng.choice(CONNECTIVES))))
    if len(names) >= 3:
        for _ in range(n // 8):
            w1, w2, w3 = rng.sample(names, 3)
            i, j, k = (rng.choice(by_worker[w]) for w in (w1, w2, w3))
            first = _join(ts.texts[i], ts.texts[j], rng.choice(CONNECTIVES))
            text = _join(first, ts.texts[k], rng.choice(CONNECTIVES))
            ts.synthetic.append(((i, j, k), text))


def stratified_folds(strata: Sequence[str], k: int, seed: int = 0) -> list[list[int]]:
    """Split positions ``0..n-1`` into ``k`` folds, each stratum spread evenly (seeded)."""
    rng = random.Random(seed)
    by: dict[str, list[int]] = {}
    for i, key in enumerate(strata):
        by.setdefault(key, []).append(i)
    out: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for key in sorted(by):
        members = by[key]
        rng.shuffle(members)
        for j, i in enumerate(members):
            out[(j + offset) % k].append(i)
        offset += len(members)
    return [sorted(f) for f in out]


def stratum(workers: Sequence[str]) -> str:
    """The stratum of a route for stratified folds: none, cross, or the single worker."""
    return "none" if not workers else "cross" if len(workers) > 1 else f"single:{workers[0]}"
