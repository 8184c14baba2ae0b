"""The plugin's own tests: conformance through tandem's check_worker, plus packaging."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

import pytest
import tandem_maritime
from tandem_maritime import CORPUS, specs

from tandem.graphs.testing import check_worker
from tandem.workers import register
from tandem.workers.builtin import specs as builtin_specs


def test_every_example_is_retrieved_answered_cited_and_routed_here() -> None:
    (spec,) = specs()
    report = check_worker(spec, competitors=builtin_specs())
    assert report.files == len(list(CORPUS.glob("*.md"))) >= 8
    assert len(report.questions) == len(spec.examples)
    for q in report.questions:
        assert q.routed_to == "maritime"
        assert q.citations, q


def test_a_specific_question_cites_the_right_document() -> None:
    (spec,) = specs()
    report = check_worker(spec, questions=["What is the speed limit inside Saltmere harbour?"])
    assert report.questions[0].citations[0].startswith("07-harbour-dues-and-mooring.md")
    assert "5 knots" in report.questions[0].answer


def test_the_spec_passes_tandems_registration_with_the_corpus_inside_the_package() -> None:
    package = CORPUS.parent
    (spec,) = register(specs, origin="tandem-maritime test", package_root=package)
    assert spec.name == "maritime" and spec.origin == "tandem-maritime test"
    assert spec.knowledge == (CORPUS.resolve(),)


def test_the_installed_distribution_declares_the_entry_point() -> None:
    try:
        dist = distribution("tandem-maritime")
    except PackageNotFoundError:
        pytest.skip("tandem-maritime is not installed (pip install ./examples/tandem-maritime)")
    (ep,) = [e for e in dist.entry_points if e.group == "tandem.workers"]
    assert ep.name == "maritime" and ep.load() is specs
    assert dist.version == tandem_maritime.__version__
    assert sorted(p.name for p in CORPUS.glob("*.md")) == sorted(
        p.name for p in (dist.files or []) if p.suffix == ".md" and "corpus" in p.parts
    )
