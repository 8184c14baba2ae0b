"""The public surface is pinned: adding or removing a name must be a deliberate change here."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "tandem.graphs": [
        "Answer",
        "EvalCase",
        "EvalReport",
        "EvalRow",
        "Ledger",
        "LedgerTotals",
        "PrivacySettings",
        "Runtime",
        "Session",
        "SessionLedger",
        "SupervisorSettings",
        "TandemConfig",
        "TandemGraph",
        "TandemState",
        "build_graph",
        "build_ledger",
        "evaluate",
        "load_config",
        "load_dataset",
        "open_checkpointer",
        "open_checkpointer_sync",
    ],
    "tandem.agents": [
        "BackendLLM",
        "Detector",
        "EgressRecord",
        "EgressRequest",
        "Finding",
        "GuardReport",
        "LLMReply",
        "LangChainLLM",
        "LiteLLM",
        "Plan",
        "PlanStep",
        "Redactor",
        "RouteDecision",
        "Router",
        "RouterSettings",
        "Supervisor",
        "SupervisorLLM",
        "find_sensitive",
        "neutralize_links",
        "read_egress_log",
        "restore",
    ],
    "tandem.workers": [
        "BackendBusy",
        "BackendRejected",
        "BackendTimeout",
        "BackendUnavailable",
        "BadModelOutput",
        "BudgetExceeded",
        "CallRecord",
        "Citation",
        "ConfigError",
        "IngestReport",
        "ModelAssetError",
        "ModelNotFound",
        "PluginError",
        "PluginReport",
        "PluginSettings",
        "RetryPolicy",
        "RunError",
        "StoreError",
        "Subtask",
        "TandemError",
        "UsageError",
        "Worker",
        "WorkerReply",
        "WorkerResult",
        "WorkerRun",
        "WorkerSpec",
        "WorkerStore",
        "discover",
        "parse_model_ref",
        "register",
    ],
    "tandem.workers.testing": [
        "FakeOllama",
        "FakeOpenAI",
        "QuestionCheck",
        "RecordedRequest",
        "RouteScores",
        "WorkerCheck",
        "acheck_worker",
        "check_worker",
        "fake_config_toml",
        "grounded_reply",
        "hash_embed",
        "rule_supervisor",
    ],
    "tandem.graphs.learning": [
        "Candidate",
        "LearnedPassage",
        "Learning",
        "LearningReport",
        "LearningSettings",
        "LearningStore",
        "ROUTING_FILE",
        "Record",
        "learning_dir",
    ],
    "tandem.graphs.testing": [
        "FakeOllama",
        "FakeOpenAI",
        "QuestionCheck",
        "RecordedRequest",
        "ScriptedSupervisor",
        "WorkerCheck",
        "acheck_worker",
        "check_worker",
        "fake_config_toml",
        "grounded_reply",
        "hash_embed",
        "rule_supervisor",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned_and_importable(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__file__ is not None, f"{module} resolved as a namespace package (stale install?)"
    assert sorted(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert getattr(mod, name) is not None


@pytest.mark.integration  # a fresh interpreter
def test_importing_the_packages_does_not_import_litellm() -> None:
    """litellm takes seconds to import; tandem loads it only when a supervisor call is made."""
    import subprocess
    import sys

    code = (
        "import sys, tandem.graphs, tandem.agents, tandem.workers; print('litellm' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
