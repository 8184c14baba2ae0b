"""``tandem eval``: the evaluation library and command, against the loopback fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tandem.agents.shell._eval import render_report
from tandem.graphs.evaluate import EvalCase, evaluate, fact_in, load_dataset
from tandem.workers.errors import ConfigError
from tandem.workers.testing import FakeOllama, FakeOpenAI, fake_config_toml

DEPOSIT = "How long does Brightwater Lettings take to return a tenant's deposit?"
TANDEM = str(Path(sys.executable).parent / "tandem")


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("fact", "text"),
    [
        ("15%", "The credit is 15.0% of the rent."),
        ("15%", "the credit is 15 % of rent"),
        ("VC 12,000", "The personal allowance is VC 12000."),
        ("28 days", "Register it within 28\u00a0Days."),
        ("Section 8", "under section 8, a landlord…"),
        ("three times", "up to 3 times the deposit"),
    ],
)
def test_a_fact_matches_however_its_number_is_written(fact: str, text: str) -> None:
    assert fact_in(fact, text)


@pytest.mark.parametrize(
    ("fact", "text"),
    [
        ("18%", "The rate is 118%."),  # a substring, not the number
        ("6 weeks", "up to 16 weeks' rent"),
        ("15%", "15 days"),
        ("", "anything"),
    ],
)
def test_a_fact_does_not_match_another_number(fact: str, text: str) -> None:
    assert not fact_in(fact, text)


@pytest.mark.parametrize(
    ("fact", "text"),
    [
        ("21 days", "21"),
        ("21 days", "21."),
        ("VC 12,000", "12000"),
        ("three times", "3"),
        ("6 weeks", "The most is 6, measured in weeks' rent."),
    ],
)
def test_the_number_of_a_fact_stated_bare_as_the_answer_counts(fact: str, text: str) -> None:
    # "How many days…?" — "21": the right value; the unit is left to the question.
    assert fact_in(fact, text)


@pytest.mark.parametrize(
    ("fact", "text"),
    [
        ("21 days", "21 weeks"),  # another unit
        ("21 days", "2021"),  # another number
        ("21 days", "21-week limit"),
        ("21 days", "21%"),
        ("21 days", "21°C"),
        ("21 days", "21 or 28"),  # not the one value stated
        ("21 days", "Reply within 28 days; 21 is the other deadline."),
        ("VC 21", "$21"),  # another currency
        ("Section 8", "8"),  # a label, not a quantity with a unit
        ("RT-2", "2"),
        ("1 March", "1"),  # a date needs its month
        ("16 to 64", "16"),
    ],
)
def test_a_bare_number_does_not_count_with_another_unit_or_among_others(
    fact: str, text: str
) -> None:
    assert not fact_in(fact, text)


def test_load_dataset_accepts_both_spellings_and_names_bad_lines(tmp_path: Path) -> None:
    good = _write(
        tmp_path / "a.jsonl",
        [
            {"question": "q one?", "expected_workers": ["finance"], "facts": ["18%"]},
            {"query": "q two?", "expected": []},
        ],
    )
    cases = load_dataset(good)
    assert [(c.question, c.expected_workers, c.facts) for c in cases] == [
        ("q one?", ["finance"], ["18%"]),
        ("q two?", [], []),
    ]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"question": "fine?"}\n\n{"facts": ["no question"]}\n')
    with pytest.raises(ConfigError, match=r"b\.jsonl:3"):
        load_dataset(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_dataset(tmp_path / "missing.jsonl")


async def test_evaluate_scores_route_facts_and_latency(
    make_graph: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    graph = make_graph()
    probe = (await graph.ainvoke({"query": DEPOSIT}))["answer"]
    assert probe.route.kind == "direct" and probe.route.workers == ["tenancy"]
    word = max(probe.text.split(), key=len).strip(".,")  # something the answer really says
    cases = [
        EvalCase(question=DEPOSIT, expected_workers=["tenancy"], facts=[word.upper()]),
        EvalCase(question=DEPOSIT, expected_workers=["finance"], facts=[word, "zebra-unicorn"]),
        EvalCase(question="ignored because of the limit", expected_workers=[]),
    ]
    seen: list[int] = []
    fake_openai.reset()
    report = await evaluate(graph, cases, limit=2, on_row=lambda i, row: seen.append(i))
    assert seen == [0, 1] and report.questions == 2
    first, second = report.rows
    assert (first.route, first.workers, first.route_ok) == ("direct", ["tenancy"], True)
    assert first.facts_found == [word.upper()] and first.facts_missing == []
    assert second.route_ok is False
    assert (second.facts_found, second.facts_missing) == ([word], ["zebra-unicorn"])
    assert report.route_accuracy == 0.5 and report.answered == 0.5
    assert report.fact_recall == pytest.approx(2 / 3, abs=1e-3)
    # A confident direct answer never reaches the large model: all calls stayed local.
    assert report.supervisor_calls == 0 and fake_openai.completions() == []
    assert report.local_share == 1.0 and report.cost_usd == 0.0
    assert 0 < report.p50_seconds <= report.p95_seconds == max(r.seconds for r in report.rows)

    console = Console(record=True, width=140)
    render_report(console, report)
    shown = console.export_text()
    assert "route accuracy" in shown and "50.0%" in shown and "66.7%" in shown  # recall


def _tandem(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(TANDEM_PLUGINS="", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return subprocess.run(
        [TANDEM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration  # runs the `tandem` command
def test_cli_eval_json_limit_and_errors(tmp_path: Path) -> None:
    with (
        FakeOllama(chat_models=("qwen2.5:1.5b",), embed_models=("nomic-embed-text",)) as ol,
        FakeOpenAI() as oa,
    ):
        (tmp_path / "tandem.toml").write_text(
            fake_config_toml(
                ol, oa, tmp_path / "data", router={"kind": "centroid", "min_score": 0.12}
            )
        )
        data = _write(
            tmp_path / "set.jsonl",
            [
                {"question": DEPOSIT, "expected_workers": ["tenancy"], "facts": ["zz-absent"]},
                {"question": "never asked", "expected_workers": []},
            ],
        )
        out = _tandem(["eval", str(data), "--json", "--limit", "1"], tmp_path)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["questions"] == 1 and len(report["rows"]) == 1
        row = report["rows"][0]
        assert row["route"] == "direct" and row["route_ok"] is True
        assert row["facts_missing"] == ["zz-absent"] and report["answered"] == 0.0
        assert len(ol.chat_requests()) >= 1  # it really asked the worker model

        missing = _tandem(["eval", str(tmp_path / "nope.jsonl")], tmp_path)
        assert missing.returncode == 1 and "cannot read the dataset" in missing.stderr
        assert "Traceback" not in missing.stderr
